"""GET /v1/templates and /v1/templates/{name}: the named experiment templates (service.templates)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.schemas import Error
from lab.store.base import NotFound
from service.templates import TEMPLATES, UnknownTemplate, get_template

router = APIRouter(prefix="/templates", tags=["templates"])


class TemplateRead(BaseModel):
    name: str
    title: str
    paper: str = Field(description="Which result of the three papers it reproduces.")
    shows: str = Field(description="One sentence: what the run should show.")
    compare_with: list[str] = Field(description="Templates (or overrides) to compare it with.")
    sweep: dict[str, list[Any]] | None = Field(
        None, description="Suggested sweep grid over dotted spec paths, when the experiment is "
                          "a sweep (e.g. the width study).")
    example: str = Field(description="The spec file in the repository.")
    spec: dict[str, Any] = Field(description="The spec to POST to /v1/experiments (edit freely).")


class TemplateList(BaseModel):
    items: list[TemplateRead]


@router.get("", response_model=TemplateList, summary="List experiment templates",
            description="Every named template with its paper, what it shows and its spec.")
def list_templates() -> TemplateList:
    return TemplateList(items=[TemplateRead(**t.describe()) for t in TEMPLATES.values()])


@router.get("/{name}", response_model=TemplateRead, summary="One experiment template",
            responses={404: {"model": Error, "description": "No template with that name."}})
def read_template(name: str) -> TemplateRead:
    try:
        return TemplateRead(**get_template(name).describe())
    except UnknownTemplate:
        raise NotFound(f"no template named {name!r}; one of {sorted(TEMPLATES)}") from None
