"""idempotency keys scoped by owner: unique (owner, idempotency_key) replaces unique (key)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ("experiments", "sweeps")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_idempotency_key", type_="unique")
            batch.create_index(f"uq_{table}_owner_idempotency_key", ["owner", "idempotency_key"],
                               unique=True)


def downgrade() -> None:
    # fails if two owners used the same key meanwhile: such a database cannot go back losslessly
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"uq_{table}_owner_idempotency_key")
            batch.create_unique_constraint(f"uq_{table}_idempotency_key", ["idempotency_key"])
