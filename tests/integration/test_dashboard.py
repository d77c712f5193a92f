"""The web dashboard in a real headless Chromium against a running sim pool."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from agentq.sessions.tmux import TmuxDriver
from tests.support.api import ApiDaemon, sim_config
from tests.support.daemon import drop
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
#: Records every state a task row showed, so a test sees transitions without racing them.
RECORD_STATES = """
window.__states = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll('#tasks tr[data-task]')) {
    const key = row.dataset.task, state = row.querySelector('.state').textContent;
    const seen = (window.__states[key] = window.__states[key] || []);
    if (seen[seen.length - 1] !== state) seen.push(state);
  }
}).observe(document.querySelector('#tasks tbody'), {childList: true, subtree: true});
window.__loaded_once = true;
"""


@pytest.fixture
def pool(tmp_path: Path, socket_name: str) -> Iterator[ApiDaemon]:
    """A sim pool of two sessions serving the dashboard."""
    daemon = ApiDaemon(tmp_path, sim_config(tmp_path, socket_name))
    try:
        yield daemon.start()
    finally:
        daemon.close()
        TmuxDriver(socket_name).kill_server()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _states(page: Page, key: str) -> list[str]:
    return list(page.evaluate(f"(window.__states || {{}})[{key!r}] || []"))


def _screenshot(page: Page, name: str) -> None:
    if os.environ.get("AGENTQ_WRITE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / name), full_page=True)


def test_dashboard_shows_the_pool_live_and_retries_with_the_token(
    pool: ApiDaemon, browser: BrowserContext
) -> None:
    """Projects and sessions shown; pending → done live; a failure's reason; retry (token)."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(pool.url + "/")
    page.wait_for_selector('#projects tr[data-project="proj00"]')
    page.wait_for_selector('#projects tr[data-project="proj01"]')
    page.wait_for_selector('#sessions tr[data-session="aq-0"]')
    page.wait_for_selector('#sessions tr[data-session="aq-1"]')
    page.wait_for_selector("#conn.on")
    page.evaluate(RECORD_STATES)

    name = f"live-{uuid.uuid4().hex[:6]}.md"
    drop(pool.projects[0], name, "sim: work 2s", title="A live task")
    key = f"proj00/{name}"
    wait_until(lambda: _states(page, key)[-1:] == ["done"], 60, message="never shown done")
    states = _states(page, key)
    assert states[0] == "pending" and "working" in states, states
    assert page.evaluate("window.__loaded_once === true")  # the page was never reloaded

    drop(pool.projects[1], "broken.md", "sim: fail")
    reason = page.wait_for_selector('#failed li[data-task="proj01/broken.md"] .reason')
    assert reason is not None and "agent error" in reason.text_content()
    assert page.query_selector("button.retry") is None  # no buttons without the token

    page.fill("#token", pool.token)
    page.click("#unlock")
    page.wait_for_selector('#failed li[data-task="proj01/broken.md"] button.retry')
    _screenshot(page, "dashboard.png")
    page.click('#failed li[data-task="proj01/broken.md"] button.retry')
    page.wait_for_selector("#notice:has-text('pending again')")
    wait_until(
        lambda: {"pending", "working"} & set(_states(page, "proj01/broken.md")),
        30,
        message="the retried task never showed as pending or working",
    )
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_dashboard_fits_a_phone(pool: ApiDaemon, browser: BrowserContext) -> None:
    """At 390 px wide the page needs no sideways scrolling and shows every section."""
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(pool.url + "/")
    page.wait_for_selector('#sessions tr[data-session="aq-1"]')
    drop(pool.projects[0], "phone.md", "sim: work 0.2s", title="Seen on a phone")
    page.wait_for_selector('#tasks tr[data-task="proj00/phone.md"]')
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    for section in ("#projects-card", "#sessions-card", "#accounts-card", "#events-card"):
        assert page.is_visible(section)
    _screenshot(page, "dashboard-phone.png")
