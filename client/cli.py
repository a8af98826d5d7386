"""The `advlab` command line. Each command imports its implementation lazily, so `advlab --help`
stays fast and the client commands never need torch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="advlab: experiments on the theory of adversarial examples.",
                  no_args_is_help=True, add_completion=False)


@app.command()
def run(
    spec: Path = typer.Argument(..., exists=True, dir_okay=False, help="Experiment spec (JSON)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Output directory."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | auto (default: spec / ADVLAB_DEVICE)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run an experiment locally (no server): writes spec.json, summary.json and metrics.csv."""
    from advcore.run import run_local

    run_local(spec, out, device=device, progress=not quiet)


@app.command()
def migrate(
    revision: str = typer.Argument("head", help="Alembic revision to upgrade to."),
) -> None:
    """Upgrade the database (ADVLAB_DATABASE_URL, default SQLite under ADVLAB_HOME) to `revision`."""
    from service.store.migrate import upgrade

    upgrade(revision)
    typer.echo(f"database at {revision}")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8000)."),
    workers: int = typer.Option(1, help="Celery worker processes to start beside the API."),
) -> None:
    """Migrate, then run the API and a real Celery worker (embedded default: SQLite + filesystem broker)."""
    from service.serve import serve as _serve

    _serve(host=host, port=port, workers=workers)


@app.command()
def worker(
    concurrency: int = typer.Option(1, help="Jobs run at once by this worker."),
    queues: str = typer.Option("advlab", help="Comma-separated queues to consume."),
) -> None:
    """Start one more Celery worker against the configured database and broker."""
    from worker.launch import run_worker

    run_worker(concurrency=concurrency, queues=queues)


if __name__ == "__main__":
    app()
