"""registry.kind: mlflow with the real binary: against a real `mlflow server` (artifacts proxied by
the server, so nothing is read from its disk behind its back) and against a local sqlite:/// store.

The flow: ingest, train, ingest, train; the versions carry registry refs; MLflow's own client sees
two registered model versions tagged llctl_version, their runs' metrics and artifacts; with the
local cache deleted a third version still trains (the parent's artifacts come from MLflow); a
corrupted cache entry is re-downloaded; a corrupted MLflow copy fails cleanly (exit 3). And an
unreachable tracking server is exit 7 with one `error:` line and no password."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lifelong_cli.context import AppContext
from tests.helpers import CliResult, run_bin

SERVER_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A real tracking server on 127.0.0.1: (its URL, the directory it stores artifacts in)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLCTL_", "MLFLOW_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner and its worker processes
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts")],  # --serve-artifacts is the default
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health in {SERVER_START_TIMEOUT_S}s:\n"
                            f"{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield url, root / "artifacts"
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """The server and the uvicorn worker it forks share one process group (start_new_session)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def _ok(r: CliResult) -> CliResult:
    assert r.code == 0, f"exit {r.code}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _synthetic(tmp_path: Path, batches: int) -> Path:
    out = tmp_path / "stream"
    subprocess.run([sys.executable, "-m", "lifelong_cli.data.synthetic", str(out), "--batches", str(batches),
                    "--rows", "600"], check=True, capture_output=True, timeout=120)
    return out


def _init(tmp_path: Path, env: dict[str, str], model: str | None = None) -> Path:
    ws = tmp_path / "ws"
    _ok(run_bin([*(["--model", model] if model else []), "init", str(ws)], cwd=tmp_path, env=env))
    return ws


ABANDON = """
from lifelong_cli.context import AppContext
from lifelong_cli.registry.base import open_registry
print(open_registry(AppContext()).put("probe", b"never a version").uri)
"""


