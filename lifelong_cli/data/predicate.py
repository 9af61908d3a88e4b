"""The ``--where`` expression language of ``llctl purge-data``.

A small, safe language parsed here and evaluated here: the user's text is never handed to SQL,
``eval`` or pyarrow's expression parser. Grammar (keywords are case-insensitive)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" expr ")" | comparison
    comparison := column op literal
                | column ["not"] "in" "(" literal ("," literal)* ")"
                | column "is" ["not"] "null"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := number | 'string' | "string" | true | false
    column     := [A-Za-z_][A-Za-z0-9_]*  |  `any name` (a backtick inside is written ``)

Strings take the escapes ``\\'``, ``\\"`` and ``\\\\``; any other backslash sequence is an error.
Literals are checked against the column's type: numbers for ``int``/``float`` columns (an int
column takes whole numbers only), strings for ``string`` columns, ``true``/``false`` for ``bool``
columns (``=``, ``!=`` and ``in`` only), ISO-8601 strings for ``timestamp`` columns
(``'2026-01-02T03:04:05Z'``, ``'2026-01-02'``; a string without an offset is UTC).

Nulls: a comparison (``=``, ``<``, ``in``, ``not in``, ...) against a null value is false, and
``not`` negates that plain false. So ``x != 1`` and ``x not in (1)`` never match a null ``x``,
while ``not (x = 1)`` does. ``is null`` / ``is not null`` test for nulls; a float NaN is not null.
A column missing from the data is all nulls.

Limits against abuse: at most ``MAX_LENGTH`` characters, ``MAX_DEPTH`` levels of parentheses and
``not``, and ``MAX_IN_LITERALS`` literals in one ``in`` list.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from lifelong_cli.errors import ExpressionError

if TYPE_CHECKING:  # pragma: no cover - annotations only; pyarrow is imported inside ``mask``
    import pyarrow

__all__ = [
    "COLUMN_TYPES",
    "MAX_DEPTH",
    "MAX_IN_LITERALS",
    "MAX_LENGTH",
    "And",
    "ColumnType",
    "Comparison",
    "InList",
    "IsNull",
    "Not",
    "Or",
    "Predicate",
    "parse",
]

ColumnType = Literal["int", "float", "string", "bool", "timestamp"]
COLUMN_TYPES: frozenset[str] = frozenset({"int", "float", "string", "bool", "timestamp"})

MAX_LENGTH = 4096
MAX_DEPTH = 64
MAX_IN_LITERALS = 1000

DICT_VERSION = 1

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

Value: TypeAlias = int | float | str | bool | datetime

# --------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------

COMPARISON_OPS = ("=", "!=", "<", "<=", ">", ">=")
_OP_ALIASES = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ORDERING_OPS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Comparison:
    """``column op value``; ``op`` is one of ``COMPARISON_OPS`` (aliases normalised)."""

    column: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class InList:
    """``column [NOT] IN (values...)``."""

    column: str
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    """``column IS [NOT] NULL``."""

    column: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """Two or more operands; a chain ``a and b and c`` is one node."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Two or more operands; a chain ``a or b or c`` is one node."""

    operands: tuple[Node, ...]


Node: TypeAlias = Comparison | InList | IsNull | Not | And | Or
_Leaf: TypeAlias = Comparison | InList | IsNull


