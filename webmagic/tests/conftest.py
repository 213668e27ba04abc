import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright; browser tests are skipped, saying why, without it."""
    if not CHROMIUM:
        pytest.skip("Chromium is not installed (apt-get install chromium): browser journeys not run")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # ordinary synchronous code, so Django's async-safety guard does not apply to them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def watched_page(context):
    """A page whose console errors (CSP refusals among them) are kept in `page.console_errors`."""
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.console_errors = errors
    return page


@pytest.fixture
def phone(chromium):
    context = chromium.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    yield watched_page(context)
    context.close()


@pytest.fixture
def screenshot():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    return take


DEMO = Path(__file__).resolve().parents[2] / "sites" / "demo_sites" / "la-plumbing-pros.html"


@pytest.fixture
def site(db):
    """A preview site with the demo plumber's generated page, for the browser journeys."""
    from sites.models import Site
    from sites.services import site_version_publish

    site = Site.objects.create(slug="la-plumbing-pros", business_name="LA Plumbing Pros", business_type="Plumber")
    site_version_publish(site=site, html=DEMO.read_text(encoding="utf-8"))
    return site


@pytest.fixture
def held_deliveries(monkeypatch, settings, live_server):
    """Point SITE_URL at the live server and hold the sandbox's deliveries until `release()`."""
    from checkout import sandbox

    settings.SITE_URL = live_server.url
    settings.RECURRENTE_SANDBOX = True
    held = []
    monkeypatch.setattr(sandbox, "sandbox_send_later", lambda **kwargs: held.append(kwargs))

    def release():
        statuses = [sandbox.sandbox_deliver_now(**kwargs) for kwargs in held]
        held.clear()
        return statuses

    return release


AXE = Path(__file__).resolve().parent / "axe" / "axe.min.js"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=sorted(SIZES))
def sized_page(request, chromium):
    """A watched page at each of the two widths we judge pages at, with axe-core loaded."""
    phone = request.param == "phone"
    context = chromium.new_context(viewport=SIZES[request.param], is_mobile=phone, has_touch=phone)
    context.add_init_script(path=str(AXE))
    page = watched_page(context)
    page.size_name = request.param
    yield page
    context.close()
