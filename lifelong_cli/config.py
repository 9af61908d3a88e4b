"""Configuration: one validated ``Settings`` built from, in rising precedence,
``./llctl.yaml`` or ``--config FILE``, ``LLCTL_<SECTION>__<KEY>`` environment variables, and
flags (``--set section.key=value``, ``--store-url``). Relative paths are relative to the
config file's directory (the workspace)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lifelong_cli.errors import ConfigError, WorkspaceNotFoundError

CONFIG_NAME = "llctl.yaml"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
ENV_PREFIX = "LLCTL_"
# Environment variables that are not config keys.
ENV_NON_CONFIG = {"LLCTL_CONFIG", "LLCTL_ACTOR", "LLCTL_DEBUG", "LLCTL_MODEL"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Section):
    url: str = Field("sqlite:///.llctl/state.db", description="SQLAlchemy URL of the state store")


class FeatureSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["float", "int", "category", "string", "bool"] = "float"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None


def _duration(v: str) -> str:
    """A duration setting (``duration_seconds`` refuses a bad one), stripped."""
    duration_seconds(v)
    return v.strip()


def _distinct(items: list[Any], what: str) -> list[Any]:
    """``items`` (each with a ``name``), refused when two share a name."""
    names = [i.name for i in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} names: {', '.join(dupes)}")
    return items


class LabelAuditSettings(_Section):
    """The audit of every batch that carries labels (labels, feedback, labelled examples), against the
    same source's recent labels: the class shares (chi-square) and the agreement with the stable
    version's predictions per predicted class (one-sided). A batch fails only when a test is both
    significant (``alpha``, Bonferroni over its tests) and large (the minimum effects)."""

    on_fail: Literal["hold", "accept"] = "hold"
    alpha: float = Field(0.001, gt=0.0, lt=1.0)
    min_share_change: float = Field(0.08, ge=0.0, le=1.0)  # a class's share, absolute
    min_agreement_drop: float = Field(0.15, ge=0.0, le=1.0)  # disagreement rise for one predicted class
    reference_rows: int = Field(3000, ge=100)
    min_rows: int = Field(30, ge=5)  # fewer rows (batch or reference, or one predicted class): not judged


class DataSettings(_Section):
    root: str = ".llctl/data"
    key: str = "example_id"
    event_time: str = "event_time"
    label: str = "label"
    label_type: Literal["category", "float", "int"] = "category"
    label_categories: list[str] | None = None
    features: list[FeatureSpec] = Field(default_factory=list)
    max_bad_fraction: float = Field(0.2, ge=0.0, le=1.0)
    orphan_label_window_hours: float = Field(24.0, ge=0.0)
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    # A labels or feedback batch that changes more than this share of the labels in use for its
    # examples is held (stored, not trainable) until `llctl data release` (or `reject`); accept: taken as is.
    on_label_conflict: Literal["hold", "accept"] = "hold"
    label_conflict_tolerance: float = Field(0.02, ge=0.0, le=1.0)
    label_audit: LabelAuditSettings = Field(default_factory=LabelAuditSettings)
    chunk_rows: int = Field(65_536, ge=1_000)
    max_field_bytes: int = Field(1_000_000, ge=1_000)

    @field_validator("features")
    @classmethod
    def _unique_names(cls, v: list[FeatureSpec]) -> list[FeatureSpec]:
        return _distinct(v, "feature")


class DriftSettings(_Section):
    backend: Literal["scipy", "alibi"] = "scipy"
    on_ingest: bool = True
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    reference_rows: int = Field(10_000, ge=100)
    null_rate_tolerance: float = Field(0.05, ge=0.0, le=1.0)
    min_samples: int = Field(30, ge=1)
    # A drifted examples batch is held (stored, not trainable) when the drift is also large against the
    # newest `hold_reference_rows` rows: a median moved by `hold_min_shift` reference spreads, a spread
    # changed by `hold_min_scale` times (a unit change, a stuck feature), a null-rate rise, categories
    # moved by `hold_min_share` (total variation), or a batch whose rows repeat stored ones (a replay).
    on_drift: Literal["hold", "accept"] = "hold"
    hold_reference_rows: int = Field(1000, ge=100)
    hold_min_shift: float = Field(1.0, gt=0.0)
    hold_min_scale: float = Field(3.0, gt=1.0)
    hold_min_share: float = Field(0.3, gt=0.0, le=1.0)
    max_replayed_share: float = Field(0.5, gt=0.0, le=1.0)


class RegistrySettings(_Section):
    kind: Literal["local", "mlflow"] = "local"
    root: str = ".llctl/artifacts"
    tracking_uri: str | None = None
    experiment: str = "llctl"


class ModelSettings(_Section):
    name: str = Field("model", pattern=r"^[A-Za-z0-9_.-]+$", description="the model's name")
    architecture: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ReplaySettings(_Section):
    buffer_size: int = Field(2000, ge=1)
    new_ratio: float = Field(0.5, gt=0.0, le=1.0)


class EwcSettings(_Section):
    ewc_lambda: float = Field(100.0, ge=0.0)
    fisher_samples: int = Field(1000, ge=10)


class PreprocessSettings(_Section):
    scale_floor: float = Field(0.0, ge=0.0, description="smallest scale, as a share of |mean| (0: none)")
    clip: float | None = Field(5.0, gt=0.0, description="standardised values clipped to ±clip; null = no clipping")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value: str) -> float:
    """``30m``, ``6h``, ``2d`` → seconds (the value was validated by the config)."""
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 30m, 6h or 2d")
    return float(m.group(1)) * _DURATION_SECONDS[m.group(2)]


class TrainingSettings(_Section):
    strategy: Literal["naive", "replay", "ewc", "ewc+replay"] = "ewc+replay"
    # null: adapt to the increment (min_steps .. max_epochs, early stopping); a number: exactly that many passes
    epochs: int | None = Field(None, ge=1)
    min_steps: int = Field(300, ge=0)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(5, ge=1)
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    min_validation_rows: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    continued_lr_factor: float = Field(0.3, gt=0.0, le=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    shuffle_buffer: int = Field(10_000, ge=1)
    frozen_layers: list[str] = Field(default_factory=list)
    max_rows: int | None = Field(None, ge=1)
    seed: int = 0
    threads: int = Field(1, ge=1, le=256)
    preprocess: PreprocessSettings = PreprocessSettings()
    replay: ReplaySettings = ReplaySettings()
    ewc: EwcSettings = EwcSettings()
    fallback_lookup_key: str | None = None
    lease_ttl_seconds: float = Field(30.0, gt=0.0)
    heartbeat_seconds: float = Field(1.0, gt=0.0)
    min_new_rows: int = Field(1000, ge=1)
    max_wait: str = "24h"

    _max_wait = field_validator("max_wait")(classmethod(lambda cls, v: _duration(v)))


class ValidationSettings(_Section):
    min_metrics: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.6})
    max_regression: float = Field(0.02, ge=0.0)
    max_slice_drop: float = Field(0.10, ge=0.0, le=1.0)
    max_latency_ms: float = Field(20.0, gt=0.0)
    parity_tolerance: float = Field(1e-4, gt=0.0)
    collapse_share: float = Field(0.99, gt=0.0, le=1.0)
    min_slice_rows: int = Field(20, ge=1)
    # The candidate on the hold-out of the data new since its baseline (not part of the golden set):
    # an accuracy this far below the golden one says the new labels disagree with everything before.
    max_new_data_drop: float = Field(0.25, ge=0.0, le=1.0)
    # Any slice (of at least min_slice_rows) whose accuracy is below this fails, whatever the baseline
    # scored on it (a slice at 2 % next to a baseline also at 2 % is broken, not retained); null: off.
    slice_floor: float | None = Field(0.2, ge=0.0, le=1.0)
    # Hold-out rows join the golden set only once their batch is this old (time for the audits and
    # for people to catch what they missed); imported golden sets count at once. E.g. 0s, 30m, 6h.
    golden_min_age: str = "0s"

    _golden_min_age = field_validator("golden_min_age")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("min_metrics")
    @classmethod
    def _known_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - {"accuracy", "macro_f1", "mae", "rmse"})
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; use accuracy, macro_f1 (classification) or mae, rmse (regression)")
        return v


class ServingSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    replicas: list[str] = Field(default_factory=list)
    admin_token_env: str = Field("LLCTL_ADMIN_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    poll_ms: int = Field(200, ge=10, le=250)
    max_body_bytes: int = Field(1_000_000, ge=1_000)
    max_batch_rows: int = Field(1_000, ge=1)
    log_queue_rows: int = Field(100_000, ge=100)
    log_flush_ms: int = Field(500, ge=10)
    replica_ttl_seconds: float = Field(5.0, gt=0.0)
    confirm_timeout_seconds: float = Field(5.0, ge=0.0)


class CanarySettings(_Section):
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    min_requests: int = Field(100, ge=1)
    min_labelled: int = Field(50, ge=1)
    min_step_seconds: float = Field(30.0, ge=0.0)
    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    max_error_rate_increase: float = Field(0.01, ge=0.0)
    max_latency_ratio: float = Field(2.0, ge=1.0)
    min_latency_increase_ms: float = Field(2.0, ge=0.0)
    max_accuracy_drop: float = Field(0.05, ge=0.0)
    max_prediction_shift: float = Field(0.25, ge=0.0, le=1.0)

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < s <= 100 for s in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[-1] != 100:
            raise ValueError("steps must rise strictly, each in (0, 100], and end at 100")
        return v


SloAction = Literal["none", "open-incident", "fallback-on", "rollback-last-good", "stop-training", "canary-abort"]
SLO_POLICIES = ("staleness", "fallback", "golden", "drift", "canary_hold", "stopped", "holds")


class SloActions(_Section):
    staleness: SloAction = "open-incident"
    fallback: SloAction = "open-incident"
    golden: SloAction = "rollback-last-good"
    drift: SloAction = "open-incident"
    canary_hold: SloAction = "canary-abort"
    stopped: SloAction = "open-incident"
    holds: SloAction = "open-incident"


class SloSettings(_Section):
    max_staleness_hours: float = Field(48.0, gt=0.0)
    max_fallback_minutes: float = Field(60.0, gt=0.0)
    golden_floor: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.6})
    max_drifted_batches: int = Field(3, ge=1)
    max_canary_hold_minutes: float = Field(60.0, gt=0.0)
    max_stopped_hours: float = Field(4.0, gt=0.0)
    max_hold_hours: float = Field(24.0, gt=0.0)  # a batch left on hold (neither released nor rejected) longer
    actions: SloActions = SloActions()


class IncidentSettings(_Section):
    playbooks_dir: str | None = None


NOTIFY_EVENTS = ("incident.opened", "incident.closed", "slo.violated", "canary.aborted", "rollback", "fallback.on",
                 "fallback.off", "training.stopped", "training.resumed", "batch.held", "batch.released", "batch.rejected",
                 "test")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class NotifyTarget(_Section):
    """One receiver of notifications. Its URL and routing key are read from the environment variables
    named here when a notification is sent: never written in llctl.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["webhook", "slack", "pagerduty"] = "webhook"
    url_env: str | None = Field(None, pattern=_ENV_NAME)
    routing_key_env: str | None = Field(None, pattern=_ENV_NAME)
    events: list[str] = Field(default_factory=lambda: ["*"])
    timeout: float = Field(2.0, gt=0.0, le=30.0)  # seconds per attempt; "2s" and "500ms" are accepted
    retries: int = Field(2, ge=0, le=5)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for key in ("url", "routing_key"):
                if key in v:
                    raise ValueError(f"{key}: do not write it in the config; put it in an environment variable "
                                     f"and name that variable in {key}_env")
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", v["timeout"]) if isinstance(v.get("timeout"), str) else None
            if m:
                v = {**v, "timeout": float(m[1]) / (1000 if m[2] == "ms" else 1)}
        return v

    @model_validator(mode="after")
    def _complete(self) -> NotifyTarget:
        unknown = [e for e in self.events if e != "*" and e not in NOTIFY_EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {', '.join(unknown)}; events: *, {', '.join(NOTIFY_EVENTS)}")
        if self.kind == "pagerduty" and not self.routing_key_env:
            raise ValueError(f"target {self.name!r}: a pagerduty target needs routing_key_env")
        if self.kind != "pagerduty" and not self.url_env:
            raise ValueError(f"target {self.name!r}: a {self.kind} target needs url_env")
        return self


class NotifySettings(_Section):
    targets: list[NotifyTarget] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, v: list[NotifyTarget]) -> list[NotifyTarget]:
        return _distinct(v, "target")


