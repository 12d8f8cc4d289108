"""The web page in a real browser (Debian's chromium): submit a prompt, see the image in the gallery."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from local_stack.stack import LocalStack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is missing: install it with `apt-get install -y chromium` (see README, tests)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_submit_a_prompt_and_see_the_image(stack: LocalStack, browser: Browser, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1200, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.page_url)
    # The key arrived in the fragment, was stored, and the fragment was dropped from the address bar.
    assert page.input_value("#api-key") == stack.api_key
    assert stack.api_key not in page.url
    assert page.eval_on_selector_all("#runtime option", "options => options.map(o => o.value)") == ["sdruntime"]

    # The tiny test model suggests nothing: the stack's examples.json says so, and the page shows no list.
    assert page.locator("#suggestions").is_hidden()

    page.fill("#prompt", "a watercolor fox in the snow")
    page.select_option("#size", "64")
    page.fill("#steps", "2")
    page.fill("#seed", "11")
    page.click("#submit")

    row = page.locator("#tasks tbody tr").first
    row.wait_for()
    task_id = row.get_attribute("data-task-id")
    assert task_id
    image = page.locator(f'#gallery figure[data-task-id="{task_id}"] img')
    image.wait_for(timeout=120_000)
    # Loaded for real: the browser fetched and decoded the presigned S3 URL.
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=image.element_handle())
    assert row.locator(".status").inner_text() == "completed"
    assert page.locator("#no-images").is_hidden()

    # A long task, cancelled from the list.
    page.fill("#prompt", "a very long render")
    page.select_option("#size", "256")
    page.fill("#steps", "150")
    page.click("#submit")
    page.locator("#tasks tbody tr").nth(1).wait_for()  # newest first: the long task is on top
    long_row = page.locator("#tasks tbody tr").first
    assert long_row.get_attribute("data-task-id") != task_id
    long_row.locator("button.cancel").click()
    long_row.locator(".status.cancelled").wait_for(timeout=60_000)
    assert page.locator("#gallery figure").count() == 1

    page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 10_000
    assert errors == []


def test_the_page_suggests_the_served_models_prompts(stack: LocalStack, browser: Browser):
    """What the stack writes into examples.json (the toy model's prompts, when it is served) becomes the list."""
    examples = ["a red circle on the left, on a white background", "a blue star in the centre"]
    page = browser.new_page()
    page.route("**/examples.json", lambda route: route.fulfill(json={"examples": examples}))
    page.goto(stack.page_url)
    page.locator("#suggestions button.suggestion").first.wait_for()
    assert page.locator("#suggestions button.suggestion").all_inner_texts() == examples
    assert page.input_value("#prompt") == examples[0]  # an empty prompt starts with the first suggestion
    page.locator("#suggestions button.suggestion").nth(1).click()
    assert page.input_value("#prompt") == examples[1]
