"""Serving, release and incident response: replicas, the prediction log, feedback, push/promote
marks on versions, the canary's current step and analysis, SLO policies relaxed for a window.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from lifelong_cli.store.schema import BigId, UTCDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as b:
        b.add_column(sa.Column("pushed_at", UTCDateTime, nullable=True))
        b.add_column(sa.Column("pushed_by", sa.String(200), nullable=True))
        b.add_column(sa.Column("push_forced", sa.Boolean, nullable=True))
        b.add_column(sa.Column("promoted_at", UTCDateTime, nullable=True))
        b.add_column(sa.Column("demoted_at", UTCDateTime, nullable=True))
        b.add_column(sa.Column("demoted_reason", sa.Text, nullable=True))
    with op.batch_alter_table("deployment") as b:
        b.add_column(sa.Column("canary_step_started_at", UTCDateTime, nullable=True))
        b.add_column(sa.Column("canary_analysis", sa.JSON, nullable=True))
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(200), primary_key=True),
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
    )
    op.create_table(
        "predictions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("replica", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("variant", sa.String(12), nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("keys", sa.JSON, nullable=True),
        sa.Column("output", sa.JSON, nullable=True),
        sa.Column("shadow", sa.JSON, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_predictions_ts", "predictions", ["ts"])
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_table(
        "feedback",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("replica", sa.String(200), nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_table(
        "slo_relaxations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("policy", sa.String(60), nullable=False),
        sa.Column("until", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for t in ("slo_relaxations", "feedback", "predictions", "replicas"):
        op.drop_table(t)
    with op.batch_alter_table("deployment") as b:
        b.drop_column("canary_analysis")
        b.drop_column("canary_step_started_at")
    with op.batch_alter_table("model_versions") as b:
        for c in ("demoted_reason", "demoted_at", "promoted_at", "push_forced", "pushed_by", "pushed_at"):
            b.drop_column(c)
