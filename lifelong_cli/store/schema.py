"""The state store's tables (SQLAlchemy Core). Changes go through a migration in
``migrations/versions``; ``HEAD_REVISION`` names the newest one so that a fast command can
check the store is current without importing Alembic (a test keeps the two equal)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

from lifelong_cli.store.db import HEAD_REVISION  # noqa: F401  (re-exported)

metadata = MetaData()

# Row ids of the high-volume tables: 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY already is.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite has no time zones); always returned aware, in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


models = Table(
    "models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    # Where its segments go, below data.root; NULL for the model of a store from before models
    # were scoped (its segments are at the root, and their paths are stored in full anyway).
    Column("data_prefix", Text, nullable=True),
    Column("detail", JSON, nullable=False, default=dict),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", String(200), ForeignKey("models.name", name="fk_model_versions_model"), nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("parent_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("strategy", String(40), nullable=True),
    Column("seq_from", Integer, nullable=True),
    Column("seq_to", Integer, nullable=True),
    Column("watermark", Integer, nullable=True),
    Column("rows_trained", Integer, nullable=False, default=0),
    Column("config_hash", String(64), nullable=True),
    Column("lineage", JSON, nullable=False, default=dict),
    Column("metrics", JSON, nullable=False, default=dict),
    Column("artifacts", JSON, nullable=False, default=dict),
    Column("registry_ref", String(500), nullable=True),
    Column("pushed_at", UTCDateTime, nullable=True),
    Column("pushed_by", String(200), nullable=True),
    Column("push_forced", Boolean, nullable=True),
    Column("promoted_at", UTCDateTime, nullable=True),
    Column("demoted_at", UTCDateTime, nullable=True),
    Column("demoted_reason", Text, nullable=True),
    # Version numbers count per model: v1 of one model and v1 of another are different rows.
    PrimaryKeyConstraint("model", "id", name="pk_model_versions"),
    ForeignKeyConstraint(["model", "parent_id"], ["model_versions.model", "model_versions.id"],
                         name="fk_model_versions_parent"),
)

validations = Table(
    "validations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(200), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("gates", JSON, nullable=False, default=list),
    ForeignKeyConstraint(["model", "version_id"], ["model_versions.model", "model_versions.id"],
                         name="fk_validations_version"),
    Index("ix_validations_model_version", "model", "version_id"),
)


def _version_fk(col: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["model", col], ["model_versions.model", "model_versions.id"],
                                name=f"fk_deployment_{col}")


deployment = Table(
    "deployment",
    metadata,
    Column("model", String(200), ForeignKey("models.name", name="fk_deployment_model"), nullable=False),
    Column("stable_version", Integer, nullable=True),
    Column("canary_version", Integer, nullable=True),
    Column("canary_share", Float, nullable=False, default=0.0),
    Column("canary_step", Integer, nullable=True),
    Column("canary_state", String(20), nullable=True),
    Column("canary_started_at", UTCDateTime, nullable=True),
    Column("fallback_mode", Boolean, nullable=False, default=False),
    Column("fallback_strategy", String(60), nullable=True),
    Column("fallback_since", UTCDateTime, nullable=True),
    Column("training_head", Integer, nullable=True),
    Column("generation", Integer, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=True),
    Column("updated_by", String(200), nullable=True),
    Column("canary_step_started_at", UTCDateTime, nullable=True),
    Column("canary_analysis", JSON, nullable=True),
    _version_fk("stable_version"),
    _version_fk("canary_version"),
    _version_fk("training_head"),
    PrimaryKeyConstraint("model", name="pk_deployment"),
)

training_control = Table(
    "training_control",
    metadata,
    Column("model", String(200), ForeignKey("models.name", name="fk_training_control_model"), nullable=False),
    Column("stopped", Boolean, nullable=False, default=False),
    Column("stopped_by", String(200), nullable=True),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("stop_reason", Text, nullable=True),
    Column("resumed_by", String(200), nullable=True),
    Column("resumed_at", UTCDateTime, nullable=True),
    Column("resume_reason", Text, nullable=True),
    Column("lease_holder", String(300), nullable=True),
    Column("lease_token", String(64), nullable=True),
    Column("lease_acquired_at", UTCDateTime, nullable=True),
    Column("lease_heartbeat_at", UTCDateTime, nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("model", name="pk_training_control"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(200), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("source", String(200), nullable=False),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("input", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("rows_read", Integer, nullable=False, default=0),
    Column("rows_accepted", Integer, nullable=False, default=0),
    Column("rows_quarantined", Integer, nullable=False, default=0),
    Column("rows_duplicate", Integer, nullable=False, default=0),
    Column("rows_trainable", Integer, nullable=False, default=0),
    Column("event_time_min", UTCDateTime, nullable=True),
    Column("event_time_max", UTCDateTime, nullable=True),
    Column("segment_path", Text, nullable=True),
    Column("quarantine_path", Text, nullable=True),
    Column("drifted", Boolean, nullable=True),
    Column("drift", JSON, nullable=True),
    Column("detail", JSON, nullable=False, default=dict),
    # one accepted batch per model and content: concurrent ingests of the same file cannot both be accepted
    Index("uq_batches_model_accepted_content", "model", "kind", "content_hash", unique=True,
          sqlite_where=text("status = 'accepted'"), postgresql_where=text("status = 'accepted'")),
)

purge_rules = Table(
    "purge_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(200), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("hard", Boolean, nullable=False, default=False),
    Column("rows_affected", Integer, nullable=False, default=0),
    Column("blast_radius", JSON, nullable=False, default=dict),
    Column("undone_at", UTCDateTime, nullable=True),
    Column("undone_by", String(200), nullable=True),
    Column("undo_reason", Text, nullable=True),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    # the model it was opened for; NULL for an incident about the whole store (a shared upstream)
    Column("model", String(200), nullable=True, index=True),
    Column("title", Text, nullable=False),
    Column("severity", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("opened_by", String(200), nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("closed_by", String(200), nullable=True),
    Column("summary", Text, nullable=True),
)

incident_notes = Table(
    "incident_notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("text", Text, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", UTCDateTime, nullable=False, index=True),
    Column("actor", String(200), nullable=False, index=True),
    Column("verb", String(60), nullable=False, index=True),
    Column("args", JSON, nullable=False, default=dict),
    Column("reason", Text, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("detail", JSON, nullable=False, default=dict),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=True, index=True),
    # the model the entry acted on; NULL for store-wide acts (db upgrade, an incident of no model)
    Column("model", String(200), nullable=True, index=True),
)


replicas = Table(
    "replicas",
    metadata,
    # one row per serving process and model it serves
    Column("id", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("url", Text, nullable=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("generation", Integer, nullable=True),
    Column("stable_version", Integer, nullable=True),
    Column("canary_version", Integer, nullable=True),
    Column("fallback_mode", Boolean, nullable=True),
    Column("detail", JSON, nullable=True),
    PrimaryKeyConstraint("id", "model", name="pk_replicas"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("ts", UTCDateTime, nullable=False, index=True),
    Column("request_id", String(80), nullable=False, index=True),
    Column("replica", String(200), nullable=False),
    Column("version", Integer, nullable=True),
    Column("variant", String(12), nullable=False),
    Column("n_rows", Integer, nullable=False),
    Column("keys", JSON, nullable=True),
    Column("output", JSON, nullable=True),
    Column("shadow", JSON, nullable=True),  # on canary requests: what stable answered for the same rows
    Column("latency_ms", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("request_id", String(80), nullable=False, index=True),
    Column("row_index", Integer, nullable=False),
    Column("label", Text, nullable=True),
    Column("replica", String(200), nullable=False),
)

slo_relaxations = Table(
    "slo_relaxations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(200), nullable=False, index=True),
    Column("policy", String(60), nullable=False),
    Column("until", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
)
