"""Executable playbooks: YAML files that run llctl verbs through their ops (never a shell). This
module parses, lints and evaluates them; the verb table, which maps a step's ``run`` to an op, lives
with the ops (``ops/playbook.py``) and is passed in.

A playbook::

    name: bad-data
    description: ...
    when: when to use it
    params:
      from: {type: time, required: true, help: start of the bad window}
      reason: {type: str, default: "bad data"}
    steps:
      - name: stop
        run: stop-training
        with: {reason: "{params.reason}"}
        check: {status.training.stopped: true}
      - name: rollback
        run: rollback
        with: {to: "{steps.plan.result.blast_radius.last_clean_version}"}
        confirm: "roll serving back?"
        on_failure: fallback            # stop (default) | continue | the name of a recovery step
      - name: fallback
        recovery: true                  # runs only as an on_failure target
        run: fallback-on
        if: {params.allow_fallback: true}

Values in ``with`` may use ``{params.NAME}``, ``{steps.STEP.result.FIELD...}`` and ``{incident}``; a
value that is exactly one reference keeps the referenced value's type. ``check`` and ``if`` map a
path (``result.…``, ``status.…``, ``params.…``, ``steps.…``) to a value it must equal, or to
``{op: value}`` with op one of ``== != < <= > >= in not_in``; all entries must hold."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from lifelong_cli.errors import ConfigError, NotFoundError, UsageError

SHIPPED = Path(__file__).resolve().parent.parent / "playbooks"
TOP_FIELDS = {"name", "description", "when", "params", "steps"}
STEP_FIELDS = {"name", "run", "with", "check", "confirm", "on_failure", "recovery", "if", "description"}
PARAM_FIELDS = {"type", "default", "required", "help", "choices"}
PARAM_TYPES = {"str", "int", "float", "bool", "time", "version"}
OPS = {"==", "!=", "<", "<=", ">", ">=", "in", "not_in"}
_REF = re.compile(r"\{([A-Za-z_][\w.-]*)\}")


class Verb(Protocol):
    """One entry of the verb table (``ops/playbook.py``, beside the ops it calls): callable as the op."""

    def __call__(self, ctx: Any, **kwargs: Any) -> Any: ...

    def params(self) -> set[str]:
        """The keyword arguments the verb takes in ``with``."""
        ...


# --------------------------------------------------------------------------------------- loading
@dataclass
class Param:
    name: str
    type: str = "str"
    default: Any = None
    required: bool = False
    help: str = ""
    choices: list[Any] | None = None


@dataclass
class Step:
    n: int
    name: str
    run: str
    with_: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    confirm: str | None = None
    on_failure: str = "stop"
    recovery: bool = False
    if_: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    line: int = 0


@dataclass
class Playbook:
    name: str
    description: str
    when: str
    params: dict[str, Param]
    steps: list[Step]
    path: Path

    @property
    def main_steps(self) -> list[Step]:
        return [s for s in self.steps if not s.recovery]


class LintError(ConfigError):
    """A playbook file that does not follow the schema."""


def _line(node: Any) -> int:
    return node.start_mark.line + 1 if node is not None and hasattr(node, "start_mark") else 0


def _node_for(root: Any, *path: Any) -> Any:
    """The YAML node at a path of keys / indexes (for line numbers). The last key of a mapping gives
    the key's own node: a key whose value is a block starts a line before its value. A path that
    leaves the document gives the deepest node on it."""
    node = root
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
            if pair is None:
                return node
            node = pair[0] if last else pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def load(path: Path, verbs: Mapping[str, Verb]) -> Playbook:
    """Parse and lint one playbook against the verbs it may run; LintError (exit 6) names the file, the
    line and the problem."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LintError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML ({getattr(exc, 'problem', exc)})",
                        hint="fix the YAML syntax") from None

    def fail(msg: str, *where: Any) -> LintError:
        return LintError(f"{path}:{_line(_node_for(root, *where))}: {msg}", hint="`llctl playbook lint` checks every playbook")

    if not isinstance(doc, dict):
        raise fail("a playbook is a mapping with name, description, when, params and steps")
    for k in doc:
        if k not in TOP_FIELDS:
            raise fail(f"unknown field {k!r} (allowed: {', '.join(sorted(TOP_FIELDS))})", k)
    for k in ("name", "steps"):
        if k not in doc:
            raise fail(f"missing field {k!r}")
    if not isinstance(doc["name"], str) or not re.fullmatch(r"[a-z][a-z0-9-]*", doc["name"]):
        raise fail("name must be lower-case words joined by '-'", "name")
    if not isinstance(doc.get("params") or {}, dict):
        raise fail("params must map parameter names to {type, default, required, help, choices}", "params")
    params: dict[str, Param] = {}
    for pname, spec in (doc.get("params") or {}).items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise fail(f"parameter {pname!r}: expected a mapping of type/default/required/help", "params", pname)
        for k in spec:
            if k not in PARAM_FIELDS:
                raise fail(f"parameter {pname!r}: unknown field {k!r} (allowed: {', '.join(sorted(PARAM_FIELDS))})",
                           "params", pname, k)
        ptype = spec.get("type", "str")
        if ptype not in PARAM_TYPES:
            raise fail(f"parameter {pname!r}: unknown type {ptype!r} (allowed: {', '.join(sorted(PARAM_TYPES))})",
                       "params", pname, "type")
        params[pname] = Param(pname, ptype, spec.get("default"), bool(spec.get("required", False)), spec.get("help", ""),
                              spec.get("choices"))
    raw_steps = doc["steps"]
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("steps must be a non-empty list", "steps")
    steps: list[Step] = []
    names: list[str] = []
    for i, s in enumerate(raw_steps):
        if not isinstance(s, dict):
            raise fail(f"step {i + 1}: expected a mapping with name and run", "steps", i)
        for k in s:
            if k not in STEP_FIELDS:
                raise fail(f"step {i + 1}: unknown field {k!r} (allowed: {', '.join(sorted(STEP_FIELDS))})", "steps", i, k)
        name = s.get("name") or f"step-{i + 1}"
        if name in names:
            raise fail(f"step {i + 1}: duplicate step name {name!r}", "steps", i, "name")
        verb = s.get("run")
        if verb is None:
            raise fail(f"step {i + 1} ({name}): missing 'run' (the verb to run)", "steps", i)
        if verb not in verbs:
            raise fail(f"step {i + 1} ({name}): unknown verb {verb!r} (known: {', '.join(sorted(verbs))})", "steps", i, "run")
        args = s.get("with") or {}
        if not isinstance(args, dict):
            raise fail(f"step {i + 1} ({name}): 'with' must be a mapping of arguments", "steps", i, "with")
        allowed = verbs[verb].params()
        for a in args:
            if a not in allowed:
                raise fail(f"step {i + 1} ({name}): {verb} takes no argument {a!r} (it takes: {', '.join(sorted(allowed))})",
                           "steps", i, "with", a)
        for field_name in ("check", "if"):
            cond = s.get(field_name) or {}
            if not isinstance(cond, dict):
                raise fail(f"step {i + 1} ({name}): '{field_name}' must map paths to values", "steps", i, field_name)
            for path_, want in cond.items():
                root_ = str(path_).split(".")[0]
                if root_ not in ("result", "status", "params", "steps"):
                    raise fail(f"step {i + 1} ({name}): {field_name} path {path_!r} must start with result., status., "
                               "params. or steps.", "steps", i, field_name, path_)
                parts = str(path_).split(".")
                if root_ == "params" and (len(parts) < 2 or parts[1] not in params):
                    raise fail(f"step {i + 1} ({name}): {field_name} uses undeclared parameter {path_!r}",
                               "steps", i, field_name, path_)
                # a check runs after its own step, so it may name it; an `if` runs before
                seen = [*names, name] if field_name == "check" else names
                if root_ == "steps" and (len(parts) < 3 or parts[1] not in seen):
                    raise fail(f"step {i + 1} ({name}): {field_name} path {path_!r} must name an earlier step's result",
                               "steps", i, field_name, path_)
                if isinstance(want, dict):
                    bad = [op for op in want if op not in OPS]
                    if bad:
                        raise fail(f"step {i + 1} ({name}): unknown operator {bad[0]!r} (allowed: {', '.join(sorted(OPS))})",
                                   "steps", i, field_name, path_, bad[0])
        for arg, value in args.items():
            for ref in _refs(value):
                head = ref.split(".")
                if head[0] == "params" and (len(head) < 2 or head[1] not in params):
                    raise fail(f"step {i + 1} ({name}): reference {{{ref}}} to an undeclared parameter",
                               "steps", i, "with", arg)
                if head[0] == "steps" and (len(head) < 3 or head[1] not in names):
                    raise fail(f"step {i + 1} ({name}): reference {{{ref}}} must name an earlier step's result",
                               "steps", i, "with", arg)
                if head[0] not in ("params", "steps", "incident"):
                    raise fail(f"step {i + 1} ({name}): unknown reference {{{ref}}} (params., steps. or incident)",
                               "steps", i, "with", arg)
        on_failure = s.get("on_failure", "stop")
        confirm = s.get("confirm")
        steps.append(Step(i + 1, name, verb, args, s.get("check") or {},
                          (confirm if isinstance(confirm, str) else f"run step {i + 1} ({name})?") if confirm else None,
                          on_failure, bool(s.get("recovery", False)), s.get("if") or {}, s.get("description", ""),
                          _line(_node_for(root, "steps", i))))
        names.append(name)
    for s in steps:
        if not isinstance(s.on_failure, str) or (s.on_failure not in ("stop", "continue") and s.on_failure not in names):
            raise fail(f"step {s.n} ({s.name}): on_failure {s.on_failure!r} is not stop, continue or a step name",
                       "steps", s.n - 1, "on_failure")
    return Playbook(doc["name"], doc.get("description", ""), doc.get("when", ""), params, steps, path)


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def directories(ctx: Any) -> list[Path]:
    dirs = [SHIPPED]
    own = ctx.config.settings.incident.playbooks_dir
    if own:
        dirs.append(ctx.config.resolve(own))
    return dirs


