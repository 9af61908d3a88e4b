"""Running the real entry point, in-process (fast) or as a subprocess (the real binary)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> CliResult:
    """Call `lifelong_cli.cli.app.main` in this process with its own cwd, env, stdout and stderr."""
    from lifelong_cli.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return CliResult(code, out.getvalue(), err.getvalue())


def llctl_bin() -> str:
    return str(Path(sys.executable).parent / "llctl")


def run_bin(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120,
            stdin: str | None = None) -> CliResult:
    p = subprocess.run([llctl_bin(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    return CliResult(p.returncode, p.stdout, p.stderr)


_PEAK_PROBE = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")


def run_bin_peak(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> tuple[CliResult, int]:
    """``run_bin`` and the peak RSS (KB) of that one process: measured by a probe process whose only
    child it is (this process's own children — servers, other tests' binaries — do not count)."""
    import os

    p = subprocess.run([sys.executable, "-c", _PEAK_PROBE, llctl_bin(), *args], cwd=cwd,
                       env={**env, "PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, timeout=timeout)
    *err, peak = p.stderr.rstrip("\n").split("\n")
    return CliResult(p.returncode, p.stdout, "\n".join(err) + ("\n" if err else "")), int(peak)


def read_all_rows(workspace: Path, env: dict[str, str]):
    """Every accepted example row of the workspace's model, labelled or not, hold-out included, its purge
    rules applied, through the one reader."""
    from lifelong_cli.context import AppContext
    from lifelong_cli.data.reader import read_rows
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches, purge_rules

    ctx = AppContext(cwd=workspace, env=env, actor="tester")
    try:
        with ctx.store.tx(write=False) as t:
            refs, rules = batches.for_reading(t, ctx.model), purge_rules.active(t, ctx.model)
        return read_rows(DataStore(ctx.data_root), DataSchema.from_settings(ctx.config.settings.data), refs, rules,
                         trainable_only=False, holdout="include")
    finally:
        ctx.close()


def copy_workspace(src: Path, dst: Path) -> Path:
    """A copy of a SQLite workspace; the store holds absolute artifact and segment paths, which are
    pointed at the copy (so a test may damage its own artifacts)."""
    import shutil
    import sqlite3

    shutil.copytree(src, dst)
    db = sqlite3.connect(dst / ".llctl" / "state.db")
    try:
        # the audit log is append-only (and only records what was done where): left as it was
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'audit_log'"
                                   ).fetchall():
            for col in [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{col}" = replace("{col}", ?, ?) '
                           f'WHERE typeof("{col}") = \'text\' AND instr("{col}", ?) > 0', (str(src), str(dst), str(src)))
        db.commit()
    finally:
        db.close()
    return dst


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