class Settings(_Section):
    model: ModelSettings = ModelSettings()
    store: StoreSettings = StoreSettings()
    data: DataSettings = DataSettings()
    drift: DriftSettings = DriftSettings()
    registry: RegistrySettings = RegistrySettings()
    training: TrainingSettings = TrainingSettings()
    validation: ValidationSettings = ValidationSettings()
    serving: ServingSettings = ServingSettings()
    canary: CanarySettings = CanarySettings()
    slo: SloSettings = SloSettings()
    incident: IncidentSettings = IncidentSettings()
    notify: NotifySettings = NotifySettings()


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    path: Path | None  # None when running on defaults (no file)
    workspace: Path
    sources: Mapping[str, str]  # dotted key -> where it came from (file, env var, flag)
    model_named: bool = False  # model.name was given (file, environment or flag), not the default

    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.workspace / path

    @property
    def store_url(self) -> str:
        url = self.settings.store.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and rel != ":memory:":
                return "sqlite:///" + str(self.resolve(rel))
        return url

    @property
    def state_dir(self) -> Path:
        return self.workspace / ".llctl"

    @property
    def data_root(self) -> str:
        r = self.settings.data.root
        return r if "://" in r else str(self.resolve(r))

    @property
    def registry_root(self) -> Path:
        return self.resolve(self.settings.registry.root)

    def masked(self) -> dict[str, Any]:
        """The merged config as a dict with secrets masked (for `config show`)."""
        return _mask(self.settings.model_dump(mode="json"))