def discover(ctx: Any) -> dict[str, Path]:
    """Playbook name → file; a configured directory's playbook wins over a shipped one of that name."""
    out: dict[str, Path] = {}
    for d in directories(ctx):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.y*ml")):
            out[p.stem] = p
    return out


def find(ctx: Any, name: str, verbs: Mapping[str, Verb]) -> Playbook:
    found = discover(ctx)
    if name not in found:
        raise NotFoundError(f"no playbook {name!r}", hint=f"`llctl playbook list` shows: {', '.join(sorted(found))}")
    pb = load(found[name], verbs)
    if pb.name != name:
        raise LintError(f"{found[name]}:{name_line(found[name])}: the file is named {name!r} but declares name {pb.name!r}",
                        hint="make them agree")
    return pb


def name_line(path: Path) -> int:
    """The line of a (valid) playbook's ``name:``."""
    return _line(_node_for(yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader), "name"))


# --------------------------------------------------------------------------------------- running
def coerce(param: Param, raw: Any) -> Any:
    """A parameter value from --param text (or a YAML default) as its declared type."""
    if raw is None:
        return None
    try:
        if param.type in ("int", "version"):
            v: Any = int(str(raw).removeprefix("v"))
            if not -(2**63) <= v < 2**63:  # beyond what the store holds (an OverflowError later)
                raise ValueError(raw)
        elif param.type == "float":
            v = float(raw)
        elif param.type == "bool":
            if isinstance(raw, bool):
                v = raw
            elif str(raw).lower() in ("true", "yes", "1"):
                v = True
            elif str(raw).lower() in ("false", "no", "0"):
                v = False
            else:
                raise ValueError(raw)
        else:
            v = str(raw)
    except ValueError:
        shown = repr(raw) if len(str(raw)) <= 60 else repr(str(raw)[:40]) + "…"
        raise UsageError(f"--param {param.name}={shown}: expected {param.type}", hint=param.help or None) from None
    if param.type == "time":
        from lifelong_cli.context import utcnow
        from lifelong_cli.timeparse import parse_time

        parse_time(v, now=utcnow(), flag=f"--param {param.name}")  # validated; ops parse it again
    if param.choices and v not in param.choices:
        raise UsageError(f"--param {param.name}={v!r}: choose one of {', '.join(map(str, param.choices))}")
    return v


