"""`advlab reproduce`: run a paper reproduction (advcore.reproductions) and write its figure and
verdict. On a server (POST /v1/reproductions, then wait) or, with --local, in this process.

DIR/figure.png is the paper-style figure (mean ± std over seeds, theory marks, the paper's
numbers beside ours, the verdict table), DIR/verdict.json the verdict: per claim our effect size
(mean, std, per seed), the paper's number, the criterion and holds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from rich.table import Column, Table

from client.remote import FOLD, Server, connect, err, errors, fail, out

FAILED = 1


def verdict_table(verdict: Mapping[str, Any]) -> Table:
    table = Table(Column("claim", no_wrap=True), "ours (mean ± std, n)", "paper", FOLD("criterion"), "verdict",
                  title=f"{verdict['name']} ({verdict['size']}): {verdict.get('figure', '')}")
    for c in verdict["claims"]:
        ours = c["ours"]
        if ours.get("mean") is None:
            text = "n/a" + (f" ({c['error']})" if c.get("error") else "")
        else:
            std = ours.get("std")
            text = f"{ours['mean']:.3g}" + (f" ± {std:.2g}" if std is not None else "") \
                + f" (n={ours['n']})"
        table.add_row(c["key"], text,
                      "—" if c["paper"] is None else f"{c['paper']:.3g}", c["criterion"],
                      "[green]holds[/green]" if c["holds"] else "[red]does not hold[/red]")
    return table


def _write(out_dir: Path, verdict: Mapping[str, Any], png: bytes) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")
    (out_dir / "figure.png").write_bytes(png)


def _finish(out_dir: Path, verdict: Mapping[str, Any], png: bytes, started: float) -> None:
    _write(out_dir, verdict, png)
    out.print(verdict_table(verdict))
    for c in verdict["claims"]:
        out.print(f"  {c['key']}: {c['claim']}; paper: {c['paper_source']}", highlight=False)
    out.print(f"{'all claims hold' if verdict['holds'] else 'some claims do NOT hold'}; "
              f"{time.monotonic() - started:.0f} s; wrote {out_dir / 'figure.png'} and "
              f"{out_dir / 'verdict.json'}", highlight=False)


def list_catalogue(server: Server | None) -> None:
    if server is None:
        from advcore.reproductions import CATALOGUE

        entries = [e.describe() for e in CATALOGUE.values()]
    else:
        with errors():
            entries = connect(server).reproductions_catalogue()
    table = Table(Column("name", no_wrap=True), "paper", FOLD("figure"), "quick", "full")
    for e in entries:
        sizes = e["sizes"]
        table.add_row(e["name"], e["paper"], e["figure"],
                      f"~{sizes['quick']['minutes']:g} min", f"~{sizes['full']['minutes']:g} min")
    out.print(table)


def run_local(name: str, size: str, out_dir: Path, device: str | None) -> None:
    from advcore import reproductions as rep
    from service.reproduction_figures import figure_png

    try:
        entry = rep.get(name)
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    started = time.monotonic()
    points, matrices = rep.run_local(name, size, device=device)
    verdict = rep.verdict(entry, size, points)
    _finish(out_dir, verdict, figure_png(entry, verdict, points, matrices), started)
    if not verdict["holds"]:
        raise SystemExit(0)


def run_remote(server: Server, name: str, size: str, out_dir: Path, timeout_s: float | None
               ) -> None:
    started = time.monotonic()
    with errors():
        client = connect(server)
        rep = client.reproduce(name, size)
        err.print(f"reproduction {rep.id} ({name}, {size}) submitted to {server.url}",
                  highlight=False)
        info = rep.wait(timeout_s=timeout_s)
        if info["status"] != "succeeded" or info.get("verdict") is None:
            raise fail(f"reproduction {rep.id} {info['status']}: no verdict "
                       f"({info.get('counts')})", FAILED)
        _finish(out_dir, info["verdict"], rep.figure(), started)
