"""The Content-Security-Policy in a real browser: our pages keep to it, injected code is blocked."""

from __future__ import annotations

import pytest

VIOLATION_WORDS = ("Content Security Policy", "Refused to")


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(browser):
    """A fresh page (own cookies) with its console recorded."""
    context = browser.new_context()
    page = context.new_page()
    page.console_lines = []
    page.on("console", lambda message: page.console_lines.append(message.text))
    page.on("pageerror", lambda error: page.console_lines.append(str(error)))
    yield page
    context.close()


def violations(page) -> list[str]:
    """The console lines in which the browser reports a CSP violation."""
    return [line for line in page.console_lines if any(w in line for w in VIOLATION_WORDS)]


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_pages_load_and_work_without_any_csp_violation(live_server, browser_page, tmp_path,
                                                           png_pictures):
    page = browser_page
    page.goto(live_server.url + "/")
    # Bootstrap's CSS really applied (served locally, allowed by style-src 'self')
    assert page.eval_on_selector(".navbar", "e => getComputedStyle(e).display") == "flex"
    photo = tmp_path / "mod0.png"
    photo.write_bytes(png_pictures["mod0"])
    page.set_input_files("input[type=file]", str(photo))
    with page.expect_navigation():
        page.click("input[type=submit], button[type=submit]")
    assert "That picture belongs to mod" in page.content()
    page.goto(live_server.url + "/no/such/page")
    assert "Error 404" in page.content()
    assert violations(page) == []


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_injected_inline_script_style_and_foreign_image_are_blocked(live_server, browser_page):
    page = browser_page
    page.goto(live_server.url + "/")
    page.evaluate("""() => {
        document.body.insertAdjacentHTML('beforeend',
            '<img id="foreign" src="https://evil.example/track.gif">' +
            '<div style="color: red">styled</div>');
        const script = document.createElement('script');
        script.textContent = 'window.injected = true';
        document.body.appendChild(script);
    }""")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.injected") is None
    reported = " ".join(violations(page))
    assert "script-src" in reported and "style-src" in reported and "img-src" in reported
