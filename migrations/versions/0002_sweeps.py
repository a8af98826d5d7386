"""sweeps: a sweep (base spec + grid + seeds) and the link table to its member experiments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# frozen copies of the ORM's column types: a migration must not change when the ORM does
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("base_spec", JSON, nullable=False),
        sa.Column("grid", JSON, nullable=False),
        sa.Column("seeds", JSON, nullable=False),
        sa.Column("seed_mode", sa.String(16), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sa.UniqueConstraint("idempotency_key", name="uq_sweeps_idempotency_key"),
    )
    op.create_index("ix_sweeps_created_at_id", "sweeps", ["created_at", "id"])

    op.create_table(
        "sweep_members",
        sa.Column("sweep_id", sa.String(32), nullable=False),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("point_index", sa.Integer(), nullable=False),
        sa.Column("point", JSON, nullable=False),
        sa.Column("seeds", JSON, nullable=False),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE",
                                name="fk_sweep_members_sweep_id_sweeps"),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name="fk_sweep_members_experiment_id_experiments"),
        sa.PrimaryKeyConstraint("sweep_id", "experiment_id", name="pk_sweep_members"),
    )
    op.create_index("ix_sweep_members_experiment_id", "sweep_members", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_sweep_members_experiment_id", table_name="sweep_members")
    op.drop_table("sweep_members")
    op.drop_index("ix_sweeps_created_at_id", table_name="sweeps")
    op.drop_table("sweeps")
