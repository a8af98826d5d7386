"""The store interface: what the API and the worker may ask of persistence.

Implementations return the domain objects below, never ORM rows, and raise the domain errors
below (never IntegrityError and friends). `lab.store.sql.SqlStore` is the SQL implementation
(SQLite default, PostgreSQL for a lab server).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Literal, Sequence

from lab.status import TERMINAL, Status  # noqa: F401  (the store's vocabulary)


class StoreError(Exception):
    """Base of the store's domain errors."""


class NotFound(StoreError):
    """No experiment with that id."""


class IllegalTransition(StoreError):
    """The requested status change is not allowed from the current status (HTTP 409)."""


class StaleAttempt(StoreError):
    """A worker wrote for an attempt that is no longer the current one (it was reaped)."""


class SchemaOutOfDate(StoreError):
    """The database is not at the migration head; run `advlab migrate`."""


class QuotaExceeded(StoreError):
    """Adding `adding` jobs would take `owner` over `limit` queued + running jobs (HTTP 429)."""

    def __init__(self, owner: str | None, *, active: int, adding: int, limit: int) -> None:
        super().__init__(f"{owner} has {active} active jobs; adding {adding} exceeds {limit}")
        self.owner, self.active, self.adding, self.limit = owner, active, adding, limit


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    tags: list[str]
    spec: dict[str, Any]  # resolved spec
    spec_hash: str
    status: Status
    step: int  # progress
    total_steps: int
    attempts: int
    worker: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    summary: dict[str, Any] | None
    cancel_requested: bool
    retry_of: str | None = None
    idempotency_key: str | None = None
    owner: str | None = None  # user name ("local" with auth off); None before migration 0003
    priority: int = 0  # orders the owner's own jobs in the fair claim (higher first)
    queue: str | None = None  # Celery queue it was routed to (by spec.device)
    notes: str | None = None  # free text, editable after submission (migration 0005)


@dataclass(frozen=True)
class MetricPoint:
    name: str
    step: int
    value: float
    seed: int


@dataclass(frozen=True)
class CorrelationMatrix:
    name: str  # e.g. "cosine/cluster"
    step: int
    seed: int
    values: list[list[float]]
    row_labels: list[str] = field(default_factory=list)
    col_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    items: list[Experiment]
    next_cursor: str | None


@dataclass(frozen=True)
class RunningJob:
    """One running row, as the operational metrics see it."""

    worker: str | None
    queue: str | None
    heartbeat_at: datetime | None
    started_at: datetime | None


@dataclass(frozen=True)
class Operations:
    """Scrape-time aggregates of the experiments table (service.telemetry)."""

    active_by_queue: dict[tuple[str | None, str], int]  # (queue, queued|running) -> rows
    running: list[RunningJob]
    requeued_experiments: int  # rows that took more than one attempt
    requeues: int  # attempts beyond the first, summed over the rows


@dataclass(frozen=True)
class ExperimentFilter:
    status: Sequence[str] = ()
    tag: str | None = None
    name_contains: str | None = None
    spec_hash: str | None = None
    spec_fields: dict[str, str] = field(default_factory=dict)  # {"data.kind": "patch"}
    owner: str | None = None  # only this owner's experiments


# ---------------------------------------------------------------- sweeps


@dataclass(frozen=True)
class SweepMember:
    experiment_id: str
    point_index: int  # position of its grid point in the grid's cartesian product
    point: dict[str, Any]  # {"training.mode": "adversarial"}: the values set at that point
    seeds: list[int]  # the seeds this member trains (all of the point's when batched)


@dataclass(frozen=True)
class NewSweepMember:
    """What create_sweep needs to insert one member experiment (a resolved spec)."""

    name: str
    tags: list[str]
    spec: dict[str, Any]
    spec_hash: str
    total_steps: int
    point_index: int
    point: dict[str, Any]
    seeds: list[int]
    queue: str | None = None  # Celery queue (by the member spec's device)


