"""alexnet serve as a person uses it: a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the real server and a real tiny trained model. Upload an image and read the top-5, switch layers, click a
filter, open a confusion cell, hover the map, read the curves; a screenshot of each view.

Screenshots go to $ALEXNET_SCREENSHOTS when it is set (the README's docs/*.png are made so, with
ALEXNET_BROWSER_RUN naming the run to show), else to a temporary folder.
"""

import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--no-first-run"]

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("ALEXNET_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(request):
    from alexnet.serve.app import Background, create_app

    run = os.environ.get("ALEXNET_BROWSER_RUN") or str(request.getfixturevalue("trained")[1])
    background = Background(create_app([run]))
    yield background
    background.stop()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.bad = []  # requests that failed or were refused: said when an image is found broken
        page.on("requestfailed", lambda r: page.bad.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and page.bad.append(f"{r.url}: {r.status}"))
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.errors = errors
        yield page
        assert not errors, errors  # no uncaught script error during the whole session
        browser.close()


def loaded(page, selector: str) -> None:
    """Waits until every image matched by `selector` has decoded (and fails on a broken one)."""
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].length > 0 && [...document.querySelectorAll(s)].every(i => i.complete)",
        arg=selector, timeout=30_000)
    broken = page.evaluate("s => [...document.querySelectorAll(s)].filter(i => !i.naturalWidth).map(i => i.src)", selector)
    assert not broken, (broken, getattr(page, "bad", []))


def test_upload_an_image_and_read_the_top5(page, server, shots, tmp_path):
    import httpx

    info = httpx.get(server.url + "/api/runs").json()["runs"][0]
    image = tmp_path / "picked.png"
    image.write_bytes(httpx.get(f"{server.url}/api/runs/{info['id']}/image/val:0").content)
    with page.expect_response(lambda r: "/predict?" in r.url) as response:
        page.set_input_files("#file", str(image))
    answer = response.value.json()
    page.wait_for_selector("#top5 li")
    rows = page.locator("#top5 li")
    assert rows.count() == min(5, len(info["classes"]))
    for i, top in enumerate(answer["top"]):
        label, prob = rows.nth(i).locator(".label").inner_text(), rows.nth(i).locator(".prob").inner_text()
        assert label == top["label"] and prob == f"{100 * top['prob']:.1f}%"
    assert page.inner_text("#cam-label") == answer["top"][0]["label"]
    loaded(page, "#input-img, #cam-img, #neighbours img")
    assert page.locator("#neighbours .thumb").count() == len(answer["neighbours"]) > 0
    rows.nth(1).click()  # the second class's Grad-CAM
    page.wait_for_function("() => document.getElementById('cam-img').src.includes('/gradcam?')")
    loaded(page, "#cam-img")
    assert page.inner_text("#cam-label") == answer["top"][1]["label"]
    page.screenshot(path=str(shots / "serve-predict.png"), full_page=True)


def test_switch_layers(page):
    page.click("#layer-tabs button[data-layer='conv2']")
    text = page.inner_text("#layer-label")
    assert text.startswith("conv2 (Conv2d)") and re.search(r"floor\(\(\d+ \+ 2\*2 - 5\) / 1\) \+ 1 = \d+", text)
    first = page.get_attribute("#layer-img", "src")
    page.click("#layer-tabs button[data-layer='pool5']")
    assert page.inner_text("#layer-label").startswith("pool5 (MaxPool2d)")
    assert page.get_attribute("#layer-img", "src") != first
    loaded(page, "#layer-img")


def test_click_a_channel_of_a_conv_grid_to_see_its_top_images(page):
    page.click("#layer-tabs button[data-layer='conv2']")
    loaded(page, "#layer-img")
    page.locator("#layer-img").scroll_into_view_if_needed()
    box = page.locator("#layer-img").bounding_box()
    g = page.evaluate("state.prediction.activations.find(a => a.layer === 'conv2').grid")
    x = (g["pad"] + (g["cell_w"] + g["pad"]) + g["cell_w"] / 2) / g["width"] * box["width"]  # channel 1: row 0, col 1
    y = (g["pad"] + g["cell_h"] / 2) / g["height"] * box["height"]
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => document.getElementById('unit-title').textContent.startsWith('conv2, channel 1:')")
    assert page.locator("#unit-images .thumb").count() > 0
    page.click("#tabs button[data-view='predict']")


def test_a_bad_upload_shows_its_message_and_the_page_goes_on(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are notes, not a photo")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#message:not([hidden])")
    assert "notes.jpg: not an image file" in page.inner_text("#message")
    page.click("#val-go")  # the page still works: predict a validation image
    page.wait_for_selector("#message", state="hidden")
    assert page.locator("#top5 li").count() >= 2


