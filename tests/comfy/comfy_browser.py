"""Headless Chromium on ComfyUI's front end, through Playwright (``test_browser.py``,
``scripts/build_example_workflows.py``). Importing this module loads neither ComfyUI nor Playwright.

Chromium is the system one (Debian: ``apt-get install chromium``), found as ``$CHROMIUM`` or on PATH; Playwright
only drives it, so ``playwright install`` is never needed and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

# Front-end settings for a fresh user: no template browser on first visit, no minimap over the canvas, and no
# missing-model dialog (the example workflows name the full-size files, which a test base never has).
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
}

APP_READY = "() => !!(window.app && window.app.graph && window.app.canvas && window.app.extensionManager)"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def missing_requirements() -> str | None:
    """Why a browser session cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return ("no Chromium found: install Debian's package (as root: apt-get update && apt-get install -y chromium; "
                "bash scripts/test.sh does this itself when run as root), or set $CHROMIUM to a Chromium binary")
    return None


@contextlib.contextmanager
def browser_page(server, width: int = 1600, height: int = 1100):
    """A page on ``server`` (a started ``comfy_server.ComfyServer``) with the front end loaded. Yields
    ``(page, errors)``; ``errors`` collects uncaught page errors and requests for anything but the local server
    (blocked)."""
    from playwright.sync_api import sync_playwright

    server.post("/settings", SETTINGS)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            local = (server.url, "data:", "blob:")

            def block_external(route):
                # Tests never reach the network: the request is refused and recorded.
                errors.append(f"external request: {route.request.url}")
                route.abort()

            page.route(lambda url: not url.startswith(local), block_external)
            open_app(page, server.url)
            yield page, errors
        finally:
            browser.close()


def open_app(page, url: str | None = None) -> None:
    """(Re)load the front end and wait until it has set up its extensions."""
    if url is None:
        page.reload()
    else:
        page.goto(url)
    page.wait_for_function(APP_READY, timeout=90_000)
    page.wait_for_timeout(500)
