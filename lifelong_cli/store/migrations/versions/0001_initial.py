"""Initial schema: versions, validations, deployment, training control and lease, batches,
purge rules, incidents, append-only audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from lifelong_cli.store.schema import UTCDateTime

revision = "0001"
down_revision = None

APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_log_no_{op} BEFORE {OP} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""
APPEND_ONLY_PG_FUNC = """
CREATE OR REPLACE FUNCTION llctl_audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql
"""
APPEND_ONLY_PG_TRIGGER = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION llctl_audit_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=True),
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
    )
    op.create_table(
        "validations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("gates", sa.JSON, nullable=False),
    )
    op.create_index("ix_validations_version_id", "validations", ["version_id"])
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stable_version", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("canary_version", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("canary_share", sa.Float, nullable=False),
        sa.Column("canary_step", sa.Integer, nullable=True),
        sa.Column("canary_state", sa.String(20), nullable=True),
        sa.Column("canary_started_at", UTCDateTime, nullable=True),
        sa.Column("fallback_mode", sa.Boolean, nullable=False),
        sa.Column("fallback_strategy", sa.String(60), nullable=True),
        sa.Column("fallback_since", UTCDateTime, nullable=True),
        sa.Column("training_head", sa.Integer, sa.ForeignKey("model_versions.id"), nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=True),
        sa.Column("updated_by", sa.String(200), nullable=True),
    )
    op.create_table(
        "training_control",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
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
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("input", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("rows_read", sa.Integer, nullable=False),
        sa.Column("rows_accepted", sa.Integer, nullable=False),
        sa.Column("rows_quarantined", sa.Integer, nullable=False),
        sa.Column("rows_duplicate", sa.Integer, nullable=False),
        sa.Column("rows_trainable", sa.Integer, nullable=False),
        sa.Column("event_time_min", UTCDateTime, nullable=True),
        sa.Column("event_time_max", UTCDateTime, nullable=True),
        sa.Column("segment_path", sa.Text, nullable=True),
        sa.Column("quarantine_path", sa.Text, nullable=True),
        sa.Column("drifted", sa.Boolean, nullable=True),
        sa.Column("drift", sa.JSON, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    # not unique: a rejected batch may be fixed upstream-side (config) and ingested again;
    # ingest itself refuses a second *accepted* batch with the same content.
    op.create_index("ix_batches_content_hash", "batches", ["content_hash"])
    op.create_index("uq_batches_accepted_content", "batches", ["kind", "content_hash"], unique=True,
                    sqlite_where=sa.text("status = 'accepted'"), postgresql_where=sa.text("status = 'accepted'"))
    op.create_table(
        "purge_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
        sa.Column("rows_affected", sa.Integer, nullable=False),
        sa.Column("blast_radius", sa.JSON, nullable=False),
        sa.Column("undone_at", UTCDateTime, nullable=True),
        sa.Column("undone_by", sa.String(200), nullable=True),
        sa.Column("undo_reason", sa.Text, nullable=True),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_table(
        "incident_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_incident_notes_incident_id", "incident_notes", ["incident_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("verb", sa.String(60), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=True),
    )
    for col in ("ts", "actor", "verb", "incident_id"):
        op.create_index(f"ix_audit_log_{col}", "audit_log", [col])

    # The singleton rows exist from the start, so every change is an UPDATE that can lock them.
    op.execute(
        sa.text("INSERT INTO deployment (id, canary_share, fallback_mode, generation) VALUES (1, 0, :f, 0)")
        .bindparams(f=False)
    )
    op.execute(sa.text("INSERT INTO training_control (id, stopped) VALUES (1, :f)").bindparams(f=False))

    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_PG_FUNC)
        op.execute(APPEND_ONLY_PG_TRIGGER)
    else:
        for o in ("update", "delete"):
            op.execute(APPEND_ONLY_SQLITE.format(op=o, OP=o.upper()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS llctl_audit_append_only()")
    for t in ("audit_log", "incident_notes", "incidents", "purge_rules", "batches",
              "training_control", "deployment", "validations", "model_versions"):
        op.drop_table(t)
