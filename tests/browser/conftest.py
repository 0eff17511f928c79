"""Playwright for Python driving Debian's Chromium (`make test` installs it when missing); never a
downloaded browser. Each test gets a fresh context; any JavaScript dialog, and any request to a host other
than the live server, is recorded so that tests can fail on it."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it are
# plain synchronous calls between page actions.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path(os.environ.get("RANKWISE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = (
    Path(os.environ.get("RANKWISE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    / "browser"
)


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package."
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Watch:
    """What a page did that a test may forbid: JavaScript dialogs, and requests leaving the live server."""

    def __init__(self, own_origin: str) -> None:
        self.own_origin = own_origin
        self.dialogs: list[str] = []
        self.foreign_requests: list[str] = []
        self.console_errors: list[str] = []

    def on_request(self, request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.own_origin:
            self.foreign_requests.append(request.url)


@pytest.fixture
def browser_page(chromium, live_server):
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    watch = Watch(live_server.url)
    page.on("request", watch.on_request)

    def on_dialog(dialog):
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda message: message.type == "error" and watch.console_errors.append(message.text))
    page.on("pageerror", lambda error: watch.console_errors.append(f"uncaught: {error}"))
    # Nothing leaves the machine: a request to any other host is recorded above and then refused here.
    page.route(lambda url: not url.startswith(live_server.url), lambda route: route.abort())
    page.set_default_timeout(15_000)
    yield page, watch
    context.close()


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/")