@dataclass(frozen=True, slots=True)
class Predicate:
    """A parsed, validated ``--where`` expression (immutable). Build with :func:`parse`."""

    root: Node

    def columns(self) -> frozenset[str]:
        """The column names the expression refers to."""
        out: set[str] = set()
        stack: list[Node] = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, And | Or):
                stack.extend(node.operands)
            elif isinstance(node, Not):
                stack.append(node.operand)
            else:
                out.add(node.column)
        return frozenset(out)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, stored with the purge rule."""
        return {"version": DICT_VERSION, "text": str(self), "expr": _node_to_dict(self.root)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], columns: Mapping[str, ColumnType]) -> Predicate:
        """Rebuild from :meth:`to_dict`, re-validating column names and literal types against
        ``columns`` (the schema may have changed since the rule was stored)."""
        _check_schema(columns)
        try:
            text = _dict_to_text(d)
        except _MalformedError as exc:
            try:
                shown = json.dumps(d, sort_keys=True, default=repr)
            except (TypeError, ValueError, RecursionError):
                shown = repr(type(d))
            raise ExpressionError(
                f"malformed stored predicate: {exc}",
                expression=shown[:200],
                position=0,
                hint="the purge rule's stored expression is damaged; run `llctl doctor`",
            ) from None
        # The stored text may be longer than MAX_LENGTH (the canonical form of a long input can
        # grow); the structure was bounded when it was first parsed.
        return _Parser(text, columns, max_length=None).parse()

    def __str__(self) -> str:
        """Canonical text; ``parse(str(p), columns) == p``."""
        return _render(self.root)

    def __repr__(self) -> str:
        return f"Predicate({str(self)!r})"

    # -- evaluation ------------------------------------------------------------------------

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Evaluate on one row (a mapping of column name to Python value); same semantics as
        :meth:`mask`. A missing key counts as null."""
        return _match(self.root, row)

    def mask(self, table: pyarrow.Table) -> pyarrow.BooleanArray:
        """A boolean array, True where the row of ``table`` matches (never null)."""
        return _Masker(table).evaluate(self.root)


def parse(expression: str, columns: Mapping[str, ColumnType]) -> Predicate:
    """Parse and validate ``expression`` against ``columns`` (name -> type).

    Raises :class:`ExpressionError` (with the 0-based ``position`` of the problem) on any
    malformed input, unknown column or literal that does not fit its column."""
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, not {type(expression).__name__}")
    _check_schema(columns)
    return _Parser(expression, columns, max_length=MAX_LENGTH).parse()


def parse_stored(text: str, columns: Mapping[str, ColumnType]) -> Predicate:
    """Parse the canonical text of a stored rule (``str(parse(...))``): the length limit applied to
    what the user typed, not to its canonical form, which can be longer (``1`` → ``1.0``)."""
    _check_schema(columns)
    return _Parser(text, columns, max_length=None).parse()


def _check_schema(columns: Mapping[str, ColumnType]) -> None:
    for name, kind in columns.items():
        if kind not in COLUMN_TYPES:
            raise ValueError(
                f"column {name!r} has unknown type {kind!r}; expected one of {sorted(COLUMN_TYPES)}"
            )


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------

_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">")
_PUNCT = {"(": "LPAREN", ")": "RPAREN", ",": "COMMA"}
_ESCAPES = {"'": "'", '"': '"', "\\": "\\"}
_WHITESPACE = " \t\r\n\f\v"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # IDENT KEYWORD QIDENT NUMBER STRING OP LPAREN RPAREN COMMA EOF
    pos: int
    text: str  # source text of the token
    value: Any = None  # keyword (lower case), column name, number, or string contents


