"""The page at / in a real browser: Debian's chromium, driven by Playwright, against a real server.

Uploads a real CIFAR-10 image and a real FSDD clip and checks that the page shows the top-1
class the API returns for that file and the Grad-CAM overlay; a bad file shows the API's
error. Screenshots go to the test's tmp dir (docs/img/serve-page.png is one of them).
Without chromium or Playwright the test skips, and fails where RESNETKIT_REQUIRE_DATA=1
(CI, whose .ci/run installs chromium).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from resnetkit.engine import load_run  # noqa: E402
from resnetkit.serve import BackgroundServer, ServeConfig, create_app  # noqa: E402

# Without the background-networking flags chromium keeps dialling out, and on a closed
# network those connections are refused many at a time.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(reason: str) -> None:
    if os.environ.get("RESNETKIT_REQUIRE_DATA") == "1":
        pytest.fail(f"{reason} (RESNETKIT_REQUIRE_DATA=1: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    executable = os.environ.get("RESNETKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        _missing(f"no chromium at {executable} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _upload(page, url: str, path: Path) -> None:
    page.goto(url)
    # "N classes", or "N labels" for a multi-label model
    page.wait_for_function("/ (classes|labels)/.test(document.getElementById('model-info').textContent)")
    page.set_input_files("#file", str(path))


def _check_page(browser, run_dir: Path, file: Path, screenshot: Path) -> str:
    loaded = load_run(run_dir)
    with BackgroundServer(create_app(loaded, ServeConfig())) as server:
        expected = httpx.post(f"{server.url}/v1/predict", content=file.read_bytes(), timeout=60).json()["top_k"]
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            _upload(page, server.url, file)
            page.wait_for_selector("#bars li", timeout=60_000)
            assert page.get_attribute("#bars", "data-top1") == expected[0]["class"]
            assert page.inner_text("#bars li:first-child .name") == expected[0]["class"]
            assert page.locator("#bars li").count() == len(expected)
            # The overlay is the explain PNG, loaded and decoded.
            page.wait_for_function("document.getElementById('overlay').complete && "
                                   "document.getElementById('overlay').naturalWidth > 500", timeout=120_000)
            assert page.is_visible("#overlay") and not page.is_visible("#error")
            if file.suffix == ".wav":  # the clip as a spectrogram drawn by the page (Web Audio decodes it)
                page.wait_for_selector("#spectrogram", state="visible", timeout=30_000)
                assert not page.is_visible("#preview")
            else:
                assert page.is_visible("#preview") and not page.is_visible("#spectrogram")
            page.screenshot(path=str(screenshot), full_page=True)

            # A file that is no image: the API's 415 message, shown as text.
            bad = screenshot.with_name("notes.txt")
            bad.write_text("these are notes, not a picture")
            page.set_input_files("#file", str(bad))
            page.wait_for_selector("#error:not([hidden])", timeout=30_000)
            message = page.inner_text("#error")
            assert "415" in message and "not an image or audio" in message
        finally:
            page.close()
    return expected[0]["class"]


@pytest.mark.slow
def test_page_shows_top1_and_overlay_for_a_cifar_image(browser, image_run, data_path, tmp_path):
    image = sorted(data_path("cifar10/train/ship").glob("*.jpg"))[400]
    _check_page(browser, image_run, image, tmp_path / "page-image.png")
    assert (tmp_path / "page-image.png").stat().st_size > 20_000


@pytest.mark.slow
def test_page_shows_top1_spectrogram_and_overlay_for_an_fsdd_clip(browser, audio_run, fsdd_recordings, tmp_path):
    clip = fsdd_recordings / "3_jackson_4.wav"
    _check_page(browser, audio_run, clip, tmp_path / "page-audio.png")


@pytest.mark.slow
def test_page_shows_the_labels_of_a_multilabel_model(browser, multilabel_run, cifar_mosaics, tmp_path):
    image = cifar_mosaics.parent / "mosaic0003.png"
    loaded = load_run(multilabel_run)
    with BackgroundServer(create_app(loaded, ServeConfig())) as server:
        expected = httpx.post(f"{server.url}/v1/predict", content=image.read_bytes(), timeout=60).json()
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        try:
            _upload(page, server.url, image)
            assert "multi-label classification, 4 labels" in page.inner_text("#model-info")
            page.wait_for_selector("#labels:not([hidden])", timeout=60_000)
            assert page.get_attribute("#labels", "data-labels") == ",".join(expected["labels"])
            assert page.locator("#bars li").count() == len(expected["top_k"])
            page.wait_for_function("document.getElementById('overlay').complete && "
                                   "document.getElementById('overlay').naturalWidth > 500", timeout=120_000)
            page.screenshot(path=str(tmp_path / "page-multilabel.png"), full_page=True)
        finally:
            page.close()
    assert (tmp_path / "page-multilabel.png").stat().st_size > 20_000
