"""/v1/reproductions: the papers' figures and tables as one-step runs with verdicts.
Thin: parse → service/reproductions.py → schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status

from service import reproductions as svc
from service.api.deps import EnqueueDep, SettingsDep, StoreDep
from service.auth import UserDep
from service.errors import Conflict
from service.schemas import Error

router = APIRouter(prefix="/reproductions", tags=["reproductions"])

E404 = {404: {"model": Error, "description": "No reproduction with that id."}}
ReproductionId = Annotated[str, Path(description="Reproduction id (its sweep's id).",
                                     min_length=1, max_length=64)]


@router.get("", summary="The reproduction catalogue and the latest reproductions",
            description="`catalogue`: one entry per figure / table of the three papers, with "
                        "its sizes (grid, seeds, rough minutes) and claims (the paper's number, "
                        "the criterion). `reproductions`: the newest runs, with their verdicts.")
def list_reproductions(store: StoreDep, limit: Annotated[int, Query(ge=0, le=100)] = 20
                       ) -> dict[str, Any]:
    return {"catalogue": [e.describe() for e in svc.catalogue.CATALOGUE.values()],
            "reproductions": [r.model_dump(mode="json") for r in svc.recent(store, limit)]
            if limit else []}


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=svc.ReproductionCreated,
    summary="Run a reproduction",
    description="Submits the entry's grid × seeds at `size` as one sweep (each grid point one "
                "batched job), admitted and owned like any sweep (413 over a limit, 429 over "
                "the quota). 422 at `name` for an unknown entry. Poll GET "
                "/v1/reproductions/{id}; the verdict appears once every member succeeded.",
    responses={413: {"model": Error, "description": "Over a configured limit."},
               422: {"model": Error, "description": "Unknown name or size."},
               429: {"model": Error, "description": "Over the user's quota."}})
def create_reproduction(
    body: svc.ReproductionCreate, store: StoreDep, settings: SettingsDep, enqueue: EnqueueDep,
    response: Response, user: UserDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                                  max_length=200)] = None,
) -> svc.ReproductionCreated:
    sweep, created = svc.create(store, settings, enqueue, body, idempotency_key, user=user)
    if not created:
        response.status_code = status.HTTP_200_OK
    read = svc.read(store, sweep, *svc.identify(sweep))
    response.headers["Location"] = read.links["self"]
    return svc.ReproductionCreated(id=sweep.id, name=body.name, size=body.size,
                                   status=read.status, experiment_ids=read.experiment_ids)


@router.get("/{reproduction_id}", response_model=svc.ReproductionRead,
            summary="Status and verdict of a reproduction", responses={**E404})
def read_reproduction(reproduction_id: ReproductionId, store: StoreDep) -> svc.ReproductionRead:
    sweep, entry, size = svc.load(store, reproduction_id)
    return svc.read(store, sweep, entry, size)


@router.get("/{reproduction_id}/figure.png", response_class=Response,
            summary="The paper-style figure of a finished reproduction",
            responses={200: {"content": {"image/png": {}}, "description": "The figure."},
                       **E404, 409: {"model": Error, "description": "Not finished (or a "
                                                                     "member failed)."}})
def reproduction_figure(reproduction_id: ReproductionId, store: StoreDep) -> Response:
    sweep, entry, size = svc.load(store, reproduction_id)
    png = svc.figure_png(store, sweep, entry, size)
    if png is None:
        raise Conflict(f"reproduction {reproduction_id} has no figure yet: its members have "
                       "not all succeeded")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
