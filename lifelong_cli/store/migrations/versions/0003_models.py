"""One store, many models: a ``models`` table, and every state row scoped to its model.

Versions are numbered per model (primary key ``(model, id)``); the deployment row, the training
control row and each replica's report exist once per model; batches, purge rules, predictions,
feedback and SLO relaxations carry their model; audit entries and incidents name it.

An existing single-model store is upgraded in place: its rows all belong to one model, named (in
this order) by the versions it already holds, by the ``model.name`` of the config that runs the
upgrade, or ``model``. An empty store gets no model here: ``llctl init`` adds it.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import context, op

from lifelong_cli.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"

_SCOPED_NOT_NULL = ("batches", "purge_rules", "predictions", "feedback", "slo_relaxations")
_SCOPED_NULLABLE = ("incidents", "audit_log")

_SQLITE_TRIGGERS = ("update", "delete")
_APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_log_no_{op} BEFORE {OP} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""
_APPEND_ONLY_PG_TRIGGER = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION llctl_audit_append_only()
"""


def _scalar(sql: str, **params):
    return op.get_bind().execute(sa.text(sql), params).scalar()


def _is_empty() -> bool:
    """Nothing but the two singleton rows that migration 0001 creates, untouched."""
    for table in ("model_versions", "batches", "purge_rules", "incidents", "audit_log", "predictions",
                  "slo_relaxations"):
        if _scalar(f"SELECT count(*) FROM {table}"):
            return False
    return not _scalar("SELECT generation FROM deployment WHERE id = 1")


def _legacy_name() -> tuple[str, list[str]]:
    names = [r[0] for r in op.get_bind().execute(sa.text(
        "SELECT model, count(*) FROM model_versions GROUP BY model ORDER BY count(*) DESC, model"))]
    configured = context.config.attributes.get("llctl_model")
    if len(names) == 1:
        return names[0], names
    if configured and (not names or configured in names):
        return configured, names
    return (names[0] if names else configured or "model"), names


