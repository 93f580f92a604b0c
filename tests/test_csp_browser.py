"""The Content-Security-Policy in a real browser: our pages keep to it, injected code is blocked."""

from __future__ import annotations

import pytest

VIOLATION_WORDS = ("Content Security Policy", "Refused to")


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
def test_the_pages_work_without_any_csp_violation(live_server, browser_page, png_pictures):
    page = browser_page
    page.goto(live_server.url + "/")
    # Bootstrap's CSS really applied (served locally, allowed by style-src 'self')
    assert page.eval_on_selector(".navbar", "e => getComputedStyle(e).display") == "flex"
    # the script path: preview (blob:), classify (fetch), thumbnail and heat map (data:)
    page.set_input_files(
        "#file", {"name": "mod0.png", "mimeType": "image/png", "buffer": png_pictures["mod0"]}
    )
    page.get_by_role("button", name="Classify").click()
    page.locator("#result .result-label").filter(has_text="mod").wait_for()
    page.get_by_role("button", name="Why? Show where the model looked").click()
    page.wait_for_function(
        "() => document.querySelector('#result .result-heatmap')?.naturalWidth > 0"
    )
    for path in ("/model", "/no/such/page"):
        page.goto(live_server.url + path)
    assert "Error 404" in page.content()
    assert violations(page) == []


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_the_plain_form_works_without_any_csp_violation(live_server, browser, png_pictures):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    lines = []
    page.on("console", lambda message: lines.append(message.text))
    try:
        page.goto(live_server.url + "/")
        page.set_input_files(
            "#file",
            {"name": "rocker0.png", "mimeType": "image/png", "buffer": png_pictures["rocker0"]},
        )
        with page.expect_navigation():
            page.get_by_role("button", name="Classify").click()
        assert "That picture belongs to rocker" in page.content()
    finally:
        context.close()
    assert [line for line in lines if any(word in line for word in VIOLATION_WORDS)] == []


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