def resolve_params(pb: Playbook, given: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(pb.params))
    if unknown:
        raise UsageError(f"playbook {pb.name} has no parameter {unknown[0]!r}",
                         hint=f"its parameters: {', '.join(pb.params) or 'none'}")
    out = {}
    for name, p in pb.params.items():
        if name in given:
            out[name] = coerce(p, given[name])
        elif p.required:
            raise UsageError(f"playbook {pb.name} needs --param {name}=...", hint=p.help or None)
        else:
            out[name] = coerce(p, p.default)
    return out


def lookup(scope: dict[str, Any], path: str) -> Any:
    cur: Any = scope
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def substitute(value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: substitute(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return lookup(scope, whole.group(1))
    return _REF.sub(lambda m: str(lookup(scope, m.group(1))), value)


def substitute_known(value: Any, scope: dict[str, Any]) -> Any:
    """Like ``substitute``, but a reference that cannot be resolved yet (a later step's result, the
    incident of a dry run) is left as written: for showing a plan before it runs."""
    if isinstance(value, dict):
        return {k: substitute_known(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_known(v, scope) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        try:
            return lookup(scope, whole.group(1))
        except KeyError:
            return value

    def one(m: re.Match[str]) -> str:
        try:
            return str(lookup(scope, m.group(1)))
        except KeyError:
            return m.group(0)

    return _REF.sub(one, value)


def holds(cond: dict[str, Any], scope: dict[str, Any]) -> tuple[bool, str]:
    """Whether every entry of a check/if holds; the first that does not, described."""
    for path, want in cond.items():
        try:
            got = lookup(scope, path)
        except KeyError:
            return False, f"{path} is not there"
        tests = want if isinstance(want, dict) else {"==": want}
        for op, v in tests.items():
            try:
                ok = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                      "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
                      "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b}[op](got, v)
            except TypeError:
                ok = False
            if not ok:
                return False, f"{path} is {got!r}, expected {op} {v!r}"
    return True, ""


def call_args(step: Step, scope: dict[str, Any], playbook: str, verb: Verb) -> dict[str, Any]:
    """The keyword arguments for ``verb`` (the step's): its ``with`` resolved, and a reason if it takes one."""
    args = substitute(step.with_, scope)
    if "from" in args:
        args["from_"] = args.pop("from")
    if "reason" in verb.params() and not args.get("reason"):
        args["reason"] = f"playbook {playbook}: step {step.n} ({step.name})"
    return args
