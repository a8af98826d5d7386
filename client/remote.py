"""What the server-side CLI commands do (`advlab submit/ls/show/...`): client calls plus rich
output. client/cli.py holds only the typer signatures and imports this lazily.

Exit codes: 0 ok; 1 the job (or sweep) failed or was canceled, or the server failed / could not
be reached; 2 a usage error — bad arguments, or a request the server refused as invalid
(4xx: a 422 names the spec path at fault); 130 Ctrl-C while waiting (the job goes on).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import httpx
import typer
from rich.console import Console
from rich.table import Column, Table

from client.api import AdvlabError, Client, JobFailed
from client.overrides import parse_override

OK, FAILED, USAGE = 0, 1, 2
HINTS = {401: " (set ADVLAB_TOKEN or pass --token)",
         403: " (only the owner or an admin may do this)"}
out = Console()
err = Console(stderr=True)


@dataclass(frozen=True)
class Server:
    """Where the CLI talks to: URL and optional API token (ADVLAB_AUTH=tokens servers)."""

    url: str
    token: str | None = None


def connect(server: Server) -> Client:
    return Client(server.url, token=server.token or None)


def fail(message: str, code: int = USAGE) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Map client errors onto exit codes with the server's message."""
    try:
        yield
    except JobFailed as exc:
        raise fail(exc.message, FAILED) from None
    except AdvlabError as exc:
        raise fail(f"{exc.message} (HTTP {exc.status_code}){HINTS.get(exc.status_code, '')}",
                   USAGE if 400 <= exc.status_code < 500 else FAILED) from None
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the advlab server: {exc}", FAILED) from None
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl-C while waiting: the job itself keeps running
        raise fail("stopped waiting; the job goes on (`advlab show ID`, `advlab cancel ID`)",
                   130) from None


def _bar(quiet: bool) -> bool:
    """A live progress bar on a terminal; none when quiet or when stderr is a log file."""
    return not quiet and sys.stderr.isatty()


def overrides(pairs: Sequence[str]) -> dict[str, Any]:
    return dict(parse_override(p) for p in pairs)


def _spec_source(spec: str) -> str | Path:
    path = Path(spec)
    if path.suffix == ".json" and not path.exists():
        raise FileNotFoundError(f"spec file {spec} does not exist")
    return path if path.exists() else spec  # else: a template name


# --------------------------------------------------------------------------- experiments


def _size(value: float, unit: str = "B") -> str:
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def estimate_table(est: Mapping[str, Any], title: str = "estimate") -> Table:
    """The server's estimate (a spec's or a sweep's) beside the limits it was admitted under."""
    limits = est.get("limits") or {}
    dominant = est.get("dominant") or {}
    table = Table("quantity", "estimate", "limit", "driven by", title=title,
                  title_justify="left")
    for key, words, unit in (("flops", "compute", "FLOP"), ("peak_bytes", "peak memory", "B"),
                             ("stored_bytes", "stored data", "B")):
        limit = limits.get(key)
        table.add_row(words, _size(est[key], unit), "" if limit is None else _size(limit, unit),
                      dominant.get(key) or "")
    return table


def _print_estimate(est: Mapping[str, Any]) -> None:
    if "n_members" in est:
        err.print(estimate_table(est, f"sweep estimate: {est['n_members']} members "
                                      "(compute and storage summed, peak of the largest)"))
        if len(est["members"]) <= 20:
            members = Table("grid point", "seeds", "queue", "compute", "peak memory",
                            "stored", title="members", title_justify="left")
            for m in est["members"]:
                point = ", ".join(f"{k}={v}" for k, v in m["point"].items()) or "base"
                members.add_row(point, ",".join(map(str, m["seeds"])), m["queue"],
                                _size(m["flops"], "FLOP"), _size(m["peak_bytes"]),
                                _size(m["stored_bytes"]))
            err.print(members)
    else:
        err.print(estimate_table(est, f"estimate ({est['queue']} queue, "
                                      f"{est['n_evaluations']} evaluations)"))


def estimate(server: Server, spec: str, sets: Sequence[str], as_json: bool) -> None:
    with errors(), connect(server) as client:
        est = client.estimate(_spec_source(spec), **overrides(sets))
        if as_json:
            out.print_json(data=est)
        else:
            _print_estimate(est)


def submit(server: Server, spec: str, sets: Sequence[str], wait: bool, quiet: bool,
           idempotency_key: str | None, dry_run: bool = False) -> None:
    if dry_run:
        return estimate(server, spec, sets, as_json=False)
    with errors(), connect(server) as client:
        exp = client.submit(_spec_source(spec), idempotency_key=idempotency_key,
                            **overrides(sets))
        if not wait:
            out.print(exp.id, highlight=False)
            return
        err.print(f"submitted {exp.id}", highlight=False)
        info = exp.wait(progress=_bar(quiet), raise_on_failure=False)
        out.print(exp.id, highlight=False)  # stdout: the id only, for ID=$(advlab submit ...)
        if info["status"] != "succeeded":
            reason = (info.get("error") or "").splitlines()[:1]
            raise fail(f"experiment {exp.id} {info['status']}"
                       + (f": {reason[0]}" if reason else ""), FAILED)
        if not quiet and info.get("summary"):
            err.print(_summary_table(info["summary"]))