def _versions_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("model", sa.String(200), sa.ForeignKey("models.name", name="fk_model_versions_model"),
                  nullable=False),
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("parent_id", sa.Integer, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("strategy", sa.String(40), nullable=True),
        sa.Column("seq_from", sa.Integer, nullable=True),
        sa.Column("seq_to", sa.Integer, nullable=True),
        sa.Column("watermark", sa.Integer, nullable=True),
        sa.Column("rows_trained", sa.Integer, nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=True),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("artifacts", sa.JSON, nullable=False),
        sa.Column("registry_ref", sa.String(500), nullable=True),
        sa.Column("pushed_at", UTCDateTime, nullable=True),
        sa.Column("pushed_by", sa.String(200), nullable=True),
        sa.Column("push_forced", sa.Boolean, nullable=True),
        sa.Column("promoted_at", UTCDateTime, nullable=True),
        sa.Column("demoted_at", UTCDateTime, nullable=True),
        sa.Column("demoted_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("model", "id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(["model", "parent_id"], ["model_versions.model", "model_versions.id"],
                                name="fk_model_versions_parent"),
    )


def _version_fk(col: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["model", col], ["model_versions.model", "model_versions.id"],
                                   name=f"fk_deployment_{col}")


def _copy(old: str, new: str, cols: str, legacy: str) -> None:
    op.get_bind().execute(sa.text(f"INSERT INTO {new} (model, {cols}) SELECT :m, {cols} FROM {old}"), {"m": legacy})


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    empty = _is_empty()
    legacy, seen = _legacy_name()

    op.create_table(
        "models",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("data_prefix", sa.Text, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    if not empty:
        first = _scalar("SELECT min(created_at) FROM batches") or _scalar("SELECT min(ts) FROM audit_log")
        detail = {"migrated_from": "0002"} | ({"merged_names": seen} if len(seen) > 1 else {})
        models = sa.table("models", sa.column("name"), sa.column("created_at", UTCDateTime),
                          sa.column("created_by"), sa.column("data_prefix"), sa.column("detail", sa.JSON))
        from datetime import UTC, datetime

        when = first if isinstance(first, datetime) else None
        if isinstance(first, str):
            when = datetime.fromisoformat(first)
        when = (when or datetime.now(UTC)).replace(tzinfo=UTC)
        bind.execute(models.insert().values(name=legacy, created_at=when, created_by="llctl db upgrade",
                                            data_prefix=None, detail=detail))

    # The tables whose keys change are rebuilt: renamed aside, created anew, copied, dropped.
    for t in ("deployment", "training_control", "validations", "model_versions", "replicas"):
        op.rename_table(t, f"{t}_0002")
    _versions_table("model_versions")
    op.create_table(
        "validations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("gates", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["model", "version_id"], ["model_versions.model", "model_versions.id"],
                                name="fk_validations_version"),
    )
    op.create_table(
        "deployment",
        sa.Column("model", sa.String(200), sa.ForeignKey("models.name", name="fk_deployment_model"), nullable=False),
        sa.Column("stable_version", sa.Integer, nullable=True),
        sa.Column("canary_version", sa.Integer, nullable=True),
        sa.Column("canary_share", sa.Float, nullable=False),
        sa.Column("canary_step", sa.Integer, nullable=True),
        sa.Column("canary_state", sa.String(20), nullable=True),
        sa.Column("canary_started_at", UTCDateTime, nullable=True),
        sa.Column("fallback_mode", sa.Boolean, nullable=False),
        sa.Column("fallback_strategy", sa.String(60), nullable=True),
        sa.Column("fallback_since", UTCDateTime, nullable=True),
        sa.Column("training_head", sa.Integer, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=True),
        sa.Column("updated_by", sa.String(200), nullable=True),
        sa.Column("canary_step_started_at", UTCDateTime, nullable=True),
        sa.Column("canary_analysis", sa.JSON, nullable=True),
        _version_fk("stable_version"),
        _version_fk("canary_version"),
        _version_fk("training_head"),
        sa.PrimaryKeyConstraint("model", name="pk_deployment"),
    )
    op.create_table(
        "training_control",
        sa.Column("model", sa.String(200), sa.ForeignKey("models.name", name="fk_training_control_model"),
                  nullable=False),
        sa.Column("stopped", sa.Boolean, nullable=False),
        sa.Column("stopped_by", sa.String(200), nullable=True),
        sa.Column("stopped_at", UTCDateTime, nullable=True),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.Column("resumed_by", sa.String(200), nullable=True),
        sa.Column("resumed_at", UTCDateTime, nullable=True),
        sa.Column("resume_reason", sa.Text, nullable=True),
        sa.Column("lease_holder", sa.String(300), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_acquired_at", UTCDateTime, nullable=True),
        sa.Column("lease_heartbeat_at", UTCDateTime, nullable=True),
        sa.Column("lease_expires_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("model", name="pk_training_control"),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("generation", sa.Integer, nullable=True),
        sa.Column("stable_version", sa.Integer, nullable=True),
        sa.Column("canary_version", sa.Integer, nullable=True),
        sa.Column("fallback_mode", sa.Boolean, nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", "model", name="pk_replicas"),
    )
    if not empty:
        # Parents before children, oldest first (a parent_id names an older version).
        vcols = ("id, parent_id, created_at, created_by, strategy, seq_from, seq_to, watermark, rows_trained, "
                 "config_hash, lineage, metrics, artifacts, registry_ref, pushed_at, pushed_by, push_forced, "
                 "promoted_at, demoted_at, demoted_reason")
        bind.execute(sa.text(f"INSERT INTO model_versions (model, {vcols}) SELECT :m, {vcols} FROM model_versions_0002 "
                             "ORDER BY id"), {"m": legacy})
        _copy("validations_0002", "validations", "id, version_id, created_at, actor, verdict, gates", legacy)
        _copy("deployment_0002", "deployment",
              "stable_version, canary_version, canary_share, canary_step, canary_state, canary_started_at, "
              "fallback_mode, fallback_strategy, fallback_since, training_head, generation, updated_at, updated_by, "
              "canary_step_started_at, canary_analysis", legacy)
        _copy("training_control_0002", "training_control",
              "stopped, stopped_by, stopped_at, stop_reason, resumed_by, resumed_at, resume_reason, lease_holder, "
              "lease_token, lease_acquired_at, lease_heartbeat_at, lease_expires_at", legacy)
        _copy("replicas_0002", "replicas",
              "id, url, host, pid, started_at, heartbeat_at, status, generation, stable_version, canary_version, "
              "fallback_mode, detail", legacy)
    for t in ("deployment", "training_control", "validations", "replicas", "model_versions"):
        op.drop_table(f"{t}_0002")
    op.create_index("ix_validations_model_version", "validations", ["model", "version_id"])
    if pg:
        # Serial sequences follow their columns through the rename; move validations' past the copied ids.
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('validations', 'id'), "
                             "coalesce((SELECT max(id) FROM validations), 0) + 1, false)"))

    # Tables that only gain a model column.
    op.drop_index("uq_batches_accepted_content", table_name="batches")
    for t in _SCOPED_NOT_NULL + _SCOPED_NULLABLE:
        with op.batch_alter_table(t) as b:
            b.add_column(sa.Column("model", sa.String(200), nullable=True))
    if not empty:
        _audit_writable(pg, True)
        for t in _SCOPED_NOT_NULL + _SCOPED_NULLABLE:
            bind.execute(sa.text(f"UPDATE {t} SET model = :m"), {"m": legacy})
        _audit_writable(pg, False)
    for t in _SCOPED_NOT_NULL:
        with op.batch_alter_table(t) as b:
            b.alter_column("model", existing_type=sa.String(200), nullable=False)
    for t in _SCOPED_NOT_NULL + _SCOPED_NULLABLE:
        op.create_index(f"ix_{t}_model", t, ["model"])
    op.create_index("uq_batches_model_accepted_content", "batches", ["model", "kind", "content_hash"], unique=True,
                    sqlite_where=sa.text("status = 'accepted'"), postgresql_where=sa.text("status = 'accepted'"))


def _audit_writable(pg: bool, writable: bool) -> None:
    """The audit log refuses UPDATE; lift that for the one backfill of its new column, then restore it."""
    if pg:
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log" if writable else _APPEND_ONLY_PG_TRIGGER)
        return
    for o in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER audit_log_no_{o}" if writable else _APPEND_ONLY_SQLITE.format(op=o, OP=o.upper()))


def downgrade() -> None:
    raise NotImplementedError("0003 cannot be downgraded: restore the backup taken before `llctl db upgrade`")
