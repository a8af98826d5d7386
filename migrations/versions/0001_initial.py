"""initial: experiments, metric_points (+ metric_series, metric_blocks summaries), correlation_matrices

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# frozen copies of the ORM's column types: a migration must not change when orm.py does
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", JSON, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("retry_of", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(["retry_of"], ["experiments.id"], ondelete="SET NULL",
                                name="fk_experiments_retry_of_experiments"),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("idempotency_key", name="uq_experiments_idempotency_key"),
    )
    op.create_index("ix_experiments_spec_hash", "experiments", ["spec_hash"])
    op.create_index("ix_experiments_status", "experiments", ["status"])
    op.create_index("ix_experiments_created_at_id", "experiments", ["created_at", "id"])

    op.create_table(
        "metric_points",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name="fk_metric_points_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("id", name="pk_metric_points"),
    )
    op.create_index("ix_metric_points_series", "metric_points",
                    ["experiment_id", "name", "seed", "step", "value"])

    op.create_table(
        "metric_series",
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("min_step", sa.Integer(), nullable=False),
        sa.Column("first_value", sa.Float(), nullable=True),
        sa.Column("max_step", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name="fk_metric_series_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("experiment_id", "name", "seed", name="pk_metric_series"),
    )

    op.create_table(
        "metric_blocks",
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lo_step", sa.Integer(), nullable=True),
        sa.Column("lo_value", sa.Float(), nullable=True),
        sa.Column("hi_step", sa.Integer(), nullable=True),
        sa.Column("hi_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name="fk_metric_blocks_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("experiment_id", "name", "seed", "block", name="pk_metric_blocks"),
    )

    op.create_table(
        "correlation_matrices",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.Column("row_labels", JSON, nullable=False),
        sa.Column("col_labels", JSON, nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name="fk_correlation_matrices_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("id", name="pk_correlation_matrices"),
        sa.UniqueConstraint("experiment_id", "name", "seed", "step",
                            name="uq_correlation_matrices_experiment_id_name_seed_step"),
    )


def downgrade() -> None:
    op.drop_table("correlation_matrices")
    op.drop_table("metric_blocks")
    op.drop_table("metric_series")
    op.drop_index("ix_metric_points_series", table_name="metric_points")
    op.drop_table("metric_points")
    op.drop_index("ix_experiments_created_at_id", table_name="experiments")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_index("ix_experiments_spec_hash", table_name="experiments")
    op.drop_table("experiments")