def test_click_a_filter_to_see_its_units(page, shots):
    page.click("#tabs button[data-view='units']")
    page.wait_for_function("() => state.filters")
    g = page.evaluate("state.filters")
    loaded(page, "#filters")
    box = page.locator("#filters").bounding_box()
    natural = page.evaluate("[document.getElementById('filters').naturalWidth, document.getElementById('filters').naturalHeight]")
    x = (g["pad"] + (g["cell_w"] + g["pad"]) + g["cell_w"] / 2) * g["scale"] / natural[0] * box["width"]
    y = (g["pad"] + g["cell_h"] / 2) * g["scale"] / natural[1] * box["height"]
    with page.expect_response(lambda r: "/units?layer=conv1&channel=1" in r.url):
        page.mouse.click(box["x"] + x, box["y"] + y)  # the second filter of the first row
    page.wait_for_function("() => document.getElementById('unit-title').textContent.includes('channel 1')")
    loaded(page, "#unit-images img")
    assert page.locator("#unit-images .box").count() == page.locator("#unit-images .thumb").count() > 0
    page.select_option("#unit-layer", "conv5")
    page.wait_for_function("() => document.getElementById('unit-title').textContent.startsWith('conv5, channel 0')")
    loaded(page, "#unit-images img")
    page.screenshot(path=str(shots / "serve-units.png"), full_page=True)


def test_open_a_confusion_cell(page, shots):
    page.click("#tabs button[data-view='errors']")
    page.wait_for_selector("#confusion td")
    cell = page.locator("#confusion td").filter(has_not_text=re.compile(r"^0$")).first
    expected = int(cell.inner_text())
    cell.click()
    page.wait_for_selector("#cell-images .card")
    assert page.locator("#cell-images .card").count() == min(expected, 60)
    assert f"{expected} image(s)" in page.inner_text("#cell-title")
    loaded(page, "#cell-images .card:nth-child(-n+3) img")  # the others load lazily, as they scroll into view
    page.screenshot(path=str(shots / "serve-errors.png"), full_page=True)


def test_hover_the_map(page, shots):
    page.click("#tabs button[data-view='map']")
    page.wait_for_function("() => window.alexnetMap && window.alexnetMap.screen.length > 0")
    x, y = page.evaluate("window.alexnetMap.screen[0]")
    box = page.locator("#map-canvas").bounding_box()
    page.mouse.move(box["x"] + x * box["width"] / 640, box["y"] + y * box["height"] / 640)
    page.wait_for_selector("#map-tip:not([hidden])")
    shown = page.get_attribute("#map-tip", "data-image")
    assert re.fullmatch(r"val:\d+", shown) and page.inner_text("#map-tip").startswith(shown)
    loaded(page, "#map-tip img")
    page.screenshot(path=str(shots / "serve-map.png"), full_page=True)
    page.select_option("#map-method", "tsne")
    page.wait_for_function("() => window.alexnetMap.method === 'tsne'")
    page.mouse.move(box["x"] + 1, box["y"] + 1)
    page.wait_for_selector("#map-tip", state="hidden")


def test_training_curves_and_config(page, shots):
    page.click("#tabs button[data-view='training']")
    page.wait_for_selector("#curves svg")
    assert page.locator("#curves svg").count() == 2 and page.locator("#curves circle").count() > 0
    assert "model:" in page.inner_text("#config")
    page.screenshot(path=str(shots / "serve-training.png"), full_page=True)


def test_the_page_works_with_its_token_and_refuses_without(page, server):
    """A server for another host: the URL it prints (?token=...) opens the page, whose images and requests carry the
    token from then on; the same page without the token gets the JSON refusal."""
    from alexnet.serve.app import Background, create_app

    opened = [served.run for served in server.app.state.runs.values()]
    guarded = Background(create_app(opened, token="browser-token-0123456789"))
    try:
        visitor = page.context.browser.new_context()  # a new visitor: no cookies
        tab = visitor.new_page()
        refused = tab.goto(guarded.url + "/")
        assert refused.status == 401 and "token" in refused.json()["error"]
        tab.goto(guarded.url + "/?token=browser-token-0123456789")
        tab.wait_for_selector("body[data-ready='1']")
        tab.click("#val-go")
        tab.wait_for_selector("#top5 li")
        loaded(tab, "#input-img, #neighbours img")  # plain <img> requests: the cookie carries the token
        visitor.close()
    finally:
        guarded.stop()


def test_the_report_opens_offline_with_every_image_and_its_sections(page, server, shots, tmp_path):
    """`alexnet report`'s file, opened from disk in the browser: it asks the network for nothing, every inlined
    image decodes, and its sections are there (the README's report screenshot is this page)."""
    from alexnet.inspect.report import write_report

    run = next(iter(server.app.state.runs.values())).run
    path = write_report(run.ckpt.run_dir, tmp_path / "report.html", progress=False)
    tab = page.context.new_page()
    requests: list[str] = []
    tab.on("request", lambda r: r.url.startswith("file:") or requests.append(r.url))
    tab.goto(path.as_uri())
    loaded(tab, "img")
    text = tab.inner_text("body")
    for heading in ("conv1", "confusion", "config"):
        assert heading in text.lower(), heading
    assert requests == []
    tab.screenshot(path=str(shots / "report.png"), full_page=True)
    tab.close()