def _mlflow_flow(ws: Path, env: dict[str, str], stream: Path, tracking_uri: str, artifact_store: Path) -> None:
    """The whole story against one tracking store; ``artifact_store`` is where MLflow keeps the bytes."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lifelong_cli.errors import NotFoundError
    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.registry.mlflow_registry import VERSION_TAG

    # two versions through the real binary; --json stays one document with MLflow in the process
    _ok(run_bin(["ingest", str(stream / "batch-01.csv")], cwd=ws, env=env))
    r = _ok(run_bin(["train", "--epochs", "1"], cwd=ws, env=env, timeout=300))
    assert "trained v1" in r.stdout and "INFO mlflow" not in r.stderr, r.stderr
    _ok(run_bin(["ingest", str(stream / "batch-02.csv")], cwd=ws, env=env))
    r = _ok(run_bin(["train", "--epochs", "1", "--json"], cwd=ws, env=env, timeout=300))
    trained = json.loads(r.stdout)
    assert trained["status"] == "trained" and trained["version"] == 2
    assert all(a["uri"].startswith("runs:/") for a in trained["artifacts"].values())

    listed = json.loads(_ok(run_bin(["versions", "--json"], cwd=ws, env=env)).stdout)["versions"]
    assert [v["id"] for v in listed] == [2, 1]
    shown = json.loads(_ok(run_bin(["versions", "show", "2", "--json"], cwd=ws, env=env)).stdout)["version"]
    assert shown["registry_ref"].startswith("mlflow:")
    model = shown["model"]

    # MLflow's own view: two registered versions tagged with their llctl versions, runs with metrics
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mvs = {mv.tags[VERSION_TAG]: mv for mv in client.search_model_versions(f"name='{model}'")}
    assert sorted(mvs) == ["1", "2"]
    mv2 = mvs["2"]
    assert shown["registry_ref"] == f"mlflow:{mv2.run_id}/{mv2.version}"
    run = client.get_run(mv2.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rows_new"] == shown["metrics"]["rows_new"]
    assert run.data.metrics["holdout_accuracy"] == pytest.approx(shown["metrics"]["holdout_accuracy"])
    assert run.data.params["strategy"] == shown["strategy"] and run.data.tags[VERSION_TAG] == "2"
    assert mv2.source == f"{run.info.artifact_uri}/llctl"
    logged = {a.path for a in client.list_artifacts(mv2.run_id, "llctl")}
    assert {"llctl/lineage.json", "llctl/artifacts.json", "llctl/state_dict", "llctl/onnx"} <= logged
    sd = shown["artifacts"]["state_dict"]
    assert sd["uri"] == f"runs:/{mv2.run_id}/llctl/state_dict/{sd['sha256']}"

    # the local cache gone: v3 trains from v2's artifacts downloaded from MLflow
    cache = ws / ".llctl" / "artifacts" / model  # each model's own cache, below registry.root
    assert cache.is_dir()
    shutil.rmtree(cache)
    _ok(run_bin(["ingest", str(stream / "batch-03.csv")], cwd=ws, env=env))
    r = _ok(run_bin(["train", "--epochs", "1"], cwd=ws, env=env, timeout=300))
    assert "trained v3 from v2" in r.stdout
    parent_sd = cache / "objects" / sd["sha256"][:2] / sd["sha256"]
    assert parent_sd.is_file(), "the parent's state dict was not downloaded into the cache"

    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        from lifelong_cli.store import versions

        reg = open_registry(ctx)
        # a corrupted cache entry is downloaded again, and the cache healed
        with ctx.store.tx(write=False) as t:
            v3 = versions.require(t, ctx.model, 3)
        ref = ArtifactRef.from_dict("state_dict", v3["artifacts"]["state_dict"])
        cached = cache / "objects" / ref.sha256[:2] / ref.sha256
        good = cached.read_bytes()
        cached.write_bytes(b"not a state dict")
        assert reg.fetch(ref) == good
        assert cached.read_bytes() == good

        # aliases mirror the store's pointers on the registered versions
        reg.set_alias("stable", 2)
        reg.set_alias("canary", 3)
        assert client.get_model_version_by_alias(model, "stable").tags[VERSION_TAG] == "2"
        assert client.get_model_version_by_alias(model, "canary").tags[VERSION_TAG] == "3"
        reg.set_alias("canary", None)
        reg.set_alias("canary", None)  # removing an absent alias is fine
        with pytest.raises(MlflowException):
            client.get_model_version_by_alias(model, "canary")
        with pytest.raises(NotFoundError):
            reg.set_alias("stable", 99)
    finally:
        ctx.close()

    # the emergency verbs change the store only; `registry sync` mirrors it as aliases
    _ok(run_bin(["rollback", "--to", "2", "--serving-only"], cwd=ws, env=env))
    _ok(run_bin(["fallback", "on", "--strategy", "version:1"], cwd=ws, env=env))
    synced = json.loads(_ok(run_bin(["registry", "sync", "--json"], cwd=ws, env=env)).stdout)
    assert synced["aliases"] == {"stable": 2, "canary": None, "head": 3, "fallback": 1}
    for alias, v in (("stable", "2"), ("head", "3"), ("fallback", "1")):
        assert client.get_model_version_by_alias(model, alias).tags[VERSION_TAG] == v

    # a run that never became a version (the process ended after a put) is not left RUNNING
    p = subprocess.run([sys.executable, "-c", ABANDON], cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("runs:/"), p.stderr
    assert client.get_run(p.stdout.split("/")[1]).info.status == "FAILED"

    # the cache and MLflow's copy both corrupted: training v4 fails cleanly, no version written
    run_id = ref.uri.split("/")[1]  # runs:/<run_id>/llctl/state_dict/<sha256>; the server is shared by tests
    [server_copy] = [p for p in artifact_store.rglob(ref.sha256) if run_id in p.parts and p.parent.name == "state_dict"]
    server_copy.write_bytes(b"tampered")
    cached.write_bytes(b"tampered too")
    _ok(run_bin(["ingest", str(stream / "batch-04.csv")], cwd=ws, env=env))
    r = run_bin(["train", "--epochs", "1"], cwd=ws, env=env, timeout=300)
    assert r.code == 3, (r.code, r.stderr)
    assert len(_error_lines(r.stderr)) == 1 and "checksum" in r.stderr and "Traceback" not in r.stderr
    assert [v["id"] for v in json.loads(run_bin(["versions", "--json"], cwd=ws, env=env).stdout)["versions"]] == [3, 2, 1]


@pytest.mark.slow
def test_train_against_a_real_mlflow_tracking_server(tmp_path, sqlite_cli_env, mlflow_server):
    cli_env = sqlite_cli_env
    url, artifact_store = mlflow_server
    ws = _init(tmp_path, cli_env, model=f"m-{tmp_path.name}")  # one registered model per test run on the shared server
    cfg_path = ws / "llctl.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["model"]["name"] == f"m-{tmp_path.name}"
    cfg["registry"].update(kind="mlflow", tracking_uri=url, experiment=f"llctl-{tmp_path.name}")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    _mlflow_flow(ws, cli_env, _synthetic(tmp_path, 4), url, artifact_store)


@pytest.mark.slow
def test_train_against_a_local_sqlite_mlflow_store(tmp_path, sqlite_cli_env):
    env = {**sqlite_cli_env, "LLCTL_REGISTRY__KIND": "mlflow", "LLCTL_REGISTRY__TRACKING_URI": "sqlite:///.llctl/mlflow.db"}
    ws = _init(tmp_path, env)
    # relative to the workspace, whatever the current directory
    stream = _synthetic(tmp_path, 4)
    tracking = f"sqlite:///{ws}/.llctl/mlflow.db"
    _mlflow_flow(ws, env, stream, tracking, ws / ".llctl" / "mlartifacts")
    assert (ws / ".llctl" / "mlflow.db").is_file()
    assert not (ws / "mlruns").exists() and not (tmp_path / "mlruns").exists()

    # a second model in the same store and workspace is its own registered model, numbered from v1
    from mlflow import MlflowClient

    from lifelong_cli.registry.mlflow_registry import VERSION_TAG

    other = ["--model", "other"]
    _ok(run_bin([*other, "init", str(ws)], cwd=tmp_path, env=env))
    _ok(run_bin([*other, "ingest", str(stream / "batch-01.csv")], cwd=ws, env=env))
    r = _ok(run_bin([*other, "train", "--epochs", "1", "--json"], cwd=ws, env=env, timeout=300))
    assert (json.loads(r.stdout)["model"], json.loads(r.stdout)["version"]) == ("other", 1)
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    assert [mv.tags[VERSION_TAG] for mv in client.search_model_versions("name='other'")] == ["1"]
    assert sorted(mv.tags[VERSION_TAG] for mv in client.search_model_versions("name='demo'")) == ["1", "2", "3"]


def test_unreachable_tracking_server_is_exit_7_with_one_error_line(tmp_path, cli_env):
    env = {**cli_env, "LLCTL_REGISTRY__KIND": "mlflow",
           "LLCTL_REGISTRY__TRACKING_URI": "http://llctl:hunter2@127.0.0.1:1"}
    ws = _init(tmp_path, env)
    stream = _synthetic(tmp_path, 1)
    _ok(run_bin(["ingest", str(stream / "batch-01.csv")], cwd=ws, env=env))
    r = run_bin(["train", "--epochs", "1", "--json"], cwd=ws, env=env, timeout=300)
    assert r.code == 7, (r.code, r.stderr)
    err = json.loads(r.stdout)["error"]  # stdout: exactly one JSON document
    assert err["exit_code"] == 7 and err["kind"] == "unavailable"
    assert "registry.tracking_uri" in err["hint"] and "127.0.0.1:1" in err["message"]
    assert len(_error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    assert json.loads(_ok(run_bin(["versions", "--json"], cwd=ws, env=env)).stdout)["versions"] == []


def test_relative_sqlite_tracking_uri_resolves_against_the_workspace(tmp_path):
    from lifelong_cli.config import load_config
    from lifelong_cli.registry.mlflow_registry import resolve_tracking_uri

    (tmp_path / "llctl.yaml").write_text("registry:\n  kind: mlflow\n  tracking_uri: sqlite:///reg/mlflow.db\n")
    cfg = load_config(env={}, cwd=tmp_path)
    assert resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/reg/mlflow.db"
    cfg = load_config(env={"LLCTL_REGISTRY__TRACKING_URI": "http://mlflow:5000"}, cwd=tmp_path)
    assert resolve_tracking_uri(cfg) == "http://mlflow:5000"


def test_mlflow_kind_without_a_tracking_uri_is_a_config_error(tmp_path, cli_env):
    env = {**cli_env, "LLCTL_REGISTRY__KIND": "mlflow"}
    ws = _init(tmp_path, env)
    r = run_bin(["train", "--dry-run"], cwd=ws, env=env)
    assert r.code == 6 and "registry.tracking_uri" in r.stderr and len(_error_lines(r.stderr)) == 1
