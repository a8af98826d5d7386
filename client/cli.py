"""The `advlab` command line. Each command imports its implementation lazily, so `advlab --help`
stays fast and the client commands never need torch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="advlab: experiments on the theory of adversarial examples.",
                  no_args_is_help=True, add_completion=False)
__import__("client.admin_cli").admin_cli.mount(app)  # `advlab users`, `advlab tokens`


@app.callback()
def _options(wide: bool = typer.Option(False, "--wide", envvar="ADVLAB_WIDE",
                                       help="Tables at full width (for wide terminals and "
                                            "pipes); by default long names wrap.")) -> None:
    from client.remote import set_wide

    set_wide(wide)


@app.command()
def run(
    spec: Path = typer.Argument(..., exists=True, dir_okay=False, help="Experiment spec (JSON)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Output directory."),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | auto (default: spec / ADVLAB_DEVICE)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run an experiment locally (no server): writes spec.json, summary.json and metrics.csv."""
    from advcore.run import run_local
    from lab.config import get_settings
    from worker.placement import host_cores

    threads = get_settings().torch_threads or host_cores()  # alone on the machine: every core
    run_local(spec, out, device=device, progress=not quiet, threads=threads)


@app.command()
def migrate(
    revision: str = typer.Argument("head", help="Alembic revision to upgrade to."),
) -> None:
    """Upgrade the database (ADVLAB_DATABASE_URL, default SQLite under ADVLAB_HOME) to `revision`."""
    from lab.store.migrate import upgrade

    upgrade(revision)
    typer.echo(f"database at {revision}")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8000)."),
    workers: int = typer.Option(1, help="Celery worker processes to start beside the API."),
) -> None:
    """Migrate, then run the API and a real Celery worker (embedded default: SQLite + filesystem broker)."""
    from launcher.serve import serve as _serve

    code = _serve(host=host, port=port, workers=workers)
    if code:
        raise typer.Exit(code)  # a child that could not be kept running: the reason is logged


@app.command()
def worker(
    concurrency: int = typer.Option(1, help="Jobs run at once by this worker."),
    queues: Optional[str] = typer.Option(
        None, help="Comma-separated queues to consume (default: ADVLAB_QUEUE, 'advlab')."),
) -> None:
    """Start one more Celery worker against the configured database and broker."""
    from worker.launch import run_worker

    run_worker(concurrency=concurrency, queues=queues)


# --------------------------------------------------------------------------- against a server
# Exit codes: 0 ok, 1 job failed (or server error / unreachable), 2 usage error (bad arguments
# or a request the server refused: 422 names the spec path). Implementations: client/remote.py.

DEFAULT_URL = "http://127.0.0.1:8000"


def _server() -> str:
    return typer.Option(DEFAULT_URL, "--server", envvar="ADVLAB_URL", metavar="URL",
                        help="advlab server URL (env ADVLAB_URL).")


def _token() -> Optional[str]:
    return typer.Option(None, "--token", envvar="ADVLAB_TOKEN", metavar="TOKEN", show_default=False,
                        help="API token for a server with ADVLAB_AUTH=tokens (env ADVLAB_TOKEN).")


