"""The `llctl` command: global options, command registration, and the top-level error guard."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from lifelong_cli import __version__
from lifelong_cli.cli import control, data, incident, metrics, notify, release, status, train, workspace
from lifelong_cli.cli._lean_imports import keep_pandas_out
from lifelong_cli.context import AppContext
from lifelong_cli.errors import EXIT_CODES, INTERRUPTED, USAGE

EPILOG = "Exit codes: " + " · ".join(f"{code} {text.split(' (')[0]}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="llctl",
    help="Operate a continuously trained model: ingest, train, validate, push, canary — and stop, "
    "fall back, roll back, purge and resume when it goes wrong.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"llctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    tctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file (default ./llctl.yaml; env LLCTL_CONFIG).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who is acting, for the audit log (default: env LLCTL_ACTOR, else the OS user).")] = None,
    store_url: Annotated[str | None, typer.Option("--store-url", help="State store URL, overriding config and env.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The model to act on, in a store that holds several (env LLCTL_MODEL; default model.name).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set drift.alpha=0.01 (repeatable).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for internal errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    overrides: dict[str, str] = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        overrides[key.strip()] = value
    if store_url:
        overrides["store.url"] = store_url
    if model:
        overrides["model.name"] = model
    tctx.obj = AppContext(config_file=config, overrides=overrides, actor=actor, debug=debug)


app.command("status")(status.status)
app.command("audit")(status.audit)
app.command("doctor")(status.doctor)
app.command("stop-training")(control.stop_training)
app.command("resume")(control.resume)
app.command("rollback")(control.rollback)
app.add_typer(control.fallback_app, name="fallback")
app.command("init")(workspace.init)
app.command("models")(workspace.models)
app.command("demo")(workspace.demo)
app.command("ingest")(data.ingest)
app.add_typer(data.quarantine_app, name="quarantine")
app.add_typer(data.labels_app, name="labels")
app.add_typer(data.data_app, name="data")
app.command("drift")(data.drift)
app.command("purge-data")(data.purge_data)
app.command("train")(train.train)
app.add_typer(train.versions_app, name="versions")
app.add_typer(train.golden_app, name="golden")
app.command("validate")(train.validate)
app.command("push")(release.push)
app.add_typer(release.canary_app, name="canary")
app.command("serve")(release.serve)
app.add_typer(release.feedback_app, name="feedback")
app.add_typer(incident.incident_app, name="incident")
app.add_typer(incident.playbook_app, name="playbook")
app.command("check")(incident.check)
app.add_typer(notify.notify_app, name="notify")
app.command("metrics")(metrics.metrics)
app.add_typer(workspace.config_app, name="config")
app.add_typer(workspace.db_app, name="db")
app.add_typer(workspace.registry_app, name="registry")


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors become exit 2 (as JSON too under --json), Ctrl-C exit 130."""
    # pydantic scans every installed distribution for plugins on first use (~10 ms); llctl uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    keep_pandas_out()
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = app(args=args, prog_name="llctl", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        code = getattr(exc, "exit_code", USAGE)
        if "--json" in args:
            sys.stdout.write(json.dumps({"error": {"type": "UsageError", "kind": "usage",
                                                   "message": exc.format_message(), "exit_code": code}}) + "\n")
        exc.show(file=sys.stderr)
        sys.exit(code)
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    sys.exit(rv if isinstance(rv, int) else 0)


def entry() -> None:
    """The console script. Skip the interpreter's slow teardown (over a second after torch, 0.3 s
    after pyarrow and onnxruntime) once no other thread needs it: everything is committed and
    fsynced by then (the op's context is closed), and exit handlers still run."""
    try:
        main()
    except SystemExit as exc:
        import threading

        others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        if others and "torch" not in sys.modules:
            raise
        import atexit

        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)  # what the interpreter's own exit would print
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):  # its reader has gone (`llctl audit | head -1`): nothing to tell
                continue
        os._exit(code)
