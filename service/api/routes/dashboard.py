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
from service import sweep_views
from service.api.deps import ExperimentDep, StoreDep
from service.schemas import ExperimentRead
from lab.status import STATUSES, TERMINAL
from lab.store.base import NotFound
from service.auth import Principal
from service.web_session import PageUserDep, page_user

WEB = Path(__file__).resolve().parents[2] / "web"
STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css|svg)$")
STATIC_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
SORTS = {"created_desc": "newest first", "created_asc": "oldest first", "name": "name",
         "status": "status", "progress": "progress", "test_accuracy": "test accuracy"}
TABLE_LIMIT = 200

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


def key_results(exp: ExperimentRead) -> dict[str, Any]:
    """Test clean accuracy, the robust accuracy against all attacks at the largest radius of
    the first threat (RunSummary.headline), and whether attacks disagree."""
    summary = exp.summary
    if summary is None:
        return {"test": None, "robust": None, "robust_label": "", "disagree": False}
    label, robust = summary.headline()
    return {"test": summary.clean_accuracy.test, "robust": robust, "robust_label": label,
            "disagree": any(d.suspicious for d in summary.disagreements)}


def _can_write(user: Principal, owner: str | None) -> bool:
    return user.is_admin or (owner is not None and owner == user.name)


def _sorted(items: list[ExperimentRead], sort: str) -> list[ExperimentRead]:
    if sort == "name":
        return sorted(items, key=lambda e: e.name.lower())
    if sort == "status":
        return sorted(items, key=lambda e: STATUSES.index(e.status))
    if sort == "progress":
        return sorted(items, key=lambda e: e.progress.fraction, reverse=True)
    if sort == "test_accuracy":
        return sorted(items, key=lambda e: key_results(e)["test"] or -1.0, reverse=True)
    return items  # created_desc / created_asc come sorted from the store


def _rows(store, status: list[str], tag: str | None, name: str | None, sort: str
          ) -> list[dict[str, Any]]:
    order = "created_asc" if sort == "created_asc" else "created_desc"
    listing = svc.list_page(store, status=[s for s in status if s in STATUSES], tag=tag or None,
                            name=name or None, spec_fields={}, limit=TABLE_LIMIT, cursor=None,
                            order=order)
    return [{"exp": e, "key": key_results(e)} for e in _sorted(listing.items, sort)]


Status = Annotated[list[str], Query()]


@router.get("/", response_class=HTMLResponse)
def experiments_page(request: Request, store: StoreDep, status: Status = [],
                     tag: str | None = None, name: str | None = None,
                     sort: str = "created_desc") -> HTMLResponse:
    sort = sort if sort in SORTS else "created_desc"
    rows = _rows(store, status, tag, name, sort)
    return page(request, "experiments.html", {
        "rows": rows, "filters": {"status": status, "tag": tag or "", "name": name or "",
                                  "sort": sort}, "sorts": SORTS,
        "counts": store.counts_by_status(), "query": request.url.query})


@router.get("/ui/rows", response_class=HTMLResponse)
def experiment_rows(request: Request, store: StoreDep, status: Status = [],
                    tag: str | None = None, name: str | None = None,
                    sort: str = "created_desc") -> HTMLResponse:
    """The table body alone: what the experiments page re-fetches while jobs are live."""
    sort = sort if sort in SORTS else "created_desc"
    return page(request, "_rows.html", {"rows": _rows(store, status, tag, name, sort)})


@router.get("/experiments/{experiment_id}", response_class=HTMLResponse)
def experiment_page(request: Request, experiment: ExperimentDep, store: StoreDep,
                    user: PageUserDep) -> HTMLResponse:
    from service.experiment_plots import PLOTS

    exp = svc.to_read(experiment)
    return page(request, "experiment.html", {
        "exp": exp, "can_write": _can_write(user, exp.owner), "key": key_results(exp), "plots": PLOTS, "terminal": exp.status in TERMINAL,
        "sweeps": store.sweeps_of(exp.id), "has_points": bool(store.metric_names(exp.id))})


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


@router.get("/submit", response_class=HTMLResponse)
def submit_page(request: Request, template: str = "quickstart") -> HTMLResponse:
    from service.templates import TEMPLATES

    chosen = TEMPLATES.get(template) or next(iter(TEMPLATES.values()))
    grid = chosen.sweep or {"training.mode": ["standard", "adversarial"]}
    return page(request, "submit.html", {
        "templates": list(TEMPLATES.values()), "chosen": chosen,
        "spec_json": json.dumps(chosen.spec(), indent=2), "grid_json": json.dumps(grid)})


@static_router.get("/static/{name}")
def static_file(name: str) -> Response:
    path = WEB / "static" / name
    if not STATIC_NAME.match(name) or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    response = FileResponse(path, media_type=STATIC_TYPES[name.rsplit(".", 1)[1]])
    response.headers["Cache-Control"] = "no-cache"  # nosniff: service.hardening
    return response
