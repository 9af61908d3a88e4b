"""What every command shares: options, the error wrapper, JSON output, confirmation."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer

from lifelong_cli.context import AppContext
from lifelong_cli.errors import INTERNAL, INTERRUPTED, DeclinedError, LlctlError

R = TypeVar("R")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (errors too).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed when not on a terminal).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change and change nothing.")]


INT64_MAX = 2**63 - 1  # the largest integer the state store holds (SQLite INTEGER, PostgreSQL BIGINT)


def whole(value: Any) -> int:
    """The ``parser`` of every integer option and argument (ids, versions, limits, counts): a whole
    number from 0 to 2^63-1 — beyond that the store cannot hold it (an OverflowError, not an answer)."""
    if isinstance(value, int) and not isinstance(value, bool):
        v = value
    else:
        text = str(value).strip()
        if not text.lstrip("+-").isdigit() or not text.isascii():
            raise typer.BadParameter(f"{str(value)[:40]!r} is not a whole number")
        if len(text.lstrip("+-0")) > 19:  # int() of 5,000 digits is refused by Python itself
            raise typer.BadParameter(f"{text[:24]}{'…' if len(text) > 24 else ''} is too large (at most {INT64_MAX})")
        v = int(text)
    if v < 0:
        raise typer.BadParameter(f"{v} is negative (a whole number from 0 is expected)")
    if v > INT64_MAX:
        raise typer.BadParameter(f"{v} is too large (at most {INT64_MAX})")
    return v


def version_number(value: Any) -> int:
    """The ``parser`` of version arguments: ``whole``, also written as outputs print it (``v4``)."""
    text = value if isinstance(value, int) else str(value).strip()
    if isinstance(text, str) and text[:1] in ("v", "V") and text[1:].isdigit():
        text = text[1:]
    return whole(text)


def app_ctx(tctx: typer.Context, *, json_out: bool = False) -> AppContext:
    ctx: AppContext = tctx.obj
    ctx.json = ctx.json or json_out
    return ctx


def emit_json(doc: Any) -> None:
    from lifelong_cli.secrets import mask_obj

    sys.stdout.write(json.dumps(mask_obj(doc), default=str, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def masked_output() -> Iterator[None]:
    """stdout and stderr with secrets masked (``lifelong_cli.secrets``) while a command runs."""
    from lifelong_cli.secrets import MaskingStream

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskingStream(out), MaskingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


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
    """Call one op, render its result (human or JSON), and exit with the right code. Everything it
    prints goes through ``masked_output``."""
    with masked_output():
        _run(ctx, op, render, exit_code=exit_code)


def _run(ctx: AppContext, op: Callable[[], R], render: Callable[[AppContext, R], None], *,
         exit_code: Callable[[R], int]) -> None:
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
