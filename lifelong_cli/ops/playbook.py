"""playbook list | show | lint | run, and the verb table: which op each step verb runs.

A run acts on one model (``ctx.model``, as every step's op does). It opens an incident of that model
(or joins the open one its actions are linked to, which may be a store-wide one), runs each step's op, records every step with its
result as an incident note (the ops audit themselves, linked to the incident), and stops at the
first failure — a refused op or a failed check — unless the step says otherwise; `--from-step N`
continues from there once the cause is fixed."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import CHECK_FAILED, USAGE, DeclinedError, LlctlError, UsageError
from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class OpVerb:
    """A playbook verb: the op ``lifelong_cli.ops.<module>.<name>``, with some arguments fixed. The op's
    module is imported at the call (fast start: a playbook of emergency verbs imports no training)."""

    module: str
    name: str
    fixed: tuple[tuple[str, Any], ...] = ()

    def op(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(f"lifelong_cli.ops.{self.module}"), self.name)

    def __call__(self, ctx: AppContext, **kwargs: Any) -> Any:
        return self.op()(ctx, **dict(self.fixed), **kwargs)

    def params(self) -> set[str]:
        """The keyword arguments it takes in ``with`` (from the op's signature)."""
        params = inspect.signature(self.op()).parameters
        fixed = {k for k, _ in self.fixed}
        return {p for p in params if p not in ("ctx", "progress", *fixed)} | ({"from"} if "from_" in params else set())


# The verbs a playbook step may ``run``: step verb → op.
VERBS: dict[str, OpVerb] = {
    "stop-training": OpVerb("stop_training", "stop_training"),
    "resume": OpVerb("resume", "resume"),
    "fallback-on": OpVerb("fallback", "fallback", (("on", True),)),
    "fallback-off": OpVerb("fallback", "fallback", (("on", False),)),
    "rollback": OpVerb("rollback", "rollback"),
    "purge-data": OpVerb("purge_data", "purge_data"),
    "data-holds": OpVerb("holds", "data_holds"),
    "data-release": OpVerb("holds", "data_release"),
    "data-reject": OpVerb("holds", "data_reject"),
    "train": OpVerb("train", "train"),
    "validate": OpVerb("validate", "validate"),
    "push": OpVerb("push", "push"),
    "canary-start": OpVerb("canary", "start"),
    "canary-step": OpVerb("canary", "step"),
    "canary-status": OpVerb("canary", "status"),
    "canary-promote": OpVerb("canary", "promote"),
    "canary-abort": OpVerb("canary", "abort"),
    "canary-watch": OpVerb("canary", "watch"),
    "drift": OpVerb("drift", "drift"),
    "status": OpVerb("status", "status"),
    "check": OpVerb("check", "check"),
    "slo-relax": OpVerb("check", "relax"),
    "incident-note": OpVerb("incident", "note"),
    "versions": OpVerb("versions", "versions"),
}


@dataclass(frozen=True)
class PlaybookInfo(Result):
    name: str
    description: str
    when: str
    path: str
    params: list[dict[str, Any]]
    steps: list[dict[str, Any]]


@dataclass(frozen=True)
class PlaybookList(Result):
    playbooks: list[dict[str, Any]]


@dataclass(frozen=True)
class LintResult(Result):
    ok: bool
    checked: list[str]
    problems: list[str]


@dataclass(frozen=True)
class RunResult(Result):
    model: str
    playbook: str
    incident: int | None
    dry_run: bool
    params: dict[str, Any]
    ok: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    failed_step: int | None = None
    resume_from: int | None = None  # the --from-step value that continues at the failed step
    message: str = ""
    next: str = ""
    exit_code: int = 0


def _info(pb) -> PlaybookInfo:
    return PlaybookInfo(pb.name, pb.description, pb.when, str(pb.path),
                        [{"name": p.name, "type": p.type, "default": p.default, "required": p.required, "help": p.help}
                         for p in pb.params.values()],
                        [{"n": s.n, "name": s.name, "run": s.run, "with": s.with_, "check": s.check, "confirm": s.confirm,
                          "on_failure": s.on_failure, "recovery": s.recovery, "if": s.if_} for s in pb.steps])


def list_playbooks(ctx: AppContext) -> PlaybookList:
    from lifelong_cli.incident import playbook as pbk

    out = []
    for name, path in sorted(pbk.discover(ctx).items()):
        try:
            pb = pbk.load(path, VERBS)
            out.append({"name": name, "description": pb.description, "when": pb.when, "path": str(path), "ok": True})
        except LlctlError as exc:
            out.append({"name": name, "description": "", "when": "", "path": str(path), "ok": False, "error": exc.message})
    return PlaybookList(out)


def show(ctx: AppContext, *, name: str) -> PlaybookInfo:
    from lifelong_cli.incident import playbook as pbk

    return _info(pbk.find(ctx, name, VERBS))


def lint(ctx: AppContext, *, paths: list[str] | None = None) -> LintResult:
    from pathlib import Path

    from lifelong_cli.incident import playbook as pbk

    files = [Path(p) for p in paths] if paths else list(pbk.discover(ctx).values())
    problems, checked = [], []
    for f in files:
        checked.append(str(f))
        if not f.is_file():
            problems.append(f"{f}: no such file")
            continue
        try:
            pb = pbk.load(f, VERBS)
        except LlctlError as exc:
            problems.append(exc.message)
            continue
        if pb.name != f.stem:  # `playbook run NAME` finds the file by its name: they must agree
            problems.append(f"{f}:{pbk.name_line(f)}: the file is named {f.stem!r} but declares name {pb.name!r}")
    return LintResult(not problems, checked, problems)


def _status(ctx: AppContext) -> dict[str, Any]:
    from lifelong_cli.ops.status import status

    return status(ctx).to_dict()


def run(ctx: AppContext, *, name: str, params: dict[str, str] | None = None, dry_run: bool = False, yes: bool = False,
        from_step: int = 1, title: str | None = None, severity: str = "sev2",
        progress: Callable[[str], None] | None = None) -> RunResult:
    from lifelong_cli.incident import playbook as pbk
    from lifelong_cli.ops import incident as inc_ops

    say = progress or (lambda _m: None)
    pb = pbk.find(ctx, name, VERBS)
    values = pbk.resolve_params(pb, params or {})
    main = pb.main_steps
    if not 1 <= from_step <= len(main):
        raise UsageError(f"--from-step {from_step}: playbook {name} has steps 1 to {len(main)}")
    if dry_run:
        plan = []
        known = {"params": values, "steps": {}}
        for s in main:
            skip = "before --from-step" if s.n < main[from_step - 1].n else None
            if skip is None and s.if_ and all(str(k).split(".")[0] == "params" for k in s.if_):
                ok, why = pbk.holds(s.if_, known)  # decidable now: it names parameters only
                skip = None if ok else f"condition not met: {why}"
            plan.append({"n": s.n, "name": s.name, "run": s.run, "with": jsonable(pbk.substitute_known(s.with_, known)),
                         "check": s.check, "if": s.if_, "confirm": s.confirm, "on_failure": s.on_failure,
                         "skipped": skip is not None, "skip_reason": skip})
        return RunResult(ctx.model, name, None, True, jsonable(values), True, plan,
                         message=f"model '{ctx.model}': dry run: playbook {name}, {len(main)} step(s) from step {from_step}; nothing changed",
                         next=f"llctl playbook run {name} " + " ".join(f"--param {k}={v}" for k, v in (params or {}).items()))
    opened = inc_ops.open_incident(ctx, title=title or f"playbook {name}", severity=severity, join=True)
    iid = opened.incident["id"]
    inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} started (params {values}, from step {from_step})")
    say(f"incident {iid}: {opened.message}")
    scope: dict[str, Any] = {"params": values, "steps": {}, "incident": iid}
    records: list[dict[str, Any]] = []
    by_name = {s.name: s for s in pb.steps}
    main_index = {s.n: i + 1 for i, s in enumerate(main)}  # file position → --from-step value

    def run_step(s, *, recovery_of: str | None = None) -> tuple[bool, int]:
        """Run one step; returns (ok, exit code on failure)."""
        label = f"step {s.n} ({s.name}: {s.run})" + (f", recovery for {recovery_of}" if recovery_of else "")
        rec: dict[str, Any] = {"n": s.n, "name": s.name, "run": s.run}
        records.append(rec)
        if s.if_:
            scope["status"] = _status(ctx)
            ok, why = pbk.holds(s.if_, scope)
            if not ok:
                rec.update(status="skipped", message=f"condition not met: {why}")
                say(f"{label}: skipped ({why})")
                inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: skipped — condition not met: {why}")
                return True, 0
        try:
            args = pbk.call_args(s, scope, name, VERBS[s.run])
        except KeyError as exc:
            rec.update(status="failed", message=f"cannot resolve {exc.args[0]} (was the step that sets it skipped?)")
            say(f"{label}: FAILED — {rec['message']}")
            inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: FAILED — {rec['message']}")
            return False, USAGE
        rec["args"] = jsonable(args)
        if s.confirm and not yes:
            at = main_index.get(s.n) or main_index[by_name[recovery_of].n]  # a recovery step: its failed step
            again = f"--from-step {at}"
            if not sys.stdin.isatty():
                rec.update(status="declined", message="needs confirmation; not on a terminal and no --yes")
                inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: not run — needs confirmation "
                             "(not on a terminal and no --yes)")
                raise DeclinedError(f"step {s.n} ({s.name}) needs confirmation: {s.confirm}",
                                    hint=f"re-run with --yes {again}")
            import typer

            if not typer.confirm(f"{s.confirm} [{s.run} {args}]", default=False, err=True):
                rec.update(status="declined", message="declined at the prompt")
                inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: declined at the prompt")
                raise DeclinedError(f"step {s.n} ({s.name}) declined; stopped", hint=f"{again} continues")
        say(f"{label} ...")
        try:
            if s.run == "canary-watch" and "progress" not in args:
                result = VERBS[s.run](ctx, progress=say, **args)
            else:
                result = VERBS[s.run](ctx, **args)
        except LlctlError as exc:
            rec.update(status="failed", message=exc.message, exit_code=exc.exit_code)
            say(f"{label}: FAILED — {exc.message}")
            inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: FAILED — {exc.message}")
            return False, exc.exit_code
        doc = result.to_dict()
        scope["steps"][s.name] = {"result": doc}
        scope["result"] = doc
        message = doc.get("message") or f"{s.run} done"
        code = doc.get("exit_code", 0) if isinstance(doc.get("exit_code"), int) else 0
        if s.check or code:
            scope["status"] = _status(ctx)
            ok, why = pbk.holds(s.check, scope) if s.check else (False, f"{s.run} exited {code}")
            if not ok:
                rec.update(status="check-failed", message=f"{message}; check failed: {why}", result=doc)
                say(f"{label}: CHECK FAILED — {why}")
                inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: check failed — {why}")
                return False, code or CHECK_FAILED
        rec.update(status="ok", message=message, result=doc)
        say(f"{label}: {message}")
        inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} {label}: {message}")
        return True, 0

    failed_step, code = None, 0
    for s in main:
        if s.n < main[from_step - 1].n:
            records.append({"n": s.n, "name": s.name, "run": s.run, "status": "skipped", "message": "before --from-step"})
            continue
        ok, code = run_step(s)
        if ok:
            continue
        if s.on_failure == "continue":
            continue
        if s.on_failure != "stop":
            rok, _ = run_step(by_name[s.on_failure], recovery_of=s.name)
            records[-1]["recovery"] = True
        failed_step = s.n
        break
    if failed_step is None:
        continued = [r["name"] for r in records if r["status"] in ("failed", "check-failed")]  # on_failure: continue
        outcome = (f"{sum(r['status'] == 'ok' for r in records)} step(s) ok"
                   + (f", {len(continued)} failed and continued past ({', '.join(continued)})" if continued else ""))
        inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} finished: {outcome}")
        return RunResult(ctx.model, name, iid, False, jsonable(values), True, jsonable(records),
                         message=f"model '{ctx.model}': playbook {name} finished: {outcome}; incident {iid} is still open",
                         next=f"`llctl incident close {iid} --summary ...` then `llctl incident report {iid}`")
    idx = main_index[failed_step]
    why = next(r["message"] for r in records if r["n"] == failed_step)
    inc_ops.note(ctx, incident_id=iid, text=f"playbook {name} stopped at step {idx} ({main[idx - 1].name}): {why}")
    return RunResult(ctx.model, name, iid, False, jsonable(values), False, jsonable(records), failed_step, idx,
                     message=f"model '{ctx.model}': playbook {name} stopped at step {idx} ({main[idx - 1].name}): {why}",
                     next=f"fix the cause, then `llctl playbook run {name} --from-step {idx}` (same --param values)",
                     exit_code=code or CHECK_FAILED)
