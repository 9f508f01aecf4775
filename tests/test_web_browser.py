"""The page in a real browser: Debian's Chromium driven by Playwright, against the app on loopback.

Skipped where /usr/bin/chromium (``apt-get install chromium``) or the playwright package is missing.
Screenshots go to test-artifacts/: web.png (a laptop) and web-phone.png (a phone) of the full walk;
first-visit.png (the page before any song), first-card.png (the built-in model's card, opened),
first-result.png (an example recording, clicked, with the built-in model), first-error.png (a file
that is not audio) and first-phone.png of a first visit.
In the full walk the first model is a seed-cnn trained for two epochs on the small synthetic store;
set GENRIFY_WEB_TEST_MODEL to a model file to show that one instead. docs/web.png is
first-result.png and docs/web-phone.png first-phone.png.
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
from helpers import trained_model_file

from genrify.classify import predict
from genrify.web import ModelEntry, create_app
from genrify.web.samples import EXAMPLES_DIR

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
    from genrify.audio.synth import synthesize_song

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


#: A phone's screen, for the page's narrow layout.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def _open_page(browser, url: str, problems: list[str] | None = None, **device):
    """A page on ``url`` (desktop-sized, or as ``device`` says: :data:`PHONE`) with its two models
    listed, and the list of problems it reports (``problems``, or a new one): script errors,
    console errors other than the expected 422s, and requests that leave the server (the page must
    work offline)."""
    page = browser.new_page(**(device or {"viewport": {"width": 1280, "height": 900}}))
    page.set_default_timeout(TIMEOUT_MS)
    problems = [] if problems is None else problems
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 422" not in m.text else None)
    local = (url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else problems.append(f"external request {r.url}"))
    page.goto(url)  # the page's strict content security policy stays on: functions, not strings, below
    page.wait_for_function("() => document.querySelectorAll('#model-select option').length === 2")
    return page, problems


def test_the_page_classifies_songs_compares_models_and_shows_errors(browser, models, clips, tmp_path):
    first, other = models
    trained, name = first.model, first.name
    real, synthetic = clips
    expected = predict.classify(synthetic, trained)
    expected_other = predict.classify(synthetic, other.model)
    app = create_app([first, other])
    ARTIFACTS.mkdir(exist_ok=True)
    with running_server(app) as (url, _port):
        page, problems = _open_page(browser, url)
        card = page.inner_text("#model-info")
        assert name in card and "seed-cnn network" in card and "unknown" not in card and "not recorded" not in card

        # Two songs at once: classified one after the other; the last stays on screen.
        page.set_input_files("#file-input", [str(real), str(synthetic)])
        page.wait_for_function("() => document.querySelectorAll('#results tbody tr').length === 2")
        page.wait_for_selector("#bars .bar-row")
        assert page.inner_text("#song-title") == synthetic.name
        assert page.inner_text("#top-genre") == expected.genre
        def unsure_said(answer) -> str:  # as the CLI's table says why an answer is unsure
            return f" · unsure ({answer.unsure_reason})" if answer.low_confidence else ""

        assert page.inner_text("#top-confidence").endswith(f"%{unsure_said(expected)}")
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
        assert expected_other.low_confidence  # the untrained model is unsure: the page says so, and why
        assert page.inner_text("#top-confidence").endswith(f"%{unsure_said(expected_other)}")
        assert page.inner_text("#results tbody tr:last-child td:nth-child(3)") == f"{expected_other.genre} ?"
        page.select_option("#model-select", name)  # answered from this session's results
        page.wait_for_function(f"() => document.getElementById('top-genre').textContent === {expected.genre!r}")
        assert len(page.query_selector_all("#results tbody tr")) == 3

        # Downloads are made in the page.
        with page.expect_download() as download:
            page.click("#download-csv")
        csv = Path(download.value.path()).read_text().splitlines()
        assert len(csv) == 4 and csv[0].startswith("song,model,genre,confidence,unsure_reason,")
        assert csv[2].startswith(f"{synthetic.name},{name},{expected.genre},")
        assert csv[3].split(",")[4] == expected_other.unsure_reason
        with page.expect_download() as download:
            page.click("#download-json")
        assert '"spectrogram_png"' not in Path(download.value.path()).read_text()

        # A long song is answered from a few segments spread over it: the parts not heard are drawn
        # hatched, and the legend says what they are.
        from genrify.audio.synth import synthesize_song

        long_song = tmp_path / "long song.wav"
        sf.write(long_song, synthesize_song("metal", 75.0, seed=7), 22050)
        page.set_input_files("#file-input", str(long_song))
        page.wait_for_function(f"() => document.getElementById('song-title').textContent === {long_song.name!r}")
        heard = predict.classify(long_song, trained)
        assert len(page.query_selector_all("#timeline .segment")) == heard.segments < 20
        assert len(page.query_selector_all("#timeline .gap")) >= heard.segments - 1
        assert page.is_visible("[data-testid=legend-unsampled]")
        assert page.inner_text("[data-testid=legend-unsampled]") == "not sampled"
        assert "not sampled" in page.get_attribute("#timeline .gap", "title")

        # What the API refuses is shown clearly.
        junk = tmp_path / "not a song.mp3"
        junk.write_text("just some text, no music here\n" * 50)
        page.set_input_files("#file-input", str(junk))
        page.wait_for_selector("#error:not([hidden])")
        assert page.inner_text("#error").splitlines() == [
            "Could not classify not a song.mp3.", "Could not be read as audio: not a recognised audio format, or damaged (cannot decode)"]
        assert "((" not in page.inner_text("#error")
        assert "failed" in page.inner_text("#results tbody tr:last-child")
        assert page.is_hidden("#result")  # the error stands alone, not above the last song's answer
        page.close()

        # A phone.
        phone, _ = _open_page(browser, url, problems, **PHONE)
        phone.set_input_files("#file-input", str(synthetic))
        phone.wait_for_selector("#timeline .segment")
        assert phone.inner_text("#top-genre") == expected.genre
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        phone.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
        phone.close()
    assert problems == []


def test_a_first_visit_an_example_recording_and_an_error(browser, models, tmp_path):
    """What someone sees in their first minute: a page that invites a song, the built-in model's
    card, an example recording classified with one click, and a clear error."""
    builtin = ModelEntry.builtin()
    example = EXAMPLES_DIR / "vibe-ace.ogg"
    expected = predict.classify(example, builtin.model)
    app = create_app([builtin, models[0]])
    ARTIFACTS.mkdir(exist_ok=True)
    with running_server(app) as (url, _port):
        page, problems = _open_page(browser, url)
        page.wait_for_selector("[data-testid=sample]")

        # Before any song: a drop zone and the examples; no player, no spectrogram box, no empty bars.
        assert page.is_visible("#drop-zone") and "Drop a song here or choose a file" in page.inner_text("#drop-zone")
        samples = page.query_selector_all("[data-testid=sample]")
        assert [s.get_attribute("data-name") for s in samples] == [
            "vibe-ace.ogg", "sugar-plum-fairy.ogg", "lets-go-fishin.ogg", "hungarian-dance-5.ogg"]
        assert all(s.is_visible() for s in samples)
        for hidden in ("#result", "#player", "#spectrogram", "#bars", "text=Top genres", "#error"):
            assert not page.is_visible(hidden), f"{hidden} shows before any song"
        # The built-in model's card: what it is, its figures, its genres; the selector has its headline.
        card = page.inner_text("#model-info")
        assert "musicnn taggers" in card and "GTZAN" in card and "Cross-validated top-1" in card
        assert "unknown" not in card.lower() and "not recorded" not in card
        assert len(page.query_selector_all("#model-info .chip")) == len(builtin.model.genres)
        assert "top-1, cross-validated" in page.inner_text("#model-select option:first-child")
        page.click("#model-info summary")  # "More about this model": where it learned, licence, notes
        assert page.is_visible("text=Licence") and "ISC" in page.inner_text("#model-info")
        page.locator("#model-info").screenshot(path=str(ARTIFACTS / "first-card.png"))
        page.click("#model-info summary")
        page.screenshot(path=str(ARTIFACTS / "first-visit.png"), full_page=True)

        # One click on an example: classified through POST /api/classify like an upload.
        with page.expect_request(lambda r: r.url.startswith(f"{url}/api/classify") and r.method == "POST"):
            samples[0].click()
        page.wait_for_selector("#bars .bar-row")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('vibe-ace.ogg:')")
        assert page.inner_text("#song-title") == "vibe-ace.ogg"
        assert page.inner_text("#top-genre") == expected.genre
        assert page.is_visible("#player") and page.is_visible("#legend li")
        assert len(page.query_selector_all("#timeline .segment")) == expected.segments
        assert page.is_hidden("#error")
        page.evaluate("document.getElementById('player').currentTime = 7.5")
        page.wait_for_selector("#playhead:not([hidden])")
        page.screenshot(path=str(ARTIFACTS / "first-result.png"), full_page=True)

        # A file that is not audio: one clear line, no doubled brackets.
        junk = tmp_path / "holiday photo.jpg"
        junk.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a photo, and not audio" * 40)
        page.set_input_files("#file-input", str(junk))
        page.wait_for_selector("#error:not([hidden])")
        error = page.inner_text("#error")
        assert error.startswith("Could not classify holiday photo.jpg.\nCould not be read as audio: ")
        assert "((" not in error and "))" not in error
        page.screenshot(path=str(ARTIFACTS / "first-error.png"), full_page=True)
        page.close()

        phone, _ = _open_page(browser, url, problems, **PHONE)
        phone.wait_for_selector("[data-testid=sample]")
        phone.click("[data-testid=sample] >> nth=0")
        phone.wait_for_selector("#timeline .segment")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        phone.screenshot(path=str(ARTIFACTS / "first-phone.png"), full_page=True)
        phone.close()
    assert problems == []
