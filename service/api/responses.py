"""OpenAPI documents of the responses several routes share (error bodies: service.schemas.Error)."""

from __future__ import annotations

from typing import Any

from service.schemas import Error

IMAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "The image."}}
TABLE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
          "description": "The table."}}


def error(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An error response of `status`, its body an Error, saying when it happens."""
    return {status: {"model": Error, "description": description}}


NO_PLOT_DATA = error(409, "No data for this plot (yet).")
