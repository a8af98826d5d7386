"""Dashboard pages of the reproductions: `/reproductions` (the catalogue, with the command and
the claims of each entry, and the latest runs with their verdicts) and `/reproductions/{id}`
(status, the figure and the verdict table). Same login and headers as every dashboard page;
the data comes from service.reproductions, as the API's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from service import reproductions as svc
from service.api.deps import StoreDep
from service.api.routes.dashboard import page
from service.web_session import page_user

router = APIRouter(include_in_schema=False, dependencies=[Depends(page_user)])


@router.get("/reproductions", response_class=HTMLResponse)
def reproductions_page(request: Request, store: StoreDep) -> HTMLResponse:
    return page(request, "reproductions.html", {
        "catalogue": [e.describe() for e in svc.catalogue.CATALOGUE.values()],
        "runs": svc.recent(store, limit=50)})


@router.get("/reproductions/{reproduction_id}", response_class=HTMLResponse)
def reproduction_page(request: Request, reproduction_id: str, store: StoreDep) -> HTMLResponse:
    sweep, entry, size = svc.load(store, reproduction_id)
    return page(request, "reproduction.html", {"r": svc.read(store, sweep, entry, size)})
