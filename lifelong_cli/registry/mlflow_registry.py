"""The MLflow registry (``registry.kind: mlflow``): artifacts, runs and registered model versions in
an MLflow tracking store — a local ``sqlite:///`` file or a remote ``http(s)://`` tracking server.

Layout, for the model the command acts on (``--model`` / ``model.name``) in the experiment
``registry.experiment`` (models sharing a store share the experiment; each is its own registered model):

- one MLflow run per ``llctl train``, started by the first ``put`` and ended by ``record_version``;
- each artifact is the file ``llctl/<name>/<sha256>`` of that run; its ``ArtifactRef.uri`` is
  ``runs:/<run_id>/llctl/<name>/<sha256>`` (resolved through the tracking URI, so it survives a
  server moving its artifact store); the run also carries ``llctl/lineage.json`` and
  ``llctl/artifacts.json``, the params, the metrics and the scalar lineage as ``llctl.*`` tags;
- llctl version N is registered model version M of the registered model named like the llctl model,
  tagged ``llctl_version=N``, its source the run's ``llctl`` artifact directory; ``record_version``
  returns ``mlflow:<run_id>/<M>``;
- aliases (stable, canary, fallback) mirror the state store's pointers on those model versions.

Every artifact is also kept in a content-addressed cache under ``registry.root`` (the local
registry's layout); ``fetch`` reads the cache when its sha256 verifies and downloads from MLflow
otherwise (healing the cache). Artifacts recorded by the local registry (a plain path as ``uri``)
are still readable after switching ``registry.kind``.

mlflow is imported on first use only (a fetch served by the cache imports none of it). MLflow's
logging goes to stderr at WARNING; nothing it does reaches stdout (``--json`` stays one document).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from lifelong_cli.errors import ConfigError, LlctlError, NotFoundError, PreconditionError, UnavailableError
from lifelong_cli.fsutil import atomic_write_bytes
from lifelong_cli.registry.base import ArtifactRef, sha256_bytes, verify
from lifelong_cli.registry.local import LocalRegistry

if TYPE_CHECKING:
    from lifelong_cli.config import LoadedConfig

ARTIFACT_DIR = "llctl"
VERSION_TAG = "llctl_version"
PROBE_TIMEOUT_S = 5.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNREACHABLE = re.compile(r"max retries exceeded|connection refused|failed to establish|name or service not known|"
                          r"timed out|connection reset|connection aborted|remotedisconnected|nodename nor servname",
                          re.I)

# MLflow defaults that suit a CLI, unless the user set them: no run URL printed to stdout, no
# progress bars, WARNING-level logs, and a few quick retries instead of ~4 minutes of them.
_MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def mask(text: str) -> str:
    """Hide the password of any ``scheme://user:password@host`` in ``text`` (``lifelong_cli.secrets``)."""
    from lifelong_cli.secrets import mask as mask_secrets

    return mask_secrets(text)


@cache
def _mlflow() -> SimpleNamespace:
    user_level = "MLFLOW_LOGGING_LEVEL" in os.environ
    for k, v in _MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    with contextlib.redirect_stdout(sys.stderr):
        import mlflow.artifacts
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    if not user_level:  # mlflow may have been imported before the defaults were set
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    errors: tuple[type[BaseException], ...] = (MlflowException, OSError)
    with contextlib.suppress(ImportError):
        import requests

        errors += (requests.exceptions.RequestException,)
    with contextlib.suppress(ImportError):
        import sqlalchemy.exc

        errors += (sqlalchemy.exc.SQLAlchemyError,)
    return SimpleNamespace(MlflowClient=MlflowClient, MlflowException=MlflowException, Metric=Metric, Param=Param,
                           RunTag=RunTag, download_artifacts=mlflow.artifacts.download_artifacts, errors=errors)


def resolve_tracking_uri(cfg: LoadedConfig) -> str:
    """``registry.tracking_uri`` with relative ``sqlite:///`` and plain paths made absolute against
    the workspace (MLflow would resolve them against the current directory)."""
    uri = cfg.settings.registry.tracking_uri
    if not uri:
        raise ConfigError("registry.kind is mlflow but registry.tracking_uri is not set",
                          hint="set registry.tracking_uri in llctl.yaml (or LLCTL_REGISTRY__TRACKING_URI): "
                               "sqlite:///.llctl/mlflow.db for a local store, http://HOST:5000 for a tracking server",
                          key="registry.tracking_uri")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and rel != ":memory:":
            return "sqlite:///" + str(cfg.resolve(rel))
        return uri
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return cfg.resolve(uri).as_uri()
    return uri


