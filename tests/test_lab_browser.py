"""The lab in a real browser (Debian's Chromium, driven by Playwright) over small real runs, as
a user uses it: the run list and curves render; clicking an activation draws its receptive
field at the right pixels; the arrow keys shift conv1's maps; an uploaded and a drawn image get
`cnnlab predict`'s predictions; Start and Stop train and interrupt a run, whose curve grows
meanwhile, and Resume finishes it. Every page asks 127.0.0.1 alone and logs no error. The
screenshots in docs/lab-*.png are taken here: `CNNLAB_SCREENSHOTS=docs bash scripts/test.sh
tests/test_lab_browser.py` refreshes them (other runs write them to a temporary folder)."""

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from cnnlab.analysis import layer_outputs, receptive_field_box, summary, translate
from cnnlab.analysis.pictures import unit_scale
from cnnlab.files import atomic_write
from cnnlab.training import load_trained
from cnnlab.training.rundir import holds_run, is_finished, read_metrics
from cnnlab.training.trained import load_split
from lab_helpers import cnnlab_predict, png_bytes, start_lab, stop_lab, train_run

pytestmark = pytest.mark.xdist_group("lab-browser")  # one browser and one lab per run
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("CNNLAB_SCREENSHOTS",
                           Path(tempfile.gettempdir()) / "cnnlab-lab-screenshots"))
TIMEOUT_MS = 120_000  # for a loaded machine: a run from the page loads its data and tests
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab (a subprocess on a free port) over a cnn and a linear run on Fashion-MNIST,
    and a headless Chromium."""
    runs_dir = tmp_path_factory.mktemp("lab") / "runs"
    train_run(runs_dir, "cnn")
    train_run(runs_dir, "linear", model="linear")
    process, url = start_lab(runs_dir)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield SimpleNamespace(url=url, runs_dir=runs_dir, browser=browser)
            browser.close()
    finally:
        assert stop_lab(process) == 0


@pytest.fixture
def page(lab):
    """A fresh page on the lab; afterwards, it must have asked nothing but the lab and logged
    no error."""
    context = lab.browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors, elsewhere = [], []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: request.url.startswith((lab.url, "data:", "blob:"))
            or elsewhere.append(request.url))
    page.goto(lab.url)
    page.wait_for_selector("body[data-ready]")
    yield page
    context.close()
    assert not errors, errors
    assert not elsewhere, elsewhere


def open_run(page, name):
    page.click(f'#runs-table tr[data-name="{name}"] td[data-key="name"]')
    expect(page.locator("#model-title")).to_have_text(name)
    page.wait_for_selector("#activations .layer canvas")


def canvas_pixels(page, selector) -> np.ndarray:
    """The canvas's pixels as it holds them, (H, W, 4) uint8."""
    width, height, data = page.eval_on_selector(selector, """canvas => {
        const image = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
        return [canvas.width, canvas.height, Array.from(image.data)];
    }""")
    return np.array(data, dtype=np.uint8).reshape(height, width, 4)


def screenshot(page, name, *selectors, height=None):
    """SHOTS/lab-NAME.png: the elements (the box around them), or its first `height` pixels."""
    page.evaluate("window.scrollTo(0, 0)")  # so the boxes are in page coordinates
    boxes = [page.locator(selector).bounding_box() for selector in selectors]
    left, top = min(box["x"] for box in boxes), min(box["y"] for box in boxes)
    right = max(box["x"] + box["width"] for box in boxes)
    bottom = max(box["y"] + box["height"] for box in boxes)
    clip = {"x": left, "y": top, "width": right - left,
            "height": min(bottom - top, height or bottom - top)}
    atomic_write(SHOTS / f"lab-{name}.png", page.screenshot(clip=clip, full_page=True))


def conv1_map(run_dir, index, shift, channel=0) -> np.ndarray:
    """conv1's map `channel` for test image `index` shifted by `shift`, as the page is sent
    it: the library's output, rescaled to 0..255."""
    trained = load_trained(run_dir)
    pixels = load_split(trained.metadata, "fashion-mnist").images[index]
    shifted = translate(pixels, shift)[None]
    output = layer_outputs(trained.model, trained.inputs.transform(shifted))[0][1][0]
    return np.rint(unit_scale(output, axes=(1, 2))[channel] * 255).astype(np.uint8), output


