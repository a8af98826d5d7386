"""Headless Debian Chromium for the dashboard tests (Playwright drives it; never
`playwright install`): where it is, how it starts, one browser per test module, the check that
fails a CI run without it, screenshots, and the token-auth server both modules test against."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from devtools.stack import REPO, launch_stack
from tests.conftest import IN_CI

CHROMIUM = os.environ.get("ADVLAB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 120_000


def require_browser() -> None:
    """Skip (fail under CI=true) when Chromium or Playwright is missing."""
    missing = []
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        missing.append(f"chromium ({CHROMIUM}; apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing browser fails the run)")
        pytest.skip(message)


def shot(page, name: str) -> None:
    """Screenshot into test-artifacts/ and, when set, $OUT (CI artifacts)."""
    targets = [ARTIFACTS] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else [])
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser(stack):
    """One Chromium for the module, closed before the module's stack (it depends on it)."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def tokens_stack(tmp_path_factory):
    """A server with tokens on and no worker (a queued job cancels at once)."""
    from devtools.stack import add_users

    require_browser()
    stack = launch_stack(tmp_path_factory.mktemp("browser-tokens"), {"ADVLAB_AUTH": "tokens"},
                         workers=0)
    stack.users = add_users(stack, ["alice", "bob"])
    yield stack
    stack.close()
