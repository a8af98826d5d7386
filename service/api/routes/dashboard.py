"""The web dashboard at `/`: server-side Jinja2 pages over the same service functions as the API,
plus a little vanilla JS (service/web/static) that talks to the JSON API — no build step.

Pages: `/` experiments (filter, sort, live-refreshing rows), `/experiments/{id}` (spec, summary,
plots, live progress over SSE, cancel), `/sweeps` and `/sweeps/{id}` (aggregate table, band
plot), `/submit` (a template → experiment or sweep). Every HTML answer carries security headers:
a CSP without inline script or style (so the pages pass data through data-* attributes), no
framing, no sniffing, no referrer. Not part of the OpenAPI schema: the API is under /v1.

With ADVLAB_AUTH=tokens every page needs the login session (service.web_session: 303 to /login
otherwise); everyone sees every experiment, and the cancel buttons show only on the caller's
own jobs (or to an admin), as the API allows. /static stays open (the login page uses it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from service import experiments as svc
from service import sweep_views, table_view
from service.table_view import SORTS, key_results
from service.api.deps import ExperimentDep, StoreDep
from lab.status import STATUSES, TERMINAL
from lab.store.base import NotFound
from service.auth import Principal
from service.web_session import PageUserDep, page_user

WEB = Path(__file__).resolve().parents[2] / "web"
# app files, and vendored libraries under vendor/ (dotted names: uplot.iife.min.js); no `..`
STATIC_NAME = re.compile(r"^(vendor/)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.(js|css|svg|ico|txt)$")
STATIC_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml",
                "ico": "image/x-icon", "txt": "text/plain; charset=utf-8"}
TABLE_LIMIT = 200  # sweeps listed

# What HTML pages add to the headers every response gets (service.hardening.SECURITY_HEADERS:
# nosniff, no framing, no referrer)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False, dependencies=[Depends(page_user)])
static_router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(WEB / "templates"))


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "–"


def _stat(stats: Any) -> str:
    """`93.1% ± 1.2 (n=3)` for an accuracy, `0.71 ± 0.02 (n=3)` otherwise."""
    if not stats or stats.get("mean") is None:
        return "–"
    mean, std, n = stats["mean"], stats.get("std"), stats.get("n", 0)
    acc = 0.0 <= mean <= 1.0 and std is not None and std <= 1.0
    fmt = (lambda v: f"{100 * v:.1f}") if acc else (lambda v: f"{v:.3f}")
    unit = "%" if acc else ""
    spread = f" ± {fmt(std)}" if std is not None else ""
    return f"{fmt(mean)}{unit}{spread} (n={n})"


templates.env.filters["pct"] = _pct
templates.env.filters["stat"] = _stat
templates.env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S") if d else "–"
templates.env.filters["pretty"] = lambda obj: json.dumps(obj, indent=2, sort_keys=False)


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200
         ) -> HTMLResponse:
    session = {"user": getattr(request.state, "user", None),
               "csrf": getattr(request.state, "csrf", None)}  # set by a valid login session
    response = templates.TemplateResponse(request, name,
                                          {"statuses": STATUSES, **session, **context},
                                          status_code=status_code)
    response.headers.update(PAGE_HEADERS)
    return response


def _can_write(user: Principal, owner: str | None) -> bool:
    return user.is_admin or (owner is not None and owner == user.name)


Status = Annotated[list[str], Query()]
Cols = Annotated[list[str], Query()]


def _table(store, status: list[str], tag: str | None, name: str | None, sort: str,
           limit: int | None, cursor: str | None, page: int, col: list[str],
           radius: str | None) -> table_view.TableView:
    return table_view.build(store, status=status, tag=tag, name=name, sort=sort, limit=limit,
                            cursor=cursor, page=page, cols=col, radius=radius)


@router.get("/", response_class=HTMLResponse)
def experiments_page(request: Request, store: StoreDep, status: Status = [],
                     tag: str | None = None, name: str | None = None,
                     sort: str = "created_desc", limit: int | None = None,
                     cursor: str | None = None, page_no: Annotated[int, Query(alias="page")] = 1,
                     col: Cols = [], radius: str | None = None) -> HTMLResponse:
    table = _table(store, status, tag, name, sort, limit, cursor, page_no, col, radius)
    return page(request, "experiments.html", {
        "table": table, "rows": table.rows, "filters": table.params, "sorts": SORTS,
        "page_sizes": table_view.PAGE_SIZES, "suggested": table_view.SUGGESTED_SPEC,
        "summary_columns": table_view.SUMMARY_COLUMNS,
        "counts": store.counts_by_status(), "query": request.url.query})


@router.get("/ui/rows", response_class=HTMLResponse)
def experiment_rows(request: Request, store: StoreDep, status: Status = [],
                    tag: str | None = None, name: str | None = None,
                    sort: str = "created_desc", limit: int | None = None,
                    cursor: str | None = None, page_no: Annotated[int, Query(alias="page")] = 1,
                    col: Cols = [], radius: str | None = None) -> HTMLResponse:
    """The table body alone: what the experiments page re-fetches while jobs are live."""
    table = _table(store, status, tag, name, sort, limit, cursor, page_no, col, radius)
    return page(request, "_rows.html", {"table": table, "rows": table.rows})


@router.get("/experiments/{experiment_id}", response_class=HTMLResponse)
def experiment_page(request: Request, experiment: ExperimentDep, store: StoreDep,
                    user: PageUserDep) -> HTMLResponse:
    from service.experiment_plots import PLOT_NEEDS, PLOTS, plots_with_data

    exp = svc.to_read(experiment)
    return page(request, "experiment.html", {
        "exp": exp, "can_write": _can_write(user, exp.owner), "key": key_results(exp),
        "plots": PLOTS, "plot_needs": PLOT_NEEDS, "terminal": exp.status in TERMINAL,
        "sweeps": store.sweeps_of(exp.id),
        "with_data": plots_with_data(store.metric_names(exp.id))})


@router.get("/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request, store: StoreDep) -> HTMLResponse:
    sweeps = [sweep_views.to_summary(s, store.sweep_experiments(s.id))
              for s in store.list_sweeps(limit=TABLE_LIMIT)]
    return page(request, "sweeps.html", {"sweeps": sweeps})


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: str, store: StoreDep, user: PageUserDep,
               metric: str | None = None) -> HTMLResponse:
    sweep = sweep_views.read(store, store.get_sweep(sweep_id))
    # accuracies first, then the final correlations
    shown = sorted(sweep.metric_names, key=lambda n: ("accuracy" not in n, n))
    series = sorted({n for m in sweep.members if m.experiment
                     for n in store.metric_names(m.experiment.id)})
    default = "test/clean_accuracy" if "test/clean_accuracy" in series else (series or [""])[0]
    return page(request, "sweep.html", {
        "sweep": sweep, "columns": shown, "series": series,
        "metric": metric if metric in series else default,
        "terminal": sweep.status in TERMINAL, "can_write": _can_write(user, sweep.owner)})


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, store: StoreDep, ids: Annotated[list[str], Query()] = []
                 ) -> HTMLResponse:
    """Runs chosen in the table side by side: spec differences, summaries, and one metric
    overlaid across them (charts.js, from GET /v1/compare)."""
    from service import compare

    view = compare.page_view(store, compare.parse_ids(ids))
    return page(request, "compare.html", {
        "view": view, "ids": ",".join(e.id for e in view.comparison.experiments)})


@router.get("/submit", response_class=HTMLResponse)
def submit_page(request: Request, template: str = "quickstart") -> HTMLResponse:
    from service.templates import TEMPLATES

    chosen = TEMPLATES.get(template) or next(iter(TEMPLATES.values()))
    grid = chosen.default_grid()
    return page(request, "submit.html", {
        "templates": list(TEMPLATES.values()), "chosen": chosen,
        "spec_json": json.dumps(chosen.spec(), indent=2), "grid_json": json.dumps(grid)})


@static_router.get("/static/{name:path}")
def static_file(name: str) -> Response:
    path = WEB / "static" / name
    if not STATIC_NAME.match(name) or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    response = FileResponse(path, media_type=STATIC_TYPES[name.rsplit(".", 1)[1]])
    response.headers["Cache-Control"] = "no-cache"  # nosniff: service.hardening
    return response


@static_router.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every page whatever the <link rel=icon> says."""
    return static_file("favicon.ico")
