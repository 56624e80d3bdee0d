"""cachedcall.contrib.debug_toolbar: the panel as the toolbar's own tests drive one, through
the toolbar's middleware and views, and opened in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.http import HttpResponse
from django.test import AsyncClient
from django.test import Client
from django.test import RequestFactory
from django.test import override_settings

import cachedcall
from cachedcall import events
from cachedcall.events import Event
from cachedcall.keys import pk_token
from tests import toolbar_settings
from tests import toolbar_views

# The panel and the toolbar are imported inside the tests, under the toolbar's settings
# (tests/toolbar_settings.py says why).
PANEL_ID = "CachedCallPanel"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "_static" / "debug-toolbar-panel.png"
INSTALL = (
    "the browser test needs Chromium and its WebDriver: "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver "
    "(and pip install selenium)"
)


@pytest.fixture(autouse=True)
def _toolbar_settings():
    with toolbar_settings.overridden():
        yield


def new_toolbar():
    """A toolbar for one request, made as django-debug-toolbar's own panel tests make it."""
    # Imported under the settings: the toolbar's store imports a model of the toolbar's app.
    from debug_toolbar.toolbar import DebugToolbar

    return DebugToolbar(RequestFactory().get("/dashboard/"), lambda request: HttpResponse())


@pytest.fixture
def toolbar():
    return new_toolbar()


def recording(toolbar):
    panel = toolbar.get_panel_by_id(PANEL_ID)
    panel.enable_instrumentation()
    return panel


def summary(stats):
    return [(c["function"].rsplit(".", 1)[1], c["outcome"], c["stored"]) for c in stats["calls"]]


def test_the_panel_lists_the_calls_of_its_request(toolbar):
    panel = recording(toolbar)
    try:
        toolbar_views.club_names()
        toolbar_views.class_names(3)
        toolbar_views.class_names(3)
        with cachedcall.disabled():
            toolbar_views.week_label("1")
    finally:
        panel.disable_instrumentation()
    toolbar_views.week_label("2")  # after the request: not its call
    panel.generate_stats(toolbar.request, HttpResponse())
    stats = panel.get_stats()
    assert summary(stats) == [
        ("club_names", "miss", True),
        ("class_names", "miss", True),
        ("class_names", "hit", False),
        ("week_label", "disabled", False),
    ]
    assert stats["total_calls"] == 4 and stats["hits"] == 1 and stats["misses"] == 2
    assert stats["counts"]["stored"] == 2
    assert stats["total_time"] == pytest.approx(sum(c["time"] for c in stats["calls"]))
    club, classes, _, disabled = stats["calls"]
    assert club["dependencies"] == ["testapp.club"]
    assert classes["dependencies"] == [f"testapp.clubclass:club_id={pk_token((3,))}", "testapp.clubclass:*"]
    assert classes["key"] == toolbar_views.class_names.key(3)
    assert disabled["dependencies"] is None and disabled["key"] is None
    assert panel.nav_subtitle == "4 calls, 1 hit"
    assert panel.title == "Cached calls: 4 calls, 1 hit"
    content = panel.content
    for text in (
        "tests.toolbar_views.class_names",
        "miss,&nbsp;stored",
        f"testapp.clubclass:club_id={pk_token((3,))}",
        "not known",
    ):
        assert text in content
    assert toolbar_views.class_names.key(3) in content


def test_the_stats_survive_the_toolbars_store(toolbar):
    # The toolbar renders a panel when it is opened, from what its store kept (JSON).
    panel = recording(toolbar)
    toolbar_views.class_names(4)
    panel.disable_instrumentation()
    panel.generate_stats(toolbar.request, HttpResponse())
    stored = type(toolbar).fetch(toolbar.request_id, PANEL_ID).get_panel_by_id(PANEL_ID)
    assert stored.get_stats() == json.loads(json.dumps(panel.get_stats()))
    assert stored.nav_subtitle == "1 call, 0 hits"
    assert "tests.toolbar_views.class_names" in stored.content


def test_an_empty_request_says_so(toolbar):
    panel = recording(toolbar)
    panel.disable_instrumentation()
    panel.generate_stats(toolbar.request, HttpResponse())
    assert panel.nav_subtitle == "0 calls, 0 hits"
    assert "No decorated function was called during this request." in panel.content