class MlflowRegistry:
    kind = "mlflow"

    def __init__(self, cfg: LoadedConfig, *, model: str, cache_root: Path | None = None) -> None:
        self.tracking_uri = resolve_tracking_uri(cfg)
        self.experiment = cfg.settings.registry.experiment
        self.model_name = model
        self._uri_source = cfg.sources.get("registry.tracking_uri") or (str(cfg.path) if cfg.path else "the defaults")
        self._cache = LocalRegistry(cache_root or cfg.registry_root)
        self._state_dir = cfg.state_dir
        self._client_obj: Any = None
        self._experiment_id: str | None = None
        self._run_id: str | None = None
        self._run_artifact_uri: str | None = None
        self._reachable = False
        self._broken = False

    # -- the Registry protocol ---------------------------------------------------------------

    def put(self, name: str, data: bytes) -> ArtifactRef:
        """Cache the bytes locally, then log them as ``llctl/<name>/<sha256>`` of this training's run."""
        if not _NAME.match(name):
            raise ValueError(f"artifact name {name!r} must match {_NAME.pattern}")
        local = self._cache.put(name, data)  # the file is named by its sha256: the artifact's basename
        run_id = self._active_run()
        with self._calling(f"upload artifact {name}"):
            self._client().log_artifact(run_id, local.uri, artifact_path=f"{ARTIFACT_DIR}/{name}")
        return ArtifactRef(name, local.sha256, local.bytes, f"runs:/{run_id}/{ARTIFACT_DIR}/{name}/{local.sha256}")

    def fetch(self, ref: ArtifactRef) -> bytes:
        """The verified bytes: from the cache when its sha256 matches, else downloaded from MLflow
        (and the cache rewritten). CheckFailedError when the downloaded copy does not verify."""
        cached = self._cache._path(ref.sha256)
        with contextlib.suppress(OSError):
            data = cached.read_bytes()
            if sha256_bytes(data) == ref.sha256:
                return data
        if not _is_mlflow_uri(ref.uri):  # recorded by the local registry before the switch to mlflow
            return self._cache.fetch(ref)
        data = verify(ref, self._download(ref))
        atomic_write_bytes(cached, data)
        return data

    def record_version(self, version: int, *, artifacts: dict[str, ArtifactRef], params: dict[str, Any],
                       metrics: dict[str, float], lineage: dict[str, Any]) -> str | None:
        """Log params, metrics and lineage on the run, end it, and register it as a model version
        tagged ``llctl_version=<version>``. Returns ``mlflow:<run_id>/<model version>``."""
        ml = _mlflow()
        run_id = self._active_run()
        client = self._client()
        now = int(time.time() * 1000)
        tags = {VERSION_TAG: str(version), "llctl.model": self.model_name}
        for k, v in lineage.items():
            if v is None or isinstance(v, str | int | float | bool):
                tags[f"llctl.{k}"] = str(v)[:5000]
        with self._calling(f"record version {version}"):
            client.log_batch(
                run_id,
                metrics=[ml.Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())
                         if isinstance(v, int | float) and math.isfinite(v)],
                params=[ml.Param(k, str(v)) for k, v in sorted({**params, VERSION_TAG: version}.items())],
                tags=[ml.RunTag(k, v) for k, v in sorted(tags.items())])
            client.log_dict(run_id, lineage, f"{ARTIFACT_DIR}/lineage.json")
            client.log_dict(run_id, {k: a.to_dict() for k, a in sorted(artifacts.items())},
                            f"{ARTIFACT_DIR}/artifacts.json")
            client.update_run(run_id, name=f"{self.model_name}-v{version}")
            client.set_terminated(run_id, "FINISHED")
            self._forget_run()
            self._ensure_registered_model()
            mv = client.create_model_version(
                self.model_name, f"{self._run_artifact_uri_for(run_id)}/{ARTIFACT_DIR}", run_id=run_id,
                tags={VERSION_TAG: str(version)}, description=f"llctl version {version} of {self.model_name}")
        return f"mlflow:{run_id}/{mv.version}"

    def set_alias(self, alias: str, version: int | None) -> None:
        """Point the registered model's alias at llctl ``version`` (None removes the alias)."""
        client = self._client()
        if version is None:
            with self._calling(f"remove alias {alias}"):
                try:
                    client.delete_registered_model_alias(self.model_name, alias)
                except _mlflow().MlflowException as exc:
                    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
            return
        with self._calling(f"set alias {alias}"):
            mv = self._model_version(version)
            client.set_registered_model_alias(self.model_name, alias, mv.version)

    # -- beyond the protocol -----------------------------------------------------------------

    def check(self) -> None:
        """Reach the tracking store and its experiment now (UnavailableError if it cannot)."""
        self._ensure_experiment()

    def model_version_for(self, version: int) -> Any:
        """The registered MLflow model version of llctl ``version`` (NotFoundError if none)."""
        with self._calling(f"look up version {version}"):
            return self._model_version(version)

    # -- internals ---------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._client_obj is None:
            self._probe()
            ml = _mlflow()
            if self.tracking_uri.startswith("sqlite:///"):
                with contextlib.suppress(OSError):
                    Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            with self._calling("connect"):
                self._client_obj = ml.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client_obj

    def _probe(self) -> None:
        """Fail fast (one line, exit 7) when an HTTP tracking server does not answer, instead of
        MLflow's retries and tracebacks. Any HTTP answer counts as reachable."""
        if self._reachable:
            return
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https"):
            self._reachable = True
            return
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:  # http(s) only, checked above
                resp.read(64)
        except urllib.error.HTTPError:
            pass  # it answered
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if not isinstance(reason, ssl.SSLError):  # TLS is MLflow's to judge (its CA bundle, insecure flag)
                raise self._unreachable(_short_reason(str(reason))) from None
        self._reachable = True

    def _unreachable(self, reason: str) -> UnavailableError:
        self._broken = True
        reason = _one_line(mask(reason))
        where = self.tracking_uri
        if where.startswith(("http://", "https://")):
            what = f"the MLflow tracking server at {mask(where)} is unreachable"
            hint = f"start it, or fix registry.tracking_uri (set in {self._uri_source}); `llctl config show` shows it"
        else:
            what = f"the MLflow tracking store {mask(where)} cannot be used"
            hint = f"check the path and its permissions, or fix registry.tracking_uri (set in {self._uri_source})"
        return UnavailableError(f"registry unavailable: {what} ({reason})", hint=hint, registry="mlflow")

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Run MLflow calls with stdout sent to stderr, and their failures as LlctlErrors."""
        ml = _mlflow()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        except LlctlError:
            raise
        except ml.errors as exc:
            raise self._translate(exc, what) from None

    def _translate(self, exc: BaseException, what: str) -> LlctlError:
        code = getattr(exc, "error_code", None)
        text = _one_line(mask(getattr(exc, "message", None) or str(exc)))
        if code == "RESOURCE_DOES_NOT_EXIST":
            return NotFoundError(f"MLflow could not {what}: {text}",
                                 hint="the run, model or artifact was deleted in MLflow, or registry.tracking_uri "
                                      f"(set in {self._uri_source}) points at another server", registry="mlflow")
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or re.search(r"\b(401|403)\b", text):
            self._broken = True
            return UnavailableError(f"registry unavailable: MLflow refused to {what} ({text})",
                                    hint="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                                         "MLFLOW_TRACKING_TOKEN) in the environment", registry="mlflow")
        if _UNREACHABLE.search(text) or not isinstance(exc, _mlflow().MlflowException):
            return self._unreachable(_short_reason(text))
        self._broken = True
        return UnavailableError(f"registry unavailable: MLflow could not {what}: {text}",
                                hint=f"check the tracking server's log; registry.tracking_uri is set in {self._uri_source}",
                                registry="mlflow")

    def _local_artifact_location(self) -> str | None:
        """Where a new experiment keeps artifacts when there is no server to decide: next to the
        sqlite file (MLflow's default is ./mlruns of whatever directory llctl runs in)."""
        parts = urlsplit(self.tracking_uri)
        if parts.scheme in ("http", "https", "databricks"):
            return None
        if self.tracking_uri.startswith("sqlite:///"):
            return (Path(self.tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
        if parts.scheme == "file":
            return None  # the file store keeps artifacts inside itself
        return (self._state_dir / "mlartifacts").as_uri()

    def _ensure_experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        client = self._client()
        ml = _mlflow()
        with self._calling(f"open experiment {self.experiment}"):
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    exp_id = client.create_experiment(self.experiment, artifact_location=self._local_artifact_location())
                except ml.MlflowException as exc:  # created concurrently by another trainer
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = client.get_experiment_by_name(self.experiment)
                    exp_id = exp.experiment_id
            elif exp.lifecycle_stage == "deleted":
                raise PreconditionError(f"the MLflow experiment {self.experiment!r} is deleted",
                                        hint=f"restore it (`mlflow experiments restore --experiment-id {exp.experiment_id}`) "
                                             "or set registry.experiment to another name")
            else:
                exp_id = exp.experiment_id
        self._experiment_id = str(exp_id)
        return self._experiment_id

    def _active_run(self) -> str:
        if self._run_id is None:
            exp_id = self._ensure_experiment()
            with self._calling("start a run"):
                run = self._client().create_run(
                    exp_id, run_name=f"{self.model_name}-train-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
                    tags={"llctl.model": self.model_name, "mlflow.source.name": "llctl train"})
            self._run_id, self._run_artifact_uri = run.info.run_id, run.info.artifact_uri
            atexit.register(self._abandon)
        return self._run_id

    def _run_artifact_uri_for(self, run_id: str) -> str:
        if self._run_artifact_uri and run_id in self._run_artifact_uri:
            return self._run_artifact_uri
        return self._client().get_run(run_id).info.artifact_uri

    def _forget_run(self) -> None:
        self._run_id = None
        atexit.unregister(self._abandon)

    def _abandon(self) -> None:
        """At exit, a run that never became a version (training failed or was stopped) is marked
        FAILED rather than left RUNNING forever. Best effort; skipped when MLflow is unreachable."""
        run_id, self._run_id = self._run_id, None
        if run_id is None or self._broken:
            return
        with contextlib.suppress(Exception), contextlib.redirect_stdout(sys.stderr):
            self._client().set_tag(run_id, "llctl.outcome", "no version written")
            self._client().set_terminated(run_id, "FAILED")

    def _ensure_registered_model(self) -> None:
        client = self._client()
        try:
            client.get_registered_model(self.model_name)
        except _mlflow().MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                client.create_registered_model(self.model_name, tags={"llctl.model": self.model_name},
                                               description="trained by llctl")
            except _mlflow().MlflowException as exc2:
                if exc2.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _model_version(self, version: int) -> Any:
        found = self._client().search_model_versions(
            f"name='{self.model_name}' and tags.{VERSION_TAG}='{int(version)}'")
        if not found:
            raise NotFoundError(f"no MLflow model version of {self.model_name} is tagged {VERSION_TAG}={version}",
                                hint="the version was trained with the local registry or its MLflow record failed; "
                                     "`llctl versions show N --json` shows its registry_ref")
        return max(found, key=lambda mv: int(mv.version))  # newest, if a retry registered it twice

    def _download(self, ref: ArtifactRef) -> bytes:
        self._client()  # probe first: an unreachable server is one clean line, not retries
        ml = _mlflow()
        with tempfile.TemporaryDirectory(prefix="llctl-fetch-") as d, self._calling(f"download artifact {ref.name}"):
            path = ml.download_artifacts(artifact_uri=ref.uri, dst_path=d, tracking_uri=self.tracking_uri)
            return Path(path).read_bytes()


def _is_mlflow_uri(uri: str) -> bool:
    scheme = urlsplit(uri).scheme
    return bool(scheme) and scheme != "file" and len(scheme) > 1  # len>1: not a Windows drive letter


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_reason(text: str) -> str:
    low = text.lower()
    for needle, short in (("refused", "connection refused"), ("timed out", "timed out"),
                          ("name or service not known", "unknown host"), ("nodename nor servname", "unknown host"),
                          ("reset", "connection reset"), ("remotedisconnected", "connection closed"),
                          ("aborted", "connection aborted")):
        if needle in low:
            return short
    return _one_line(text, 160)