# ----- the runs and their curves ----------------------------------------------------------
def test_the_run_list_and_curves_render(lab, page):
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(2)
    runs = {run["name"]: run for run in page.request.get(lab.url + "api/runs").json()}
    for name, run in runs.items():
        row = page.locator(f'#runs-table tr[data-name="{name}"]')
        expect(row.locator('td[data-key="status"]')).to_have_text("finished")
        expect(row.locator('td[data-key="test_accuracy"]')).to_have_text(
            f"{run['test_accuracy']:.4f}")
    for name in ("cnn", "linear"):
        page.check(f'#runs-table tr[data-name="{name}"] input[type="checkbox"]')
    expect(page.locator("#chart-legend span")).to_have_count(2)
    expected = 0
    for name in ("cnn", "linear"):
        curves = page.request.get(f"{lab.url}api/runs/{name}/curves").json()
        expected += len(curves["points"]) + 2 * len(curves["epochs"])
    expect(page.locator("#loss-chart")).to_have_attribute("data-points", str(expected))
    expect(page.locator("#accuracy-chart")).to_have_attribute("data-points", str(expected))
    page.click('#runs-table th[data-key="test_accuracy"]')  # sorted, ascending
    order = [row.get_attribute("data-name") for row in rows.all()]
    assert order == sorted(runs, key=lambda name: runs[name]["test_accuracy"])
    expect(page.locator("#first-layer-grid canvas")).to_have_count(32)  # the cnn's filters
    screenshot(page, "runs", "#runs-view", "#training-view")
    ready = page.evaluate("performance.getEntriesByName('cnnlab-ready')[0].startTime")
    print(f"\npage usable after {ready:.0f} ms")


# ----- inside the model -------------------------------------------------------------------
def test_clicking_an_activation_draws_its_receptive_field_and_arrows_shift_conv1(lab, page):
    open_run(page, "cnn")
    expect(page.locator("#input-caption")).to_contain_text("test image 0")
    run_dir = lab.runs_dir / "cnn"
    records = {record.name: record for record in summary(load_trained(run_dir).model,
                                                         (1, 28, 28))}
    canvas = page.locator('#activations [data-layer="conv2"] canvas[data-channel="5"]')
    box = canvas.bounding_box()
    row, col = 3, 4
    canvas.click(position={"x": (col + 0.5) * box["width"] / 14,
                           "y": (row + 0.5) * box["height"] / 14})
    expect(page.locator("#field-overlay")).to_have_attribute("data-box", "3,5,10,12")
    overlay = canvas_pixels(page, "#field-overlay")
    scale = overlay.shape[0] // 28
    drawn = np.argwhere(overlay[..., 3] > 0)
    top, left, bottom, right = receptive_field_box(records["conv2"], (row, col), (28, 28))
    assert drawn.min(axis=0).tolist() == [top * scale, left * scale]
    assert drawn.max(axis=0).tolist() == [(bottom + 1) * scale - 1, (right + 1) * scale - 1]
    expect(page.locator("#field-caption")).to_contain_text("receptive field 8, jump 2")

    conv1 = '#activations [data-layer="conv1"] canvas[data-channel="0"]'
    before = canvas_pixels(page, conv1)[..., 0]
    page.keyboard.press("ArrowRight")
    expect(page.locator("#input-caption")).to_contain_text("shifted by (0, 1)")
    after = canvas_pixels(page, conv1)[..., 0]
    shown_before, output_before = conv1_map(run_dir, 0, (0, 0))
    shown_after, output_after = conv1_map(run_dir, 0, (0, 1))
    assert np.array_equal(before, shown_before) and np.array_equal(after, shown_after)
    # the map moved one column right with the input: inside, shifted outputs are the outputs
    np.testing.assert_allclose(output_after[:, 1:-1, 3:-1], output_before[:, 1:-1, 2:-2],
                               rtol=1e-5, atol=1e-5)
    assert np.corrcoef(after[1:-1, 3:-1].ravel(), before[1:-1, 2:-2].ravel())[0, 1] > 0.99
    summary_row = page.locator("#summary-table tbody tr", has_text="conv1")
    expect(summary_row.locator("td").last).to_have_text("0.0000")
    screenshot(page, "model", "#model-view", height=1000)


