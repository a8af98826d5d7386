"""Every table of the store in one metadata (Alembic's autogenerate target and the schema tests):
experiments and metrics (orm), sweeps (sweeps), users and tokens (users)."""

from __future__ import annotations

from lab.store import sweeps, users
from lab.store.orm import Base

__all__ = ["metadata", "sweeps", "users"]

metadata = Base.metadata
