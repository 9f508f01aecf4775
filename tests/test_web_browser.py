"""The page in a real browser: Debian's Chromium driven by Playwright, against the app on loopback.

Skipped where /usr/bin/chromium (``apt-get install chromium``) or the playwright package is missing.
Screenshots go to test-artifacts/web.png (a laptop) and test-artifacts/web-phone.png (a phone).
The first model is a seed-cnn trained for two epochs on the small synthetic store; set
GENRIFY_WEB_TEST_MODEL to a model file to show that one instead (docs/web.png was taken with a
10-genre model that way).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("fastapi")

from helpers import REAL, REPO, real_clips, running_server, untrained_model
from test_web import trained_model_file

from genrify import predict
from genrify.web import ModelEntry, create_app

ARTIFACTS = REPO / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync", "--mute-audio"]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def models(request, tmp_path_factory) -> tuple[ModelEntry, ModelEntry]:
    given = os.environ.get("GENRIFY_WEB_TEST_MODEL")
    if given:
        path = Path(given)
        description = "a model file named by GENRIFY_WEB_TEST_MODEL"
    else:
        store = request.getfixturevalue("small_store")
        path = trained_model_file(store, tmp_path_factory.mktemp("browser-model") / "synthetic-3.safetensors")
        description = "seed-cnn, two epochs on synthetic songs"
    first = ModelEntry.from_file(path, description=description)
    other = ModelEntry.from_model("untrained", untrained_model(first.model.genres, seed=2),
                                  description="freshly initialised, for comparison")
    return first, other


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """A real clip (a synthetic mp3 where ../shared is absent) and a synthetic song as wav."""
    from genrify.synth import synthesize_song

    root = tmp_path_factory.mktemp("browser-clips")
    synthetic = root / "synthetic metal.wav"
    sf.write(synthetic, synthesize_song("metal", 20.0, seed=5), 22050)
    real = [p for p in real_clips() if p.parent.name == "genre-samples"] or real_clips()
    preferred = [p for p in real if p.stem == "heavy_metal"]
    if preferred or real:
        first = (preferred or real)[0]
    else:  # no real clips here ({REAL} is absent): a synthetic mp3 in its place
        first = root / "stand-in.mp3"
        sf.write(first, synthesize_song("hiphop", 12.0, seed=6), 22050, format="MP3")
    assert first.exists(), REAL
    return first, synthetic


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def test_the_page_classifies_songs_compares_models_and_shows_errors(browser, models, clips, tmp_path):
    first, other = models
    trained, name = first.model, first.name
    real, synthetic = clips
    expected = predict.classify(synthetic, trained)
    expected_other = predict.classify(synthetic, other.model)
    app = create_app([first, other])
    ARTIFACTS.mkdir(exist_ok=True)
    with running_server(app) as (url, _port):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 422" not in m.text else None)
        local = (url, "data:", "blob:")
        page.on("request", lambda r: None if r.url.startswith(local) else problems.append(f"external request {r.url}"))
        page.goto(url)  # the page's strict content security policy stays on: functions, not strings, below
        page.wait_for_function("() => document.querySelectorAll('#model-select option').length === 2")
        assert "Training accuracy" in page.inner_text("#model-info")
        assert name in page.inner_text("#model-info")

        # Two songs at once: classified one after the other; the last stays on screen.
        page.set_input_files("#file-input", [str(real), str(synthetic)])
        page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 2")
        page.wait_for_selector("#bars .bar-row")
        assert page.inner_text("#song-title") == synthetic.name
        assert page.inner_text("#top-genre") == expected.genre
        bars = page.query_selector_all("#bars .bar-row")
        assert len(bars) == min(10, len(trained.genres)) and bars[0].get_attribute("data-genre") == expected.genre
        segments = page.query_selector_all("#timeline .segment")
        assert len(segments) == expected.segments
        assert [s.get_attribute("data-genre") for s in segments] == [
            trained.genres[i] for i in expected.segment_probabilities.argmax(axis=1)]
        assert page.eval_on_selector("#spectrogram", "img => img.complete && img.naturalWidth > 0 && !img.hidden")
        assert page.is_hidden("#error")
        assert page.inner_text("#status") == "Done: 2 of 2 songs classified."

        # A segment seeks the player; the keyboard moves between segments.
        third = segments[2]
        start = float(third.get_attribute("data-start"))
        third.click()
        page.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {start}) < 0.5")
        page.wait_for_selector("#playhead:not([hidden])")
        page.evaluate("document.getElementById('player').pause()")
        segments[0].focus()
        page.keyboard.press("End")
        assert page.evaluate("document.activeElement.dataset.start") == segments[-1].get_attribute("data-start")
        assert page.inner_text("#segment-info").startswith(("0:", "1:"))
        page.evaluate("document.activeElement.blur()")
        page.evaluate("document.getElementById('player').currentTime = 4.2")
        page.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)

        # Switch model: the song on screen is classified again with it, for comparison.
        page.select_option("#model-select", "untrained")
        page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 3")
        page.wait_for_function("() => document.getElementById('result-model').textContent.includes('untrained')")
        assert page.inner_text("#top-genre") == expected_other.genre
        page.select_option("#model-select", name)  # answered from this session's results
        page.wait_for_function(f"() => document.getElementById('top-genre').textContent === {expected.genre!r}")
        assert len(page.query_selector_all("#results tbody tr")) == 3

        # Downloads are made in the page.
        with page.expect_download() as download:
            page.click("#download-csv")
        csv = Path(download.value.path()).read_text().splitlines()
        assert len(csv) == 4 and csv[0].startswith("song,model,genre,confidence")
        assert csv[2].startswith(f"{synthetic.name},{name},{expected.genre},")
        with page.expect_download() as download:
            page.click("#download-json")
        assert '"spectrogram_png"' not in Path(download.value.path()).read_text()

        # What the API refuses is shown clearly.
        junk = tmp_path / "not a song.mp3"
        junk.write_text("just some text, no music here\n" * 50)
        page.set_input_files("#file-input", str(junk))
        page.wait_for_selector("#error:not([hidden])")
        assert "not a song.mp3: could not be read as audio" in page.inner_text("#error")
        assert "failed" in page.inner_text("#results tbody tr:last-child")
        page.close()

        # A phone.
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
        phone.set_default_timeout(TIMEOUT_MS)
        phone.on("pageerror", lambda exc: problems.append(f"phone page error: {exc}"))
        phone.goto(url)
        phone.wait_for_function("() => document.querySelectorAll('#model-select option').length === 2")
        phone.set_input_files("#file-input", str(synthetic))
        phone.wait_for_selector("#timeline .segment")
        assert phone.inner_text("#top-genre") == expected.genre
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        phone.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
        phone.close()
    assert problems == []
