"""The chat page in headless Chromium (Debian's package, driven by Playwright): both generators side by side.

Skipped when Playwright's Python package or /usr/bin/chromium is absent (`make test` installs
chromium when it runs as root with apt-get). Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture
def live_url(make_app, port):
    """The app under uvicorn in a thread on a loopback port."""
    import uvicorn

    def start(run: str = "full") -> str:
        server = uvicorn.Server(uvicorn.Config(make_app(run), host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}/"

    servers: list = []
    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


def bot_replies(page, generator: str):
    return page.locator(f'.column[data-generator="{generator}"] .msg.bot:not(.pending)')


def test_chat_page_side_by_side(browser, live_url):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_url())
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_checked("#side-by-side")
    for g in ("pretrained", "adversarial"):
        assert page.locator(f'.column[data-generator="{g}"]').is_visible()

    page.fill("#message", "hello how are you")
    page.click("#send")
    for g in ("pretrained", "adversarial"):
        bot_replies(page, g).first.wait_for(timeout=15000)
        column = page.locator(f'.column[data-generator="{g}"]')
        assert column.locator(".msg.user .text").all_inner_texts() == ["hello how are you"]
        assert bot_replies(page, g).count() == 1 and bot_replies(page, g).inner_text().strip()
        assert column.locator(".msg.error").count() == 0

    # Enter sends too; the second turn goes to both generators with each one's own history
    page.fill("#message", "what about the weekend")
    page.press("#message", "Enter")
    for g in ("pretrained", "adversarial"):
        sync_api.expect(bot_replies(page, g)).to_have_count(2, timeout=15000)

    # a bad option is shown as the server's error, in each column
    page.click("#sampling summary")
    page.fill("#temperature", "-1")
    page.fill("#message", "hi")
    page.click("#send")
    for g in ("pretrained", "adversarial"):
        err = page.locator(f'.column[data-generator="{g}"] .msg.error').first
        err.wait_for(timeout=15000)
        assert "temperature" in err.inner_text()
    page.click("#reset")
    assert page.locator(".msg").count() == 0
    # while replies are on their way, "new conversation" waits (they belong to this one)
    page.fill("#temperature", "1")

    def slow(route):
        time.sleep(0.5)
        route.continue_()

    page.route("**/v1/respond", slow)
    page.fill("#message", "one more")
    page.click("#send")
    assert page.is_disabled("#reset")
    for g in ("pretrained", "adversarial"):
        bot_replies(page, g).first.wait_for(timeout=15000)
    sync_api.expect(page.locator("#reset")).to_be_enabled(timeout=15000)
    assert errors == [] or all("400" in e or "422" in e for e in errors), errors
    page.close()


def test_chat_page_without_adversarial_generator(browser, live_url):
    page = browser.new_page()
    page.goto(live_url("pretrained"))
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_disabled("#side-by-side") and not page.is_checked("#side-by-side")
    assert not page.locator('.column[data-generator="adversarial"]').is_visible()
    assert "adversarial generator is not available" in page.inner_text("#notice")
    page.fill("#message", "hello")
    page.click("#send")
    bot_replies(page, "pretrained").first.wait_for(timeout=15000)
    assert bot_replies(page, "adversarial").count() == 0
    page.close()