def summary_table(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A summary as (key, value) rows for display (RunSummary.rows), then why to distrust it."""
    from advcore.summary import RunSummary  # pydantic only; not loaded before a summary is shown

    parsed = RunSummary.from_stored(dict(summary))
    if parsed is None:
        return []
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value))
            for key, value in parsed.rows()]
    return rows + [("suspicious", reason) for reason in parsed.suspicious()]


def _summary_table(summary: dict) -> Table:
    table = Table("quantity", "value", title="summary", title_justify="left")
    for key, value in summary_table(summary):
        table.add_row(key, value)
    return table


def _headline(info: dict) -> str:
    """Clean test accuracy, the robust accuracy against all attacks at the largest radius of
    the first threat, and a warning when attacks disagree."""
    from advcore.summary import RunSummary

    s = RunSummary.from_stored(info.get("summary"))
    if s is None:
        return ""
    parts = [f"clean {s.clean_accuracy.test:.2f}"] if s.clean_accuracy.test is not None else []
    label, robust = s.headline()
    if robust is not None:
        parts.append(f"{label} {robust:.2f}")
    suspicious = [d for d in s.disagreements if d.suspicious]
    if suspicious:
        parts.append(f"attacks disagree at {len(suspicious)} radii")
    return "; ".join(parts)


def ls(server: Server, status: Sequence[str], tag: str | None, name: str | None,
       where: Sequence[str], limit: int, as_json: bool) -> None:
    filters: dict[str, Any] = {"status": list(status) or None, "tag": tag, "name": name}
    for text in where:
        path, value = text.split("=", 1) if "=" in text else (text, "")
        if not value:
            raise fail(f"--where {text!r} is not PATH=VALUE")
        filters[f"spec.{path.removeprefix('spec.')}"] = value
    with errors(), connect(server) as client:
        items = []
        for item in client.experiments(page_size=min(limit, 500), **filters):
            items.append(item)
            if len(items) >= limit:
                break
    if as_json:
        out.print_json(json.dumps(items, default=str))
        return
    table = Table(Column("id", no_wrap=True, min_width=32),  # show / plot need it whole
                  "name", Column("status", no_wrap=True), Column("progress", no_wrap=True),
                  Column("created", no_wrap=True), "result")
    colors = {"succeeded": "green", "failed": "red", "canceled": "yellow", "running": "cyan"}
    for item in items:
        prog = item.get("progress") or {}
        tags = f" [dim]{','.join(item['tags'])}[/]" if item["tags"] else ""
        table.add_row(item["id"], f"{item['name'][:60]}{tags}",
                      f"[{colors.get(item['status'], 'white')}]{item['status']}[/]",
                      f"{prog.get('step', 0)}/{prog.get('total', 0)}",
                      str(item["created_at"])[5:16].replace("T", " "), _headline(item))
    out.print(table)


def show(server: Server, experiment_id: str, as_json: bool) -> None:
    with errors(), connect(server) as client:
        info = client.experiment(experiment_id).info()
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    prog = info["progress"]
    table = Table(show_header=False, title=f"experiment {info['id']}", title_justify="left")
    eta = f", ETA {prog['eta_s']:.0f}s" if prog.get("eta_s") else ""
    for key, value in [("name", info["name"]), ("status", info["status"]),
                       ("progress", f"{prog['step']}/{prog['total']}{eta}"),
                       ("tags", ", ".join(info["tags"])), ("spec hash", info["spec_hash"][:16]),
                       ("data / learner", f"{info['spec']['data']['kind']} / "
                                          f"{info['spec']['learner']['kind']}"),
                       ("training", f"{info['spec']['training']['mode']}, labels "
                                    f"{info['spec']['training']['labels']}"),
                       ("attempts", str(info["attempts"])), ("worker", info.get("worker") or ""),
                       ("created", str(info["created_at"])), ("finished", str(info["finished_at"]))]:
        table.add_row(key, value)
    out.print(table)
    if info.get("error"):
        err.print(f"[red]error:[/red] {info['error']}", highlight=False)
    if info.get("summary"):
        out.print(_summary_table(info["summary"]))


def cancel(server: Server, experiment_id: str) -> None:
    with errors(), connect(server) as client:
        info = client.experiment(experiment_id).cancel()
    state = "cancel requested" if info["status"] == "running" else info["status"]
    out.print(f"{experiment_id}: {state}", highlight=False)


def metrics(server: Server, experiment_id: str, names: str | None, as_csv: bool,
            max_points: int | None, seed: int | None) -> None:
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    with errors(), connect(server) as client:
        frame = client.experiment(experiment_id).metrics(names=wanted, max_points=max_points,
                                                         seed=seed)
    if as_csv:
        sys.stdout.write(frame.to_csv(index=False))
        return
    table = Table("name", "seed", "points", "last step", "last", "min", "max")
    for (name, s), group in frame.groupby(["name", "seed"], sort=True):
        last = group.sort_values("step").iloc[-1]
        table.add_row(name, str(s), str(len(group)), str(int(last["step"])),
                      f"{last['value']:.4g}", f"{group['value'].min():.4g}",
                      f"{group['value'].max():.4g}")
    out.print(table)


def plot(server: Server, experiment_id: str, name: str, output: Path, seed: int | None,
         step: int | None, matrix: str | None) -> None:
    with errors(), connect(server) as client:
        client.experiment(experiment_id).plot(name, output, seed=seed, step=step, matrix=matrix)
    err.print(f"wrote {output}", highlight=False)


def export(server: Server, experiment_id: str, output: Path) -> None:
    if output.suffix not in (".csv", ".parquet"):
        raise fail(f"{output}: the file name must end in .csv or .parquet")
    with errors(), connect(server) as client:
        client.experiment(experiment_id).export(output)
    err.print(f"wrote {output}", highlight=False)


def templates(server: Server, name: str | None) -> None:
    with errors(), connect(server) as client:
        if name:
            sys.stdout.write(json.dumps(client.template(name)["spec"], indent=2) + "\n")
            return
        items = client.templates()
    table = Table("name", "paper", "shows")
    for t in items:
        table.add_row(t["name"], t["paper"].split(".")[0], t["shows"])
    out.print(table)
    err.print("`advlab templates NAME > spec.json` prints one; `advlab submit NAME` runs it.")


def compare(server: Server, ids: Sequence[str], plot: str | None, output: Path | None,
            attack: str | None) -> None:
    if (plot is None) != (output is None):
        raise fail("--plot NAME and --output FILE go together")
    with errors(), connect(server) as client:
        if plot is not None:
            client.compare_plot(list(ids), plot, output, attack=attack)
            err.print(f"wrote {output}", highlight=False)
            return
        result = client.compare(list(ids))
    table = Table("", *[e["id"][:8] for e in result["experiments"]])
    table.add_row("name", *[e["name"][:30] for e in result["experiments"]])
    table.add_row("status", *[e["status"] for e in result["experiments"]])
    for diff in result["spec_diff"]:
        table.add_row(f"[bold]{diff['path']}[/]", *[json.dumps(v) for v in diff["values"].values()])
    for row in result["summary"]:
        table.add_row(row["key"], *[f"{v:.4f}" if isinstance(v, float) else str(v)
                                    for v in row["values"].values()])
    out.print(table)


# --------------------------------------------------------------------------- sweeps


def _grid(items: Sequence[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for text in items:
        path, value = parse_override(text)
        if isinstance(value, str):  # a,b,c → each parsed as JSON when it can be
            value = [parse_override(f"x={v}")[1] for v in value.split(",")]
        grid[path] = value if isinstance(value, list) else [value]
    return grid


def sweep(server: Server, spec: str, grid: Sequence[str], seeds: str | None, sets: Sequence[str],
          name: str, seed_mode: str, wait: bool, quiet: bool, dry_run: bool = False) -> None:
    """The server's estimate first (the sweep is refused as a whole with the 413 that names
    the field to lower), then the submit."""
    seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    with errors(), connect(server) as client:
        args = (_spec_source(spec), _grid(grid), seed_list)
        kwargs = dict(name=name, seed_mode=seed_mode, **overrides(sets))
        est = client.estimate_sweep(*args, **kwargs)
        if not quiet or dry_run:
            _print_estimate(est)
        if dry_run:
            return
        sw = client.sweep(*args, **kwargs)
        if not wait:
            out.print(sw.id, highlight=False)
            return
        err.print(f"submitted sweep {sw.id}", highlight=False)
        info = sw.wait(progress=_bar(quiet), raise_on_failure=False)
        out.print(sw.id, highlight=False)
        from advcore.spec import metric_order

        table = Table("grid point", "metric", "mean", "std", "n")
        for row in info["aggregate"]:
            for metric, stats in sorted(row["metrics"].items(),
                                        key=lambda item: metric_order(item[0])):
                if metric.startswith(("test/clean_accuracy", "test/robust_accuracy",
                                      "fine/test/clean_accuracy")):
                    std = "" if stats.get("std") is None else f"{stats['std']:.4f}"
                    mean = "" if stats.get("mean") is None else f"{stats['mean']:.4f}"
                    table.add_row(row["label"], metric, mean, std, str(stats["n"]))
        out.print(table)
        if info["status"] != "succeeded":
            raise fail(f"sweep {sw.id} {info['status']}: {info.get('counts')}", FAILED)