@dataclass(frozen=True)
class Sweep:
    id: str
    name: str
    tags: list[str]
    base_spec: dict[str, Any]
    grid: list[tuple[str, list[Any]]]  # (dotted spec path, values), in the submitted order
    seeds: list[int]
    seed_mode: str  # "batched": one member per grid point; "separate": one per (point, seed)
    created_at: datetime
    members: list[SweepMember]
    idempotency_key: str | None = None
    owner: str | None = None  # who created it (migration 0003)


class Store(abc.ABC):
    # ---------------------------------------------------------------- experiments

    @abc.abstractmethod
    def create_experiment(
        self,
        *,
        name: str,
        tags: list[str],
        spec: dict[str, Any],
        spec_hash: str,
        total_steps: int,
        idempotency_key: str | None = None,
        retry_of: str | None = None,
        owner: str | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_active: int | None = None,
    ) -> tuple[Experiment, bool]:
        """Insert a queued experiment and commit. With an idempotency key this owner already
        used, return that experiment instead (another owner's keys are invisible); the bool says
        whether a new row was created. With `max_active`, raise QuotaExceeded when the owner
        already has that many queued + running jobs — checked in the inserting transaction under
        a per-owner lock, so concurrent submits can never overshoot (a replay is never refused)."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment:
        """Raises NotFound."""

    @abc.abstractmethod
    def list_experiments(
        self, flt: ExperimentFilter, *, limit: int = 50, cursor: str | None = None,
        order: Literal["created_desc", "created_asc"] = "created_desc",
    ) -> Page:
        """Keyset pagination: `cursor` is opaque (the previous page's next_cursor)."""

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None:
        """Delete the experiment and all its metrics and matrices. Raises NotFound."""

    @abc.abstractmethod
    def update_experiment(self, experiment_id: str, *, tags: list[str] | None = None,
                          notes: str | None = None) -> Experiment:
        """Replace the tags and/or the notes (None: leave as is; "" clears the notes) in any
        status, and return the experiment. The resolved spec keeps what was submitted.
        Raises NotFound."""

    @abc.abstractmethod
    def request_cancel(self, experiment_id: str) -> Experiment:
        """queued → canceled at once; running → cancel_requested (the worker stops at its next
        step and marks canceled). Raises IllegalTransition from a terminal status."""

    # ---------------------------------------------------------------- worker side

    @abc.abstractmethod
    def start_attempt(self, experiment_id: str, worker: str) -> Experiment | None:
        """Mark the job running with attempts+1, delete points of earlier attempts (idempotent
        re-run) and return it; None if the job is not runnable (terminal or cancel requested —
        a cancel-requested job becomes canceled)."""

    @abc.abstractmethod
    def heartbeat(self, experiment_id: str, attempt: int, step: int) -> bool:
        """Record progress and liveness; return True if a cancel was requested (liveness is then
        no longer renewed: a job whose worker ignores the cancel is reaped as canceled).
        Raises StaleAttempt."""

    @abc.abstractmethod
    def add_metrics(self, experiment_id: str, attempt: int, points: Iterable[MetricPoint]) -> None:
        """Bulk insert in batches. Raises StaleAttempt."""

    @abc.abstractmethod
    def add_matrices(
        self, experiment_id: str, attempt: int, matrices: Iterable[CorrelationMatrix]
    ) -> None:
        """Raises StaleAttempt."""

    @abc.abstractmethod
    def finish(
        self, experiment_id: str, attempt: int, status: Status, *,
        summary: dict[str, Any] | None = None, error: str | None = None,
    ) -> Experiment:
        """Set a terminal status. Raises StaleAttempt."""

    @abc.abstractmethod
    def stale_running(self, older_than_s: float) -> list[Experiment]:
        """Running jobs whose heartbeat (or start) is older than the threshold."""

    @abc.abstractmethod
    def requeue(self, experiment_id: str, attempt: int, *, max_attempts: int) -> Experiment:
        """A stale running attempt → queued again (or failed once max_attempts is reached).
        Conditional on `attempt` still being current, so two reapers cannot both requeue."""

    # ---------------------------------------------------------------- reads

    @abc.abstractmethod
    def metric_names(self, experiment_id: str) -> list[str]: ...

    @abc.abstractmethod
    def get_metrics(
        self, experiment_id: str, *, names: Sequence[str] | None = None,
        since_step: int | None = None, max_points: int | None = None, seed: int | None = None,
    ) -> dict[str, list[MetricPoint]]:
        """Series by name, sorted by (seed, step). With max_points, each (name, seed) series is
        downsampled in SQL to at most max_points, keeping its first, last, min and max points."""

    @abc.abstractmethod
    def get_matrix(
        self, experiment_id: str, name: str, *, step: int | None = None, seed: int | None = None
    ) -> CorrelationMatrix | None:
        """The matrix at `step` (None: the latest step)."""

    @abc.abstractmethod
    def matrix_steps(self, experiment_id: str) -> dict[str, list[int]]: ...

    @abc.abstractmethod
    def counts_by_status(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def operations(self) -> Operations:
        """Active rows by queue, the running rows' workers and heartbeats, and re-queue totals."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise if the database cannot be reached."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connections (the store is not used afterwards)."""

    # ---------------------------------------------------------------- sweeps
    # (implemented by lab.store.sweeps.SweepStoreMixin)

    @abc.abstractmethod
    def create_sweep(
        self, *, name: str, tags: list[str], base_spec: dict[str, Any],
        grid: Sequence[tuple[str, list[Any]]], seeds: list[int], seed_mode: str,
        members: Sequence[NewSweepMember], idempotency_key: str | None = None,
        owner: str | None = None, priority: int = 0, max_active: int | None = None,
    ) -> tuple[Sweep, list[Experiment], bool]:
        """Insert the sweep and its member experiments (queued) in ONE transaction and commit.
        With an idempotency key this owner already used, return the existing sweep and members;
        the bool says whether anything was created. With `max_active`, the whole sweep is
        admitted or refused (QuotaExceeded), atomically as in create_experiment."""

    @abc.abstractmethod
    def get_sweep(self, sweep_id: str) -> Sweep:
        """Raises NotFound."""

    @abc.abstractmethod
    def sweep_experiments(self, sweep_id: str) -> list[Experiment]:
        """The member experiments still present, in grid order. Raises NotFound."""

    @abc.abstractmethod
    def list_sweeps(self, *, limit: int = 50) -> list[Sweep]:
        """Newest first."""

    @abc.abstractmethod
    def sweeps_of(self, experiment_id: str) -> list[str]:
        """Ids of the sweeps the experiment is a member of."""

    @abc.abstractmethod
    def delete_sweep(self, sweep_id: str) -> None:
        """Delete the sweep and its member links (not the experiments). Raises NotFound."""

    # ---------------------------------------------------------------- users, tokens, fair claim
    # (implemented by lab.store.users.UserStoreMixin)

    @abc.abstractmethod
    def create_user(self, name: str, *, is_admin: bool = False) -> "User":
        """Raises Duplicate when the name is taken."""

    @abc.abstractmethod
    def get_user(self, name: str) -> "User":
        """Raises NotFound."""

    @abc.abstractmethod
    def list_users(self) -> list["User"]: ...

    @abc.abstractmethod
    def create_token(self, user: str, token_hash: str, *, label: str = "") -> "ApiToken":
        """Store a token's hash (never the token). Raises NotFound for an unknown user."""

    @abc.abstractmethod
    def user_for_token(self, token_hash: str) -> "User | None":
        """The user of a live (not revoked) token with this hash, else None."""

    @abc.abstractmethod
    def list_tokens(self, user: str | None = None) -> list["ApiToken"]: ...

    @abc.abstractmethod
    def revoke_token(self, token_id: str) -> "ApiToken":
        """Mark revoked (idempotent). Raises NotFound."""

    @abc.abstractmethod
    def count_active(self, owner: str) -> int:
        """The owner's queued + running experiments."""

    @abc.abstractmethod
    def claim_next(self, experiment_id: str, worker: str) -> Experiment | None:
        """Fair claim: start (as start_attempt does) the queued job that is next in fair order
        among the jobs of the same queue as `experiment_id` — the owner with the fewest running
        jobs, then the owner served least recently, then priority, then age — rather than
        `experiment_id` itself. None when nothing in that queue is runnable."""


class Duplicate(StoreError):
    """A unique name (user) already exists (HTTP 409)."""


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiToken:
    id: str
    user: str
    label: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