_SECRET_KEY = re.compile(r"password|secret|token$", re.I)


def _mask(obj: Any, key: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _mask(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask(v, key) for v in obj]
    if isinstance(obj, str):
        if _SECRET_KEY.search(key) and not key.endswith("_env"):
            return "***"
        from lifelong_cli.secrets import mask

        return mask(obj)
    return obj


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def find_config(explicit: str | os.PathLike | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """--config, then LLCTL_CONFIG, then ./llctl.yaml; None if none exists (and none was named)."""
    named = explicit or env.get("LLCTL_CONFIG")
    if named:
        p = Path(named).expanduser()
        p = p if p.is_absolute() else cwd / p
        if not p.is_file():
            raise WorkspaceNotFoundError(
                f"config file {p} does not exist", hint="pass an existing file to --config, or run `llctl init`"
            )
        return p
    p = cwd / CONFIG_NAME
    return p if p.is_file() else None


def load_config(
    *,
    explicit: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    require_file: bool = True,
) -> LoadedConfig:
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    path = find_config(explicit, env, cwd)
    if path is None and require_file:
        raise WorkspaceNotFoundError(
            f"no {CONFIG_NAME} in {cwd}",
            hint="run `llctl init` here, cd into a workspace, or pass --config FILE",
        )
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    label = str(path) if path else "defaults"
    if path is not None:
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})",
                              hint=f"fix the file; `llctl init --force` rewrites a fresh {CONFIG_NAME}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections", hint="see config.example.yaml")
        raw = loaded
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX) and name not in ENV_NON_CONFIG and "__" in name:
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_dotted(raw, dotted, _scalar(value))
            sources[dotted] = f"environment variable {name}"
    model_named = isinstance(raw.get("model"), dict) and "name" in raw["model"]
    if env.get("LLCTL_MODEL"):
        _set_dotted(raw, "model.name", env["LLCTL_MODEL"])
        sources["model.name"] = "environment variable LLCTL_MODEL"
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, _scalar(value) if isinstance(value, str) else value)
        sources[dotted] = "flag"
    model_named = model_named or "model.name" in sources
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        src = next((s for k, s in sources.items() if key == k or key.startswith(k + ".")), label)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            f"{src}: {key}: {msg}{more}",
            hint="config.example.yaml documents every key and its allowed values",
            key=key,
            source=src,
        ) from None
    workspace = path.parent if path else cwd
    return LoadedConfig(settings=settings, path=path, workspace=workspace, sources=sources, model_named=model_named)