def _tokens(expression: str, fail: Callable[..., ExpressionError]) -> list[_Token | ExpressionError]:
    """Tokenise; a lexical error becomes the last item, so the parser raises it only when it
    gets that far (the leftmost problem is the one reported)."""
    out: list[_Token | ExpressionError] = []
    i, n = 0, len(expression)
    while True:
        while i < n and expression[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append(_Token("EOF", n, ""))
            return out
        ch = expression[i]
        start = i
        if ch in _PUNCT:
            out.append(_Token(_PUNCT[ch], i, ch))
            i += 1
            continue
        op = next((o for o in _OPERATORS if expression.startswith(o, i)), None)
        if op is not None:
            out.append(_Token("OP", i, op, _OP_ALIASES[op]))
            i += len(op)
            continue
        if ch in "'\"":
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    out.append(fail("unterminated string", start, hint=f"close the string with {ch}"))
                    return out
                c = expression[i]
                if c == ch:
                    i += 1
                    break
                if c == "\\":
                    nxt = expression[i + 1] if i + 1 < n else ""
                    if nxt not in _ESCAPES:
                        out.append(
                            fail(
                                "unknown escape in string",
                                i,
                                hint="only \\' \\\" and \\\\ are escapes; write a backslash as \\\\",
                            )
                        )
                        return out
                    chars.append(_ESCAPES[nxt])
                    i += 2
                    continue
                chars.append(c)
                i += 1
            out.append(_Token("STRING", start, expression[start:i], "".join(chars)))
            continue
        if ch == "`":
            i += 1
            chars = []
            while True:
                if i >= n:
                    out.append(fail("unterminated quoted column name", start, hint="close it with `"))
                    return out
                c = expression[i]
                if c == "`":
                    if expression.startswith("``", i):
                        chars.append("`")
                        i += 2
                        continue
                    i += 1
                    break
                chars.append(c)
                i += 1
            if not chars:
                out.append(fail("empty quoted column name", start))
                return out
            out.append(_Token("QIDENT", start, expression[start:i], "".join(chars)))
            continue
        m = _NUMBER_RE.match(expression, i)
        if m:
            end = m.end()
            if end < n and (expression[end].isalnum() or expression[end] in "_."):
                out.append(fail("malformed number", start, hint="separate a number from what follows"))
                return out
            text = m.group()
            try:
                if any(c in text for c in ".eE"):
                    number: int | float = float(text)
                    if not math.isfinite(number):
                        raise OverflowError
                else:
                    number = int(text)
            except (OverflowError, ValueError):
                out.append(fail("number out of range", start))
                return out
            out.append(_Token("NUMBER", start, text, number))
            i = end
            continue
        m = _IDENT_RE.match(expression, i)
        if m:
            word = m.group()
            low = word.lower()
            if low in _KEYWORDS:
                out.append(_Token("KEYWORD", start, word, low))
            else:
                out.append(_Token("IDENT", start, word, word))
            i = m.end()
            continue
        out.append(fail(f"unexpected character {ch!r}", start))
        return out


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_KIND_NAMES = {
    "EOF": "end of expression",
    "LPAREN": "'('",
    "RPAREN": "')'",
    "COMMA": "','",
}


def _describe(tok: _Token) -> str:
    if tok.kind in _KIND_NAMES:
        return _KIND_NAMES[tok.kind]
    if tok.kind == "KEYWORD":
        return f"keyword {tok.value.upper()}"
    if tok.kind == "OP":
        return f"operator {tok.text!r}"
    if tok.kind == "STRING":
        return f"string {tok.text}"
    if tok.kind == "NUMBER":
        return f"number {tok.text}"
    return f"{tok.text!r}"


class _Parser:
    def __init__(self, expression: str, columns: Mapping[str, ColumnType], *, max_length: int | None) -> None:
        self.expression = expression
        self.columns = columns
        self.max_length = max_length
        self.depth = 0
        self.items: list[_Token | ExpressionError] = []
        self.index = 0

    def fail(self, message: str, position: int, *, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, expression=self.expression, position=position, hint=hint)

    # -- token stream ------------------------------------------------------------------------

    def peek(self) -> _Token:
        item = self.items[self.index]
        if isinstance(item, ExpressionError):
            raise item
        return item

    def advance(self) -> _Token:
        tok = self.peek()
        if tok.kind != "EOF":
            self.index += 1
        return tok

    def at_keyword(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "KEYWORD" and tok.value == word

    def expect(self, kind: str, what: str, *, hint: str | None = None) -> _Token:
        tok = self.peek()
        if tok.kind != kind:
            raise self.unexpected(tok, what, hint=hint)
        return self.advance()

    def expect_keyword(self, word: str) -> _Token:
        if not self.at_keyword(word):
            raise self.unexpected(self.peek(), word.upper())
        return self.advance()

    def unexpected(self, tok: _Token, expected: str, *, hint: str | None = None) -> ExpressionError:
        if tok.kind == "EOF":
            return self.fail(f"unexpected end of expression, expected {expected}", tok.pos, hint=hint)
        return self.fail(f"unexpected {_describe(tok)}, expected {expected}", tok.pos, hint=hint)

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> Predicate:
        text = self.expression
        if self.max_length is not None and len(text) > self.max_length:
            raise self.fail(
                f"expression too long ({len(text)} characters, at most {self.max_length})",
                self.max_length,
                hint="split the purge into several rules",
            )
        if not text.strip(_WHITESPACE):
            raise self.fail("empty expression", 0, hint="write a condition such as: source = 'partner_a'")
        self.items = _tokens(text, self.fail)
        root = self.or_expr()
        tok = self.peek()
        if tok.kind != "EOF":
            hint = None
            if tok.kind == "RPAREN":
                hint = "this ')' has no matching '('"
            raise self.fail(
                f"unexpected {_describe(tok)} after the end of the expression", tok.pos, hint=hint
            )
        return Predicate(root)

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", tok.pos)

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.at_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.at_keyword("and"):
            self.advance()
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Node:
        # Iterative over a run of NOTs (each one still counts towards the depth limit).
        nots = 0
        while self.at_keyword("not"):
            self.enter(self.advance())
            nots += 1
        node = self.atom()
        for _ in range(nots):
            node = Not(node)
        self.depth -= nots
        return node

    def atom(self) -> Node:
        tok = self.peek()
        if tok.kind == "LPAREN":
            self.enter(self.advance())
            node = self.or_expr()
            self.expect("RPAREN", "')'", hint=f"the '(' at position {tok.pos} is not closed")
            self.depth -= 1
            return node
        return self.comparison()

    def column(self) -> tuple[str, _Token]:
        tok = self.peek()
        if tok.kind not in ("IDENT", "QIDENT"):
            hint = None
            if tok.kind == "KEYWORD" and tok.value not in ("true", "false", "null"):
                hint = f"a column named {tok.text!r} must be quoted: `{tok.text}`"
            elif tok.kind in ("NUMBER", "STRING", "KEYWORD"):
                hint = "a condition starts with a column name, e.g. source = 'partner_a'"
            raise self.unexpected(tok, "a column name", hint=hint)
        self.advance()
        name = tok.value
        if name not in self.columns:
            raise self.fail(f"unknown column {name!r}", tok.pos, hint=_columns_hint(name, self.columns))
        return name, tok

    def comparison(self) -> _Leaf:
        name, _ = self.column()
        ctype = self.columns[name]
        tok = self.peek()
        if tok.kind == "OP":
            self.advance()
            op = tok.value
            if ctype == "bool" and op in _ORDERING_OPS:
                raise self.fail(
                    f"operator {tok.text!r} does not apply to bool column {name!r}",
                    tok.pos,
                    hint=f"use {name} = true or {name} = false",
                )
            return Comparison(name, op, self.literal(name, ctype))
        if tok.kind == "KEYWORD" and tok.value == "is":
            self.advance()
            negated = False
            if self.at_keyword("not"):
                self.advance()
                negated = True
            self.expect_keyword("null")
            return IsNull(name, negated)
        if tok.kind == "KEYWORD" and tok.value in ("in", "not"):
            negated = tok.value == "not"
            self.advance()
            if negated:
                self.expect_keyword("in")
            return InList(name, self.in_list(name, ctype), negated)
        raise self.unexpected(tok, "an operator (= != < <= > >= IN, NOT IN, IS NULL)")

    def in_list(self, name: str, ctype: ColumnType) -> tuple[Value, ...]:
        self.expect("LPAREN", "'(' after IN")
        if self.peek().kind == "RPAREN":
            raise self.fail("empty IN list", self.peek().pos, hint="list at least one value: x IN (1, 2)")
        values: list[Value] = []
        while True:
            tok = self.peek()
            if len(values) >= MAX_IN_LITERALS:
                raise self.fail(
                    f"too many values in IN list (at most {MAX_IN_LITERALS})",
                    tok.pos,
                    hint="split the purge into several rules",
                )
            values.append(self.literal(name, ctype))
            tok = self.peek()
            if tok.kind == "COMMA":
                self.advance()
                continue
            if tok.kind == "RPAREN":
                self.advance()
                return tuple(values)
            raise self.unexpected(tok, "',' or ')'")

    def literal(self, name: str, ctype: ColumnType) -> Value:
        tok = self.peek()
        if tok.kind == "KEYWORD" and tok.value == "null":
            raise self.fail(
                "NULL is not a value to compare with",
                tok.pos,
                hint=f"write `{_render_column(name)} IS NULL` or `{_render_column(name)} IS NOT NULL`",
            )
        if tok.kind == "KEYWORD" and tok.value in ("true", "false"):
            raw: Any = tok.value == "true"
        elif tok.kind in ("NUMBER", "STRING"):
            raw = tok.value
        else:
            raise self.unexpected(tok, "a value (number, 'string', true or false)")
        self.advance()
        return self.coerce(raw, tok, name, ctype)

    def coerce(self, raw: Any, tok: _Token, name: str, ctype: ColumnType) -> Value:
        def mismatch(what: str, example: str) -> ExpressionError:
            return self.fail(
                f"column {name!r} is {ctype}, but {tok.text} is {what}",
                tok.pos,
                hint=f"compare {name!r} with {example}",
            )

        kind = "a bool" if isinstance(raw, bool) else "a string" if isinstance(raw, str) else "a number"
        if ctype == "string":
            if not isinstance(raw, str):
                raise mismatch(kind, "a quoted string, e.g. 'abc'")
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail("string is not valid Unicode text", tok.pos) from None
            return raw
        if ctype == "bool":
            if not isinstance(raw, bool):
                raise mismatch(kind, "true or false")
            return raw
        if ctype in ("int", "float"):
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise mismatch(kind, "a number")
            if ctype == "float":
                try:
                    return float(raw)
                except OverflowError:
                    raise self.fail("number out of range for a float column", tok.pos) from None
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise self.fail(
                        f"column {name!r} is int, but {tok.text} is not a whole number",
                        tok.pos,
                        hint="compare an int column with a whole number",
                    )
                raw = int(raw)
            if not _INT64_MIN <= raw <= _INT64_MAX:
                raise self.fail("number out of range for an int column (64-bit)", tok.pos)
            return raw
        # timestamp
        if not isinstance(raw, str):
            raise mismatch(kind, "an ISO-8601 string, e.g. '2026-01-02T03:04:05Z' or '2026-01-02'")
        parsed = _parse_timestamp(raw)
        if parsed is None:
            raise self.fail(
                f"{tok.text} is not an ISO-8601 timestamp",
                tok.pos,
                hint="write e.g. '2026-01-02T03:04:05Z' or '2026-01-02' (UTC when no offset is given)",
            )
        return parsed


def _columns_hint(name: str, columns: Mapping[str, ColumnType]) -> str:
    allowed = sorted(columns)
    if not allowed:
        return "the schema has no columns"
    parts = []
    lowered = {c.lower(): c for c in allowed}
    close = (
        [lowered[name.lower()]] if name.lower() in lowered else difflib.get_close_matches(name, allowed, 3)
    )
    if close:
        parts.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
    shown = allowed[:40]
    listing = ", ".join(_render_column(c) for c in shown)
    if len(allowed) > len(shown):
        listing += f", ... ({len(allowed) - len(shown)} more)"
    parts.append(f"allowed columns: {listing}")
    return " ".join(parts)


def _parse_timestamp(text: str) -> datetime | None:
    """ISO-8601 date or date-time -> aware UTC datetime; no offset means UTC. None if invalid."""
    if not text or len(text) > 64 or text != text.strip():
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Rendering (canonical text) and dict form
# --------------------------------------------------------------------------------------------


def _render_column(name: str) -> str:
    if _IDENT_RE.fullmatch(name) and name.lower() not in _KEYWORDS:
        return name
    return "`" + name.replace("`", "``") + "`"


def _render_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _render_value(value: Value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return _render_string(_format_timestamp(value))
    return _render_string(value)


def _render(node: Node) -> str:
    if isinstance(node, Comparison):
        return f"{_render_column(node.column)} {node.op} {_render_value(node.value)}"
    if isinstance(node, InList):
        values = ", ".join(_render_value(v) for v in node.values)
        return f"{_render_column(node.column)} {'NOT IN' if node.negated else 'IN'} ({values})"
    if isinstance(node, IsNull):
        return f"{_render_column(node.column)} IS {'NOT NULL' if node.negated else 'NULL'}"
    if isinstance(node, Not):
        inner = _render(node.operand)
        return f"NOT ({inner})" if isinstance(node.operand, And | Or) else f"NOT {inner}"
    if isinstance(node, And):
        return " AND ".join(
            f"({_render(o)})" if isinstance(o, And | Or) else _render(o) for o in node.operands
        )
    if isinstance(node, Or):
        return " OR ".join(f"({_render(o)})" if isinstance(o, Or) else _render(o) for o in node.operands)
    raise TypeError(f"not a predicate node: {node!r}")


def _value_to_json(value: Value) -> Any:
    return _format_timestamp(value) if isinstance(value, datetime) else value


def _node_to_dict(node: Node) -> dict[str, Any]:
    if isinstance(node, Comparison):
        return {"kind": "compare", "column": node.column, "op": node.op, "value": _value_to_json(node.value)}
    if isinstance(node, InList):
        return {
            "kind": "in",
            "column": node.column,
            "values": [_value_to_json(v) for v in node.values],
            "negated": node.negated,
        }
    if isinstance(node, IsNull):
        return {"kind": "is_null", "column": node.column, "negated": node.negated}
    if isinstance(node, Not):
        return {"kind": "not", "operand": _node_to_dict(node.operand)}
    if isinstance(node, And | Or):
        return {
            "kind": "and" if isinstance(node, And) else "or",
            "operands": [_node_to_dict(o) for o in node.operands],
        }
    raise TypeError(f"not a predicate node: {node!r}")


class _MalformedError(Exception):
    pass


# A stored tree is at most about three node levels per nesting level (or -> and -> not/paren).
_MAX_DICT_DEPTH = 3 * MAX_DEPTH + 3


def _dict_to_text(d: Any) -> str:
    """Stored dict -> canonical expression text (then parsed, which re-validates everything)."""
    if not isinstance(d, Mapping):
        raise _MalformedError("expected an object")
    if d.get("version") != DICT_VERSION:
        raise _MalformedError(f"unsupported version {d.get('version')!r} (expected {DICT_VERSION})")
    return _render(_dict_to_node(d.get("expr"), 0))


def _raw_json_value(value: Any) -> Value:
    """A stored literal, unchecked against the column (parsing the rendered text does that)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _MalformedError("non-finite number")
        return value
    raise _MalformedError(f"unsupported value {value!r}")


def _dict_to_node(node: Any, depth: int) -> Node:
    if depth > _MAX_DICT_DEPTH:
        raise _MalformedError("nested too deeply")
    if not isinstance(node, Mapping):
        raise _MalformedError("expected an object for each node")
    kind = node.get("kind")

    def column() -> str:
        name = node.get("column")
        if not isinstance(name, str) or not name:
            raise _MalformedError(f"{kind} node without a column name")
        return name

    def flag(key: str) -> bool:
        value = node.get(key, False)
        if not isinstance(value, bool):
            raise _MalformedError(f"{key!r} must be true or false")
        return value

    if kind == "compare":
        op = node.get("op")
        if op not in COMPARISON_OPS:
            raise _MalformedError(f"unknown operator {op!r}")
        return Comparison(column(), op, _raw_json_value(node.get("value")))
    if kind == "in":
        values = node.get("values")
        if not isinstance(values, list):
            raise _MalformedError("'values' must be a list")
        return InList(column(), tuple(_raw_json_value(v) for v in values), flag("negated"))
    if kind == "is_null":
        return IsNull(column(), flag("negated"))
    if kind == "not":
        return Not(_dict_to_node(node.get("operand"), depth + 1))
    if kind in ("and", "or"):
        operands = node.get("operands")
        if not isinstance(operands, list) or len(operands) < 2:
            raise _MalformedError(f"{kind!r} needs a list of at least two operands")
        children = tuple(_dict_to_node(o, depth + 1) for o in operands)
        return And(children) if kind == "and" else Or(children)
    raise _MalformedError(f"unknown node kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Row-at-a-time evaluation
# --------------------------------------------------------------------------------------------


def _row_value(value: Any, literal_sample: Value | None) -> Any:
    """Normalise a row value for comparison with literals of the column's kind."""
    if isinstance(literal_sample, datetime):
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, str):
            return _parse_timestamp(value)
    return value


_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _match(node: Node, row: Mapping[str, Any]) -> bool:
    if isinstance(node, Comparison):
        value = _row_value(row.get(node.column), node.value)
        if value is None:
            return False
        try:
            return bool(_PY_OPS[node.op](value, node.value))
        except TypeError:  # a value of the wrong type never matches
            return False
    if isinstance(node, InList):
        value = _row_value(row.get(node.column), node.values[0])
        if value is None:
            return False
        try:
            found = any(value == v for v in node.values)
        except TypeError:
            return False
        return found != node.negated
    if isinstance(node, IsNull):
        return (row.get(node.column) is None) != node.negated
    if isinstance(node, Not):
        return not _match(node.operand, row)
    if isinstance(node, And):
        return all(_match(o, row) for o in node.operands)
    if isinstance(node, Or):
        return any(_match(o, row) for o in node.operands)
    raise TypeError(f"not a predicate node: {node!r}")


# --------------------------------------------------------------------------------------------
# Vectorised evaluation (pyarrow, imported lazily)
# --------------------------------------------------------------------------------------------


class _Masker:
    def __init__(self, table: pyarrow.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.pa = pa
        self.pc = pc
        self.table = table
        self.num_rows = table.num_rows
        self._columns: dict[str, Any] = {}

    def evaluate(self, node: Node) -> pyarrow.BooleanArray:
        result = self.node(node)
        assert len(result) == self.num_rows
        return result

    def column(self, name: str) -> Any:
        """The column as one Array (dictionary-decoded), or None when the table lacks it."""
        if name not in self._columns:
            if name not in self.table.column_names:
                self._columns[name] = None
            else:
                col = self.table.column(name).combine_chunks()
                if self.pa.types.is_dictionary(col.type):
                    col = col.dictionary_decode()
                self._columns[name] = col
        return self._columns[name]

    def constant(self, value: bool) -> Any:
        return self.pa.repeat(self.pa.scalar(value, self.pa.bool_()), self.num_rows)

    def node(self, node: Node) -> Any:
        pc = self.pc
        if isinstance(node, Comparison):
            return self.compare(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, IsNull):
            col = self.column(node.column)
            if col is None:
                return self.constant(not node.negated)
            return pc.is_valid(col) if node.negated else pc.is_null(col)
        if isinstance(node, Not):
            return pc.invert(self.node(node.operand))
        if isinstance(node, And | Or):
            combine = pc.and_ if isinstance(node, And) else pc.or_
            result = self.node(node.operands[0])
            for operand in node.operands[1:]:
                result = combine(result, self.node(operand))
            return result
        raise TypeError(f"not a predicate node: {node!r}")

    def literal_type(self, col_type: Any, value: Value) -> Any:
        pa = self.pa
        if isinstance(value, datetime):
            tz = col_type.tz if pa.types.is_timestamp(col_type) else "UTC"
            return pa.timestamp("us", tz=tz)
        if isinstance(value, bool):
            return pa.bool_()
        if isinstance(value, int):
            return pa.int64()
        if isinstance(value, float):
            return pa.float64()
        return pa.large_string() if pa.types.is_large_string(col_type) else pa.string()

    def literal(self, col_type: Any, value: Value) -> Any:
        if isinstance(value, datetime) and self.pa.types.is_timestamp(col_type) and not col_type.tz:
            value = value.astimezone(UTC).replace(tzinfo=None)  # a zone-less column holds UTC
        return self.pa.scalar(value, type=self.literal_type(col_type, value))

    def compare(self, node: Comparison) -> Any:
        col = self.column(node.column)
        if col is None:
            return self.constant(False)
        fn = {
            "=": self.pc.equal,
            "!=": self.pc.not_equal,
            "<": self.pc.less,
            "<=": self.pc.less_equal,
            ">": self.pc.greater,
            ">=": self.pc.greater_equal,
        }[node.op]
        return fn(col, self.literal(col.type, node.value)).fill_null(False)

    def in_list(self, node: InList) -> Any:
        pa, pc = self.pa, self.pc
        col = self.column(node.column)
        if col is None:
            return self.constant(False)
        sample = node.values[0]
        if isinstance(sample, datetime) and pa.types.is_timestamp(col.type):
            tz = col.type.tz
            values = [
                v.astimezone(UTC).replace(tzinfo=None) if not tz else v
                for v in node.values
                if isinstance(v, datetime)
            ]
            value_set = pa.array(values, type=pa.timestamp("us", tz=tz))
            if col.type.unit == "ns":
                value_set = value_set.cast(pa.timestamp("ns", tz=tz))  # exact (safe cast)
            else:
                col = col.cast(pa.timestamp("us", tz=tz))  # s/ms/us -> us is exact
        else:
            target = self.literal_type(col.type, sample)
            value_set = pa.array(list(node.values), type=target)
            if col.type != target:
                col = col.cast(target)
            if pa.types.is_floating(target):
                # is_in hashes -0.0 and 0.0 apart; comparisons treat them as equal.
                col = pc.add(col, pa.scalar(0.0))
                value_set = pc.add(value_set, pa.scalar(0.0))
        found = pc.is_in(col, value_set=value_set)  # a null row is never in a null-free set
        if node.negated:
            return pc.and_(pc.invert(found), pc.is_valid(col))
        return pc.fill_null(found, False)
