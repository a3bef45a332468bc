"""Open a headmaps report in headless Chromium for the browser tests (one launch recipe)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright import sync_api

CHROMIUM = os.environ.get("HEADMAPS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@contextmanager
def report_page(path: Path, errors: list[str], timeout_ms: int = 30_000) -> Iterator:
    """A page showing the report at ``path``, ready; page errors are appended to ``errors``."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.goto(path.resolve().as_uri())
            pg.wait_for_function("() => window.__headmapsReady === true", timeout=timeout_ms)
            yield pg
        finally:
            browser.close()
