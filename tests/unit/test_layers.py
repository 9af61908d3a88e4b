"""The layers of DESIGN §3 as the code has them: store/ is the only home of SQL, and nothing below
ops/ imports ops/ (or the CLI). Read from the syntax tree of every module, imports inside functions
included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "lifelong_cli"
SQL = re.compile(r"^\s*(SELECT\b.*\bFROM\b|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|"
                 r"(CREATE|DROP)\s+(TABLE|INDEX|TRIGGER|DATABASE)\b|ALTER\s+TABLE\b|PRAGMA\s|BEGIN\b|TRUNCATE\b)",
                 re.I | re.S)
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "table", "column", "literal_column",
                      "and_", "or_", "bindparam", "Table", "MetaData"}
BELOW_OPS = ("data", "drift", "training", "registry", "release", "serving", "incident", "store")


def _modules(*parts: str) -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if not parts or p.relative_to(PKG).parts[0] in parts)


def _text(node: ast.AST) -> str | None:
    """The leading literal text of a string or f-string argument."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    if isinstance(node, ast.BinOp):  # "SELECT ..." + more
        return _text(node.left)
    return None


def sql_sites(path: Path) -> list[str]:
    """Places in one module that run SQL text, build SQLAlchemy statements, or name a table to a DB call."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "lifelong_cli.store.schema":
            found.append(f"{path.name}:{node.lineno} imports the schema's tables")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            found += [f"{path.name}:{node.lineno} imports sqlalchemy's {a.name}" for a in node.names
                      if a.name in STATEMENT_BUILDERS or node.module in ("sqlalchemy.sql", "sqlalchemy.sql.expression")]
        elif isinstance(node, ast.Attribute) and node.attr in STATEMENT_BUILDERS and isinstance(node.value, ast.Name) \
                and node.value.id in ("sqlalchemy", "sa"):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp):
            text = _text(node)
            if text is not None and SQL.match(text):
                found.append(f"{path.name}:{getattr(node, 'lineno', '?')} SQL text {text[:40]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "insert", "insert_many") and node.args and re.fullmatch(r"\w+", _text(node.args[0]) or "-"):
            found.append(f"{path.name}:{node.lineno} {node.func.attr}({_text(node.args[0])!r}, ...)")
    return found


def ops_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        bad += [f"{path.relative_to(PKG)}:{node.lineno} imports {n}" for n in names
                if n.startswith(("lifelong_cli.ops", "lifelong_cli.cli"))]
    return bad


def test_no_module_outside_store_runs_sql_or_builds_statements():
    outside = [p for p in _modules() if p.relative_to(PKG).parts[0] != "store"]
    found = [s for p in outside for s in sql_sites(p)]
    assert found == [], "SQL outside lifelong_cli/store/:\n" + "\n".join(found)


def test_the_check_sees_sql_where_there_is_some():
    # the store itself is full of it: a check that finds nothing there finds nothing anywhere
    assert len([s for p in _modules("store") for s in sql_sites(p)]) > 20


def test_nothing_below_ops_imports_ops_or_the_cli():
    found = [s for p in _modules(*BELOW_OPS) for s in ops_imports(p)]
    assert found == [], "\n".join(found)
