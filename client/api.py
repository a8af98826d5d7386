"""The advlab Python client (httpx). Importing it never imports torch (pandas on first use).

    from client.api import Client
    c = Client("http://127.0.0.1:8000")
    exp = c.submit("quickstart", **{"training.epochs": 50})   # template, file or dict
    exp.wait(progress=True)
    df = exp.metrics(names=["test/clean_accuracy"])            # long form: name, seed, step, value
    exp.plot("robust_vs_radius", "rva.png")
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import httpx

from client.errors import TERMINAL, AdvlabError, JobFailed
from client.handle import Handle, image
from client.overrides import parse_override, set_path  # noqa: F401  (public here too)
from client.sweep import Sweep

__all__ = ["TERMINAL", "AdvlabError", "Client", "Experiment", "JobFailed", "Reproduction",
           "Sweep", "parse_override", "set_path"]

if TYPE_CHECKING:
    from advcore.summary import RunSummary
    import pandas as pd

RETRY_STATUS = {502, 503, 504}  # a restarting server / proxy: worth another try
EVENTS_READ_S = 45.0  # the event stream sends a keep-alive comment every 15 s


def _message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase, None
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # field errors: the server's msg already names the path
        parts = []
        for err in detail:
            msg = str(err.get("msg")) if isinstance(err, dict) else str(err)
            loc = err.get("loc") or [] if isinstance(err, dict) else []
            loc = ".".join(str(p) for p in loc[1 if loc[:1] in (["body"], ["query"], ["path"])
                                                 else 0:])
            parts.append(msg if not loc or loc in msg else f"{loc}: {msg}")
        return "; ".join(parts), detail
    return str(detail), detail


def long_frame(series: list[dict]) -> "pd.DataFrame":
    """API series ([{name, seed, points: [[step, value]]}]) → DataFrame name, seed, step, value."""
    import pandas as pd

    rows = [(s["name"], s.get("seed", 0), step, value)
            for s in series for step, value in s["points"]]
    frame = pd.DataFrame(rows, columns=["name", "seed", "step", "value"])
    return frame.astype({"seed": "int64", "step": "int64", "value": "float64"})


class Client:
    """A connection to an advlab server. Connection errors and 502/503/504 are retried with
    backoff (submits carry an Idempotency-Key, so a retried POST never runs a job twice);
    other errors raise AdvlabError with the server's message."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 30.0, retries: int = 3) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retries = retries
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError,
                    httpx.ConnectTimeout):
                if last:
                    raise
            else:
                if response.status_code not in RETRY_STATUS or last:
                    break
            time.sleep(0.2 * 2**attempt)
        if response.status_code >= 400:
            message, detail = _message(response)
            raise AdvlabError(response.status_code, message, detail)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    # ------------------------------------------------------------------ experiments

    def load_spec(self, spec: dict | str | Path) -> dict:
        """A dict (copied), a path to a JSON file, or a template name (GET /v1/templates)."""
        if isinstance(spec, dict):
            return json.loads(json.dumps(spec))
        path = Path(spec)
        if path.suffix == ".json" or path.exists():
            return json.loads(path.read_text())
        return self.template(str(spec))["spec"]

    def submit(self, spec: dict | str | Path, idempotency_key: str | None = None,
               **overrides: Any) -> "Experiment":
        """Submit a spec; overrides are dotted paths: `submit(spec, **{"training.epochs": 5})`.
        The server validates the result (AdvlabError 422 naming the bad path)."""
        body = self.load_spec(spec)
        for path, value in overrides.items():
            set_path(body, path, value)
        # a key of our own makes the retry of a POST whose answer was lost safe (no duplicate)
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        data = self.request("POST", "/v1/experiments", json=body, headers=headers).json()
        return Experiment(self, data["id"])

    def estimate(self, spec: dict | str | Path, **overrides: Any) -> dict:
        """What the server estimates the spec costs (POST /v1/experiments?dry_run=true): flops,
        gflop, peak_bytes, stored_bytes, n_evaluations, the field driving each (`dominant`) and
        the queue's `limits`. Nothing is stored; over a limit it raises the submit's 413."""
        body = self.load_spec(spec)
        for path, value in overrides.items():
            set_path(body, path, value)
        return self.request("POST", "/v1/experiments", json=body,
                            params={"dry_run": "true"}).json()

    def experiment(self, experiment_id: str) -> "Experiment":
        return Experiment(self, experiment_id)

    def experiments(self, page_size: int = 50, **filters: Any) -> Iterator[dict]:
        """Every experiment matching the filters, page by page: `status` (str or list), `tag`,
        `name`, `order`, and spec fields as `**{"spec.data.kind": "patch"}`."""
        cursor = None
        while True:
            page = self.get_json("/v1/experiments", limit=page_size, cursor=cursor, **filters)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def templates(self) -> list[dict]:
        return self.get_json("/v1/templates")["items"]

    def template(self, name: str) -> dict:
        return self.get_json(f"/v1/templates/{name}")

    def compare(self, ids: list[str], names: list[str] | None = None,
                max_points: int | None = None) -> dict:
        """GET /v1/compare: spec differences, summaries side by side, aligned series."""
        return self.get_json("/v1/compare", ids=",".join(ids),
                             names=",".join(names) if names else None, max_points=max_points)

    def compare_plot(self, ids: list[str], name: str, path: str | Path | None = None,
                     fmt: str | None = None, **options: Any) -> bytes:
        """Overlay plot: `robust_vs_radius` (options: attack, seed) or a metric's trajectory,
        one line / band per experiment. The format follows `path`'s suffix (png default)."""
        return image(self, f"/v1/compare/plots/{name}", path, fmt,
                     {"ids": ",".join(ids), **options})

    def sweep(self, base: dict | str | Path, grid: Mapping[str, list[Any]],
              seeds: list[int] | None = None, *, name: str = "sweep",
              tags: list[str] | None = None, seed_mode: str = "batched",
              idempotency_key: str | None = None, **overrides: Any) -> Sweep:
        """POST /v1/sweeps: `base` (dict, file or template name, with dotted overrides) × `grid`
        {spec path: [values]} × `seeds`."""
        body = self._sweep_body(base, grid, seeds, name, tags, seed_mode, overrides)
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        data = self.request("POST", "/v1/sweeps", json=body, headers=headers).json()
        return Sweep(self, data["id"])

    def estimate_sweep(self, base: dict | str | Path, grid: Mapping[str, list[Any]],
                       seeds: list[int] | None = None, *, name: str = "sweep",
                       tags: list[str] | None = None, seed_mode: str = "batched",
                       **overrides: Any) -> dict:
        """POST /v1/sweeps?dry_run=true: n_members, the summed flops/gflop and stored_bytes,
        the largest member's peak_bytes, the sweep `limits` and one estimate per member.
        Nothing is stored; over a limit it raises the submit's 413."""
        body = self._sweep_body(base, grid, seeds, name, tags, seed_mode, overrides)
        return self.request("POST", "/v1/sweeps", json=body, params={"dry_run": "true"}).json()

    def _sweep_body(self, base: dict | str | Path, grid: Mapping[str, list[Any]],
                    seeds: list[int] | None, name: str, tags: list[str] | None,
                    seed_mode: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        body_spec = self.load_spec(base)
        for path, value in overrides.items():
            set_path(body_spec, path, value)
        body: dict[str, Any] = {"name": name, "tags": list(tags or []), "base": body_spec,
                                "grid": dict(grid), "seed_mode": seed_mode}
        if seeds is not None:
            body["seeds"] = list(seeds)
        return body

    def reproduce(self, name: str, size: str = "quick") -> "Reproduction":
        """POST /v1/reproductions: run catalogue entry `name` (advcore.reproductions) at
        `size` quick | full on the server, as one sweep over its grid and seeds."""
        data = self.request("POST", "/v1/reproductions", json={"name": name, "size": size},
                            headers={"Idempotency-Key": uuid.uuid4().hex}).json()
        return Reproduction(self, data["id"])

    def reproduction(self, reproduction_id: str) -> "Reproduction":
        return Reproduction(self, reproduction_id)

    def reproductions_catalogue(self) -> list[dict]:
        """GET /v1/reproductions: every entry with its sizes and claims."""
        return self.get_json("/v1/reproductions")["catalogue"]

    def health(self) -> dict:
        return self.get_json("/v1/health")


class Reproduction:
    """A reproduction on the server: status, then the verdict and the figure."""

    def __init__(self, client: Client, reproduction_id: str) -> None:
        self.client = client
        self.id = reproduction_id

    def __repr__(self) -> str:
        return f"Reproduction({self.id!r})"

    def info(self) -> dict:
        return self.client.get_json(f"/v1/reproductions/{self.id}")

    def wait(self, poll_s: float = 2.0, timeout_s: float | None = None) -> dict:
        """Poll until every member has ended; the final info (with `verdict` once succeeded)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            info = self.info()
            if info["status"] in TERMINAL:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"reproduction {self.id} still {info['status']} after "
                                   f"{timeout_s}s")
            time.sleep(poll_s)

    def figure(self, path: str | Path | None = None) -> bytes:
        content = self.client.request("GET", f"/v1/reproductions/{self.id}/figure.png").content
        if path is not None:
            Path(path).write_bytes(content)
        return content


class Experiment(Handle):
    """A handle on one server-side experiment; every property reads fresh state."""

    COLLECTION = "experiments"

    @property
    def summary(self) -> "RunSummary | None":
        """The final summary (advcore.summary.RunSummary) once succeeded, else None."""
        from advcore.summary import RunSummary

        return RunSummary.from_stored(self.info().get("summary"))

    def wait(self, progress: bool = False, poll_s: float = 0.5, timeout_s: float | None = None,
             raise_on_failure: bool = True) -> dict:
        """Wait until the experiment ends; with `progress`, a bar with step/total and ETA.
        Follows the server's event stream (status and progress only), so the end is seen as soon
        as the server sees it; where the stream is unavailable (a proxy that cuts it, an older
        server) it polls every `poll_s` instead. Raises JobFailed (unless
        raise_on_failure=False) when it ends failed or canceled, TimeoutError after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        bar = None

        def show(status: str, prog: dict) -> None:
            nonlocal bar
            if not progress:
                return
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=prog.get("total") or None, desc=self.id[:8], unit="epoch",
                           dynamic_ncols=True)
            if prog.get("total") and bar.total != prog["total"]:
                bar.total = prog["total"]
            bar.n = prog.get("step") or 0
            bar.set_postfix_str(status)
            bar.refresh()

        try:
            info = self._wait_on_events(show, deadline, timeout_s)
            if info is None:
                info = self._wait_polling(show, deadline, timeout_s, poll_s)
        finally:
            if bar is not None:
                bar.close()
        if raise_on_failure and info["status"] != "succeeded":
            reason = f": {info['error']}" if info.get("error") else ""
            raise JobFailed(f"experiment {self.id} {info['status']}{reason}", info)
        return info

    def _wait_on_events(self, show, deadline: float | None, timeout_s: float | None
                        ) -> dict | None:
        """The experiment's final info, read once its event stream says `end`; None when the
        stream could not be followed to its end (then the caller polls)."""
        status, prog = "", {}
        read_s = EVENTS_READ_S if deadline is None else max(0.1, min(
            EVENTS_READ_S, deadline - time.monotonic()))
        timeout = httpx.Timeout(self.client.timeout, read=read_s)
        try:
            with self.client._http.stream("GET", f"{self._path}/events",
                                         params={"metrics": "false"}, timeout=timeout) as response:
                if response.status_code != 200:
                    return None
                event, data = None, []
                for line in response.iter_lines():
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"{self.id} still {status or 'queued'} after "
                                           f"{timeout_s}s")
                    if line.startswith(":"):
                        continue
                    if line.startswith("event:"):
                        event = line[len("event:"):].strip()
                    elif line.startswith("data:"):
                        data.append(line[len("data:"):].lstrip())
                    elif not line:  # a blank line ends an event
                        payload = json.loads("\n".join(data)) if data else {}
                        if event == "status":
                            status = payload.get("status", status)
                        elif event == "progress":
                            prog = payload
                        elif event == "end":
                            return self.info()
                        if event in ("status", "progress"):
                            show(status, prog)
                        event, data = None, []
        except httpx.ReadTimeout:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} still {status or 'queued'} after {timeout_s}s")
            return None
        except (httpx.HTTPError, ValueError):
            return None
        return None

    def _wait_polling(self, show, deadline: float | None, timeout_s: float | None,
                      poll_s: float) -> dict:
        while True:
            info = self.info()
            show(info["status"], info.get("progress") or {})
            if info["status"] in TERMINAL:
                return info
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} still {info['status']} after {timeout_s}s")
            time.sleep(poll_s)

    def metrics(self, names: list[str] | None = None, max_points: int | None = None,
                since_step: int | None = None, seed: int | None = None) -> "pd.DataFrame":
        """Long-form DataFrame with columns name, seed, step, value."""
        data = self.client.get_json(f"{self._path}/metrics", names=",".join(names) if names
                                    else None, max_points=max_points, since_step=since_step,
                                    seed=seed)
        return long_frame(data["series"])

    def correlations(self, seed: int | None = None) -> "pd.DataFrame":
        """The per-feature correlation trajectories (`corr/*`) in long form."""
        data = self.client.get_json(f"{self._path}/correlations", seed=seed)
        return long_frame(data["series"])

    def cosine_matrix(self, step: int | None = None, name: str | None = None,
                      seed: int | None = None) -> "pd.DataFrame":
        """One neuron × feature matrix as a DataFrame (rows: neurons, columns: features);
        `.attrs` has name, step and seed. Default: the first cosine/* matrix, latest step."""
        import pandas as pd

        if name is None:
            kinds = sorted(self.client.get_json(f"{self._path}/correlations")["matrices"])
            cosine = [k for k in kinds if k.startswith("cosine/")] or kinds
            if not cosine:
                raise AdvlabError(404, f"experiment {self.id} has no correlation matrices")
            name = cosine[0]
        m = self.client.get_json(f"{self._path}/correlations", step=step, name=name, seed=seed)
        frame = pd.DataFrame(m["values"], index=m["row_labels"] or None,
                             columns=m["col_labels"] or None)
        frame.attrs.update(name=m["name"], step=m["step"], seed=m["seed"])
        return frame

    def retry(self) -> "Experiment":
        data = self.client.request("POST", f"{self._path}/retry").json()
        return Experiment(self.client, data["id"])

    def delete(self) -> None:
        self.client.request("DELETE", self._path)

    def update(self, *, tags: list[str] | None = None, notes: str | None = None) -> dict:
        """Replace the tags and/or the notes (None: unchanged; "" clears the notes); returns
        the experiment as the server now has it."""
        body = {k: v for k, v in {"tags": tags, "notes": notes}.items() if v is not None}
        return self.client.request("PATCH", self._path, json=body).json()

    def plot(self, name: str, path: str | Path | None = None, fmt: str | None = None,
             **options: Any) -> bytes:
        """A rendered plot: learning_curves, robust_vs_radius, correlations, cosine (options:
        seed, step, matrix). The format follows `path`'s suffix (png default, svg)."""
        return image(self.client, f"{self._path}/plots/{name}", path, fmt, options)

