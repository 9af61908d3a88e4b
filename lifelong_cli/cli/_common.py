"""What every command shares: options, the error wrapper, JSON output, confirmation."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from lifelong_cli.context import AppContext
from lifelong_cli.errors import INTERNAL, INTERRUPTED, DeclinedError, LlctlError

R = TypeVar("R")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (errors too).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed when not on a terminal).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change and change nothing.")]


def app_ctx(tctx: typer.Context, *, json_out: bool = False) -> AppContext:
    ctx: AppContext = tctx.obj
    ctx.json = ctx.json or json_out
    return ctx


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def report_error(ctx: AppContext | None, exc: LlctlError) -> None:
    if ctx is not None and ctx.json:
        emit_json({"error": exc.to_dict()})
    lines = [f"error: {exc.message}"]
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    caret = exc.details.get("caret") if exc.details else None
    if caret:
        lines.append(caret)
    sys.stderr.write("\n".join(lines) + "\n")


def run(
    ctx: AppContext,
    op: Callable[[], R],
    render: Callable[[AppContext, R], None],
    *,
    exit_code: Callable[[R], int] = lambda _r: 0,
) -> None:
    """Call one op, render its result (human or JSON), and exit with the right code."""
    try:
        result = op()
    except LlctlError as exc:
        report_error(ctx, exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        ctx.warn("interrupted")
        if ctx.json:
            emit_json({"error": {"type": "Interrupted", "kind": "interrupted", "message": "interrupted",
                                 "exit_code": INTERRUPTED}})
        raise typer.Exit(INTERRUPTED) from None
    except Exception as exc:  # a bug: one line, traceback only under --debug
        if ctx.debug:
            traceback.print_exc(file=sys.stderr)
        msg = f"internal error: {type(exc).__name__}: {exc}"
        ctx.warn(msg + ("" if ctx.debug else " (run with --debug for a traceback)"))
        if ctx.json:
            emit_json({"error": {"type": type(exc).__name__, "kind": "internal", "message": str(exc),
                                 "exit_code": INTERNAL}})
        raise typer.Exit(INTERNAL) from None
    finally:
        ctx.close()
    if ctx.json:
        emit_json(result.to_dict())  # type: ignore[attr-defined]
    else:
        render(ctx, result)
    raise typer.Exit(exit_code(result))


def confirm(ctx: AppContext, question: str, *, yes: bool) -> None:
    """Ask before a destructive change. Not on a terminal and no --yes: declined (exit 8)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise DeclinedError(f"not confirmed: {question}", hint="stdin is not a terminal; re-run with --yes to confirm")
    if not typer.confirm(question, default=False, err=True):
        raise DeclinedError("declined at the prompt; nothing changed")


def when(t: Any) -> str:
    """A stored time for humans: 2026-11-25 03:12:09Z."""
    if t is None:
        return "-"
    s = str(t).replace("T", " ")
    return s[:19] + "Z" if not s.endswith("Z") else s[:19] + "Z"