@app.command()
def submit(
    spec: str = typer.Argument(..., help="Spec file (JSON) or template name (`advlab templates`)."),
    set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE",
                                   help="Override a spec field, e.g. --set training.mode=adversarial "
                                        "(VALUE parsed as JSON when it can be). Repeatable."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait with a progress bar; exit 1 if it fails."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    idempotency_key: Optional[str] = typer.Option(None, help="Makes retrying this submit safe."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the server's estimate "
                                 "(compute, peak memory, stored data vs the limits); submit nothing."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Submit an experiment to the server; prints its id (the server validates the spec)."""
    from client import remote

    remote.submit(remote.Server(server, token), spec, set_, wait, quiet, idempotency_key,
                  dry_run)


@app.command()
def estimate(
    spec: str = typer.Argument(..., help="Spec file (JSON) or template name."),
    set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", help="Override a spec field."),
    as_json: bool = typer.Option(False, "--json", help="The server's JSON (with every term)."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """What a spec would cost on the server (FLOPs, peak memory, stored data, the field
    driving each) against its queue's limits; exit 2 with the 413 if over one."""
    from client import remote

    remote.estimate(remote.Server(server, token), spec, set_, as_json)


@app.command("ls")
def list_(
    status: list[str] = typer.Option([], "--status", "-s", help="queued|running|succeeded|failed|canceled (repeatable)."),
    tag: Optional[str] = typer.Option(None, help="Has this tag."),
    name: Optional[str] = typer.Option(None, help="Name contains this."),
    where: list[str] = typer.Option([], "--where", metavar="PATH=VALUE",
                                    help="Spec field filter, e.g. --where data.kind=patch (repeatable)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="At most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """List experiments (newest first) with status, progress and key results."""
    from client import remote

    remote.ls(remote.Server(server, token), status, tag, name, where, limit, as_json)


@app.command()
def show(
    experiment_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="The full JSON (spec included)."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Status, progress, spec outline and summary of one experiment."""
    from client import remote

    remote.show(remote.Server(server, token), experiment_id, as_json)


@app.command()
def cancel(experiment_id: str = typer.Argument(..., metavar="ID"), server: str = _server(),
           token: Optional[str] = _token()) -> None:
    """Cancel a queued or running experiment."""
    from client import remote

    remote.cancel(remote.Server(server, token), experiment_id)


@app.command()
def metrics(
    experiment_id: str = typer.Argument(..., metavar="ID"),
    names: Optional[str] = typer.Option(None, help="Comma list of metric names (default: all)."),
    csv: bool = typer.Option(False, "--csv", help="Every point as CSV (name,seed,step,value) on stdout."),
    max_points: Optional[int] = typer.Option(None, min=4, help="Downsample each series."),
    seed: Optional[int] = typer.Option(None, help="Only this seed."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Metric series: a table (points, last, min, max per series) or --csv."""
    from client import remote

    remote.metrics(remote.Server(server, token), experiment_id, names, csv, max_points, seed)


@app.command()
def plot(
    experiment_id: str = typer.Argument(..., metavar="ID"),
    name: str = typer.Argument(..., help="learning_curves | robust_vs_radius | correlations | cosine"),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (.png or .svg)."),
    seed: Optional[int] = typer.Option(None, help="Only this seed."),
    step: Optional[int] = typer.Option(None, help="cosine: the matrix at this epoch."),
    matrix: Optional[str] = typer.Option(None, help="cosine: one matrix, e.g. cosine/robust."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Save a rendered plot of an experiment."""
    from client import remote

    remote.plot(remote.Server(server, token), experiment_id, name, output, seed, step, matrix)


@app.command()
def export(
    experiment_id: str = typer.Argument(..., metavar="ID"),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (.csv or .parquet)."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Download every recorded series (long form: experiment_id,name,seed,step,value)."""
    from client import remote

    remote.export(remote.Server(server, token), experiment_id, output)


@app.command()
def templates(
    name: Optional[str] = typer.Argument(None, help="Print this template's spec as JSON."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """List the experiment templates of the three papers, or print one's spec."""
    from client import remote

    remote.templates(remote.Server(server, token), name)


@app.command()
def compare(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Two or more experiment ids."),
    plot: Optional[str] = typer.Option(None, help="Overlay plot instead: robust_vs_radius or a "
                                                  "metric name (e.g. test/clean_accuracy)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Plot file (.png/.svg)."),
    attack: Optional[str] = typer.Option(None, help="robust_vs_radius: only this attack label."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Experiments side by side: spec differences and summaries, or an overlay --plot."""
    from client import remote

    remote.compare(remote.Server(server, token), ids, plot, output, attack)


@app.command()
def sweep(
    spec: str = typer.Argument(..., help="Base spec file (JSON) or template name."),
    grid: list[str] = typer.Option([], "--grid", "-g", metavar="PATH=V1,V2",
                                   help="A grid axis, e.g. --grid training.mode=standard,adversarial "
                                        "or --grid 'learner.widths=[[16],[256]]'. Repeatable."),
    seeds: Optional[str] = typer.Option(None, help="Comma list of seeds, e.g. 0,1,2."),
    set_: list[str] = typer.Option([], "--set", metavar="PATH=VALUE", help="Override the base spec."),
    name: str = typer.Option("sweep", help="Sweep name."),
    seed_mode: str = typer.Option("batched", help="batched (one job per grid point) | separate."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait, then print the aggregate table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or estimate."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the estimate; submit nothing."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Submit a sweep: base spec × grid × seeds. Shows the server's estimate first (total
    compute and storage, largest peak memory, per member); with --wait prints mean ± std per
    grid point."""
    from client import remote

    remote.sweep(remote.Server(server, token), spec, grid, seeds, set_, name, seed_mode, wait,
                 quiet, dry_run)


@app.command()
def reproduce(
    name: Optional[str] = typer.Argument(None, help="Catalogue entry (see --list)."),
    quick: bool = typer.Option(False, "--quick", help="The quick size (minutes on a laptop "
                                                      "CPU); default: the paper's full size."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Directory for figure.png and verdict.json "
                                            "(default: reproductions/NAME-SIZE)."),
    list_: bool = typer.Option(False, "--list", help="List the catalogue and exit."),
    local: bool = typer.Option(False, "--local", help="Run in this process, no server."),
    device: Optional[str] = typer.Option(None, help="--local: cpu | cuda | auto."),
    timeout: Optional[float] = typer.Option(None, help="Stop waiting after this many seconds."),
    server: str = _server(),
    token: Optional[str] = _token(),
) -> None:
    """Reproduce a figure or table of the three papers: a sweep over seeds (and radius or
    width), the paper-style figure and a verdict per claim (ours vs the paper's number)."""
    from client import reproduce as rep
    from client.remote import Server, fail

    if list_:
        rep.list_catalogue(None if local else Server(server, token))
        return
    if not name:
        raise fail("name a reproduction (advlab reproduce --list)")
    size = "quick" if quick else "full"
    out_dir = out or Path("reproductions") / f"{name}-{size}"
    if local:
        rep.run_local(name, size, out_dir, device)
    else:
        rep.run_remote(Server(server, token), name, size, out_dir, timeout)


if __name__ == "__main__":
    app()