def test_instrumentation_subscribes_only_while_enabled_and_is_idempotent(toolbar):
    panel = toolbar.get_panel_by_id(PANEL_ID)
    assert not events.active
    panel.enable_instrumentation()
    panel.enable_instrumentation()
    toolbar_views.week_label("3")
    panel.disable_instrumentation()
    assert not events.active
    panel.disable_instrumentation()
    panel.generate_stats(toolbar.request, HttpResponse())
    assert summary(panel.get_stats()) == [("week_label", "miss", True)]


def test_concurrent_requests_each_see_their_own_calls():
    both_recording = threading.Barrier(2)
    panels = {}

    def request(club_id):
        toolbar = new_toolbar()
        panel = recording(toolbar)
        both_recording.wait()
        for _ in range(20):
            toolbar_views.class_names(club_id)
        both_recording.wait()
        panel.disable_instrumentation()
        panel.generate_stats(toolbar.request, HttpResponse())
        panels[club_id] = panel.get_stats()

    threads = [threading.Thread(target=request, args=(club_id,)) for club_id in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for club_id in (1, 2):
        keys = {c["key"] for c in panels[club_id]["calls"]}
        assert keys == {toolbar_views.class_names.key(club_id)}
        assert panels[club_id]["total_calls"] == 20 and panels[club_id]["hits"] == 19


def request_id(response):
    found = re.search(r'data-request-id="([0-9a-f]+)"', response.content.decode())
    assert found, "the toolbar is not in the page"
    return found[1]


def rendered_panel(response):
    """What the toolbar's JavaScript fetches when the panel is opened."""
    url = f"/__debug__/render_panel/?request_id={request_id(response)}&panel_id={PANEL_ID}"
    return Client().get(url).json()["content"]


def test_a_cached_view_through_the_toolbars_middleware():
    first, second = Client().get("/clubs/5/"), Client().get("/clubs/5/")
    assert "2 calls, 0 hits" in first.content.decode()
    assert "1 call, 1 hit" in second.content.decode()
    content = rendered_panel(second)
    assert "tests.toolbar_views.club_page" in content and "tests.toolbar_views.class_names" not in content
    assert ">hit<" in content.replace("\n", "").replace(" ", "")
    assert f"testapp.clubclass:club_id={pk_token((5,))}" in content
    assert "tests.toolbar_views.class_names" in rendered_panel(first)
    assert not events.active


def test_an_async_view_is_recorded_too():
    async def twice():
        client = AsyncClient()
        return [await client.get("/async-dashboard/?club=6") for _ in range(2)]

    first, second = asyncio.run(twice())
    assert "1 call, 0 hits" in first.content.decode()
    assert "1 call, 1 hit" in second.content.decode()
    assert "tests.toolbar_views.aclass_names" in rendered_panel(second)


def test_the_panel_checks_that_its_app_is_installed():
    from cachedcall.contrib.debug_toolbar import CachedCallPanel

    assert CachedCallPanel.panel_id == PANEL_ID
    assert CachedCallPanel.run_checks() == []
    apps = [a for a in toolbar_settings.INSTALLED_APPS if a != "cachedcall.contrib.debug_toolbar"]
    with override_settings(INSTALLED_APPS=apps):
        (error,) = CachedCallPanel.run_checks()
    assert error.id == "cachedcall_debug_toolbar.E001"
    assert "Add 'cachedcall.contrib.debug_toolbar' to INSTALLED_APPS" in error.hint


def event(function, outcome, key="k", reason=None):
    return Event(f"m.{function}", key, outcome, 0.001, reason, ("cc:v:app.model", "other"))


def test_rows_merge_what_follows_a_miss_into_its_row():
    from cachedcall.contrib.debug_toolbar.panel import rows

    recorded = [
        event("f", "miss", "a"),
        event("g", "miss", "b"),
        event("f", "stored", "a"),  # interleaved: not the last row's
        event("v", "refused", "c", "sets a cookie"),  # cached_view: before its miss
        event("v", "miss", "c"),
        event("v", "refused", None, "not a GET"),  # a bypassed request: a call of its own
        event("f", "invalidated", "a"),
        event("h", "stored", "d"),  # no miss before it: shown as it is
        event("w", "refused", "e", "raised after"),  # no miss after it
    ]
    table = [(r["function"], r["outcome"], r["stored"], r["reason"], r["call"]) for r in rows(recorded, "cc")]
    assert table == [
        ("m.f", "miss", True, None, True),
        ("m.g", "miss", False, None, True),
        ("m.v", "miss", False, "sets a cookie", True),
        ("m.v", "refused", False, "not a GET", True),
        ("m.f", "invalidated", False, None, False),
        ("m.h", "stored", False, None, False),
        ("m.w", "refused", False, "raised after", False),
    ]
    assert rows(recorded, "cc")[0]["dependencies"] == ["app.model", "other"]
    assert rows(recorded, "cc")[0]["time"] == pytest.approx(1.0)


# --- in a browser ---------------------------------------------------------------------------


def _chromium():
    """A headless Chromium driven by Debian's chromedriver; fails, never skips, without it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(f"chromium or chromedriver is not on PATH: {INSTALL}", pytrace=False)
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail(f"selenium is not installed: {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        # Root in a container has no user namespace for Chromium's sandbox.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,860",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    # An explicit driver: Selenium Manager would otherwise try to download one.
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


class PanelInChromium(StaticLiveServerTestCase):
    """The toolbar as a developer sees it: loaded in a page, the panel clicked open."""

    @classmethod
    def setUpClass(cls):
        # Class cleanups run last in, first out, after tearDownClass or a failed setUpClass:
        # the live server's own (ALLOWED_HOSTS) must be undone before the settings under it.
        cls.browser = _chromium()
        cls.addClassCleanup(cls.quit_browser)
        settings = toolbar_settings.overridden()
        settings.__enter__()
        cls.addClassCleanup(settings.__exit__, None, None, None)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        # The browser before the server: it holds keep-alive connections whose server
        # threads, closed after the server, would close a database connection that is no
        # longer shared with them.
        cls.quit_browser()
        super().tearDownClass()

    @classmethod
    def quit_browser(cls):
        browser, cls.browser = cls.browser, None
        if browser is not None:
            browser.quit()

    def open_panel(self, path):
        from selenium.common.exceptions import NoSuchShadowRootException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.wait import WebDriverWait

        self.browser.get(self.live_server_url + path)
        # django-debug-toolbar >= 7 renders in a shadow DOM under #djDebugRoot (unless told
        # not to), earlier releases in the page under #djDebug.
        host = self.browser.find_elements(By.ID, "djDebugRoot") or self.browser.find_elements(
            By.ID, "djDebug"
        )
        assert host, "the toolbar is not in the page"
        try:
            root = host[0].shadow_root
        except NoSuchShadowRootException:
            root = host[0]
        wait = WebDriverWait(self.browser, timeout=10)
        button = wait.until(lambda _: root.find_element(By.CSS_SELECTOR, f"a.{PANEL_ID}"))
        wait.until(lambda _: button.is_displayed())
        nav = button.text
        button.click()
        table = wait.until(
            lambda _: root.find_element(By.CSS_SELECTOR, f"#{PANEL_ID} table.cachedcall-calls")
        )
        title = root.find_element(By.CSS_SELECTOR, f"#{PANEL_ID} h3").text
        # (function, outcome, dependencies) per row, as displayed.
        cells = [
            [td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        return nav, title, [(row[2], row[3], row[5].split()) for row in cells]

    def test_the_panel_shows_the_calls_of_the_page(self):
        self.browser.get(self.live_server_url + "/dashboard/?club=1")  # a first visit
        nav, title, calls = self.open_panel("/dashboard/?club=2&week=2")
        assert "Cached calls" in nav and "4 calls, 2 hits" in nav
        assert title == "Cached calls: 4 calls, 2 hits"
        scoped = [f"testapp.clubclass:club_id={pk_token((2,))}", "testapp.clubclass:*"]
        assert calls == [
            ("tests.toolbar_views.club_names", "hit", ["testapp.club"]),
            ("tests.toolbar_views.class_names", "miss, stored", scoped),
            ("tests.toolbar_views.class_names", "hit", scoped),
            ("tests.toolbar_views.week_label", "miss, stored", ["—"]),
        ]
        # The docs' picture is rewritten only when asked (its timings and key prefix differ
        # per run); otherwise the screenshot goes to a temporary file, still checked.
        target = (
            SCREENSHOT if os.environ.get("CACHEDCALL_SCREENSHOT") else Path(tempfile.mkdtemp()) / "panel.png"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        assert self.browser.save_screenshot(str(target))
        assert target.stat().st_size > 10_000

    def test_a_cached_view_hit_is_shown(self):
        self.browser.get(self.live_server_url + "/clubs/7/")
        nav, title, calls = self.open_panel("/clubs/7/")
        assert "1 call, 1 hit" in nav
        # The view was not run: the function it calls is not either.
        assert calls == [
            (
                "tests.toolbar_views.club_page",
                "hit",
                [f"testapp.clubclass:club_id={pk_token((7,))}", "testapp.clubclass:*"],
            )
        ]
