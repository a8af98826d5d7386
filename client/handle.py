"""What the experiment and sweep handles share: one server-side resource at
/v1/<collection>/<id>, read fresh on every call, canceled, exported and plotted the same way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from client.api import Client


def image(client: Client, url: str, path: str | Path | None = None, fmt: str | None = None,
          params: dict[str, Any] | None = None) -> bytes:
    """GET a rendered plot at `url`.<fmt>, the format from `path`'s suffix (png default, svg);
    written to `path` when given."""
    fmt = fmt or (Path(path).suffix.lstrip(".").lower() if path else "") or "png"
    content = client.request("GET", f"{url}.{fmt}", params={
        k: v for k, v in (params or {}).items() if v is not None}).content
    if path is not None:
        Path(path).write_bytes(content)
    return content


class Handle:
    """A handle on one server-side resource; every property reads fresh state."""

    COLLECTION: ClassVar[str]  # experiments | sweeps

    def __init__(self, client: Client, resource_id: str) -> None:
        self.client = client
        self.id = resource_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    @property
    def _path(self) -> str:
        return f"/v1/{self.COLLECTION}/{self.id}"

    def info(self) -> dict:
        return self.client.get_json(self._path)

    @property
    def status(self) -> str:
        return self.info()["status"]

    def cancel(self) -> dict:
        return self.client.request("POST", f"{self._path}/cancel").json()

    def export(self, path: str | Path, fmt: str | None = None) -> Path:
        """Download every recorded series as CSV or Parquet (format from the suffix)."""
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".").lower() or "csv"
        path.write_bytes(self.client.request("GET", f"{self._path}/export.{fmt}").content)
        return path
