"""A live ASGI server (uvicorn, in a thread of the test process) and headless Chromium."""

import os
from pathlib import Path

import pytest

from tests.conftest import serving_asgi

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def asgi_server(transactional_db, settings):
    """Serve the project's ASGI application (HTTP and websockets) on a free port."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    with serving_asgi() as url:
        yield url


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # still synchronous, so tell Django they are safe here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


# --- Every page looked at: an accessibility check (axe-core, vendored from npm) and a screenshot -----------

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "mobile": {"width": 390, "height": 844}}
SERIOUS = ("serious", "critical")


def look(page, name: str) -> list[dict]:
    """Screenshot the page (kept under var/artifacts/screenshots, CI keeps them) and run axe-core in it; fail on a
    serious or critical violation, naming each with its nodes. Returns the minor ones."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # through the debugging protocol: the page's CSP does not apply
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations = result["violations"]
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in violations
        if v["impact"] in SERIOUS
    ]
    assert not serious, f"{name} at {width} px:\n" + "\n".join(serious)
    return [v for v in violations if v["impact"] not in SERIOUS]