def sent_and_shown(lab, page, act) -> tuple[bytes, list[dict]]:
    """The image file the page sends for inspection when `act` runs, and the predictions it
    then shows, which must be the lab's answer for that file, shown in its order."""
    with page.expect_request(lambda request: "/inspect" in request.url) as sent:
        act()
    body = sent.value.post_data_buffer
    answer = page.request.post(f"{lab.url}api/runs/cnn/predict", data=body).json()
    shown = [f"{item['class']} {item['probability']:.3f}" for item in answer["predictions"]]
    expect(page.locator("#predictions li")).to_have_text(shown)
    return body, answer["predictions"]


def test_an_uploaded_and_a_drawn_image_get_cnnlab_predicts_predictions(lab, page, tmp_path):
    open_run(page, "cnn")
    run_dir = lab.runs_dir / "cnn"
    photo = tmp_path / "photo.png"  # colour, another size: converted as predict converts it
    pixels = load_split(load_trained(run_dir).metadata, "fashion-mnist").images[3, 0]
    photo.write_bytes(png_bytes(np.repeat(np.kron(pixels, np.ones((2, 2)))[..., None], 3, 2)))
    page.click('[data-tab="upload"]')
    body, predictions = sent_and_shown(
        lab, page, lambda: page.set_input_files("#upload-input", str(photo)))
    assert body == photo.read_bytes()
    assert predictions == cnnlab_predict(run_dir, photo)

    page.click('[data-tab="draw"]')
    box = page.locator("#draw-canvas").bounding_box()

    def draw():
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.2 * box["height"])
        page.mouse.down()
        for step in range(1, 9):
            page.mouse.move(box["x"] + (0.3 + 0.05 * step) * box["width"],
                            box["y"] + (0.2 + 0.08 * step) * box["height"])
        page.mouse.up()

    body, predictions = sent_and_shown(lab, page, draw)
    drawing = tmp_path / "drawing.png"
    drawing.write_bytes(body)
    assert predictions == cnnlab_predict(run_dir, drawing)
    with Image.open(drawing) as image:
        grey = np.asarray(image.convert("L"))
    assert grey.shape == (28, 28) and grey.max() == 255 and (grey == 0).mean() > 0.5


# ----- training from the page -------------------------------------------------------------
def test_start_and_stop_train_and_interrupt_a_run_that_resume_finishes(lab, page):
    form = page.locator("#train-form")
    form.locator('select[name="model"]').select_option("cnn")
    form.locator('input[name="epochs"]').fill("3")
    form.locator('input[name="limit_train"]').fill("1000")
    form.locator('input[name="name"]').fill("live")
    page.click("#start-button")
    row = page.locator('#runs-table tr[data-name="live"]')
    expect(row).to_have_attribute("data-status", "training")
    expect(page.locator("#training-title")).to_have_text("live")  # opened as it appeared
    chart = page.locator("#loss-chart")
    page.wait_for_function("document.querySelector('#loss-chart').dataset.newest")
    first_count = int(chart.get_attribute("data-points"))
    newest = chart.get_attribute("data-newest")
    latency = page.wait_for_function("""(old) => {
        const chart = document.querySelector("#loss-chart");
        const newest = chart.dataset.newest;
        return newest !== old && Date.now() / 1000 - Number(newest);
    }""", arg=newest, polling="raf").json_value()
    assert int(chart.get_attribute("data-points")) > first_count  # the curve grew
    print(f"\na new point reached the page {1000 * latency:.0f} ms after it was written")
    screenshot(page, "training", "#training-view")

    page.click("#stop-button")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "stopped")
    expect(row).to_have_attribute("data-status", "stopped")
    run_dir = lab.runs_dir / "live"
    assert holds_run(run_dir) and not is_finished(run_dir)
    assert "interrupted" in page.locator("#train-log").inner_text()
    stopped_at = len(read_metrics(run_dir))
    assert stopped_at < 3

    page.click("#resume-button")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "finished")
    expect(row).to_have_attribute("data-status", "finished")
    assert "resuming" in page.locator("#train-log").inner_text()
    assert [record["epoch"] for record in read_metrics(run_dir)] == [1, 2, 3]
    assert is_finished(run_dir)
