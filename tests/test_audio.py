from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import real_clips

from genrify.audio import decode as audio
from genrify.errors import AudioError, ParameterError


@pytest.mark.parametrize(
    ("name", "sr", "channels"),
    [
        ("a.wav", 22050, 1),
        ("b.flac", 44100, 2),
        ("c.ogg", 48000, 2),
        ("d.mp3", 44100, 2),
        ("e.aiff", 16000, 1),
        ("f.au", 22050, 1),
        ("g.m4a", 44100, 1),
        ("h.opus", 22050, 1),
    ],
)
def test_every_format_decodes_to_mono_float32_at_the_target_rate(write_audio, name, sr, channels):
    path = write_audio(name, seconds=2.0, sr=sr, channels=channels)
    y = audio.load(path, sr=22050)
    assert y.dtype == np.float32 and y.ndim == 1
    # Compressed formats pad a few codec frames; the length stays within 60 ms of 2 s.
    assert abs(y.size / 22050 - 2.0) < 0.06
    assert np.isfinite(y).all() and 0.1 < np.abs(y).max() <= 1.0
    # The 440 Hz tone survives decoding: it is the strongest frequency.
    spectrum = np.abs(np.fft.rfft(y[2048:2048 + 16384]))
    assert abs(np.argmax(spectrum) * 22050 / 16384 - 440) < 3


def test_decoding_matches_librosa_load(write_audio):
    librosa = pytest.importorskip("librosa")
    path = write_audio("x.flac", seconds=3.0, sr=44100, channels=2)
    ours = audio.load(path, sr=22050)
    theirs, _ = librosa.load(path, sr=22050)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("name", ["long.wav", "long.mp3", "long.m4a"])
def test_offset_and_duration_read_the_same_samples_as_a_full_decode(write_audio, name):
    path = write_audio(name, seconds=6.0, sr=22050)
    full = audio.load(path)
    part = audio.load(path, offset=2.0, duration=1.5)
    assert part.size == int(1.5 * 22050)
    np.testing.assert_allclose(part, full[2 * 22050 : 2 * 22050 + part.size], atol=2e-3)


def test_stream_blocks_concatenate_to_load(write_audio):
    path = write_audio("s.ogg", seconds=5.0, sr=44100, channels=2)
    blocks = list(audio.stream(path, 22050, block_seconds=0.7))
    assert len(blocks) > 4
    np.testing.assert_allclose(np.concatenate(blocks), audio.load(path), atol=1e-6)


def test_info_reports_the_header(write_audio):
    path = write_audio("i.flac", seconds=2.0, sr=44100, channels=2)
    meta = audio.info(path)
    assert (meta.sample_rate, meta.channels, meta.frames) == (44100, 2, 88200)
    assert meta.duration == pytest.approx(2.0)


def test_names_with_spaces_and_non_ascii_characters(write_audio):
    path = write_audio("Sigur Rós – Hoppípolla (live) 日本.mp3", seconds=1.0)
    assert audio.load(path).size > 20000


# --- bad input: one AudioError naming the file and the problem ----------------------------------


def _error(path: Path) -> str:
    with pytest.raises(AudioError) as info:
        audio.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return info.value.reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    assert "empty" in _error(path)


def test_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio\n" * 100)
    assert "not a recognised audio format" in _error(path)


def test_corrupt_mp3(write_audio):
    path = write_audio("corrupt.mp3", seconds=4.0)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    data[2000:] = rng.integers(0, 256, len(data) - 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert "corrupt" in _error(path)


def test_truncated_wav(write_audio):
    path = write_audio("cut.wav", seconds=4.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(path)


def test_truncated_mp3(write_audio):
    path = write_audio("cut.mp3", seconds=6.0, sr=44100, channels=2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert "truncated" in _error(path)


def test_truncated_flac_says_so_in_words(write_audio):
    path = write_audio("cut.flac", seconds=6.0, sr=44100, channels=2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    reason = _error(path)
    # libsndfile's own "Error : ..." is trimmed into the sentence, not pasted raw.
    assert reason.startswith("corrupt audio data: ") and "Error :" not in reason, reason


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.wav")


def test_dangling_symlink(tmp_path):
    link = tmp_path / "gone.flac"
    link.symlink_to(tmp_path / "deleted.flac")
    assert "not found" in _error(link)


def test_folder_named_like_audio(tmp_path):
    folder = tmp_path / "album.mp3"
    folder.mkdir()
    assert "not a regular file" in _error(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(write_audio):
    path = write_audio("locked.wav")
    path.chmod(0)
    try:
        assert "permission" in _error(path)
    finally:
        path.chmod(0o644)


def test_offset_past_the_end(write_audio):
    path = write_audio("short.wav", seconds=1.0)
    with pytest.raises(AudioError, match="no audio samples after 5 s"):
        audio.load(path, offset=5.0)


@pytest.mark.parametrize("kwargs", [{"sr": 0}, {"offset": -1.0}, {"duration": 0.0}])
def test_bad_arguments(write_audio, kwargs):
    path = write_audio("ok.wav")
    with pytest.raises(ParameterError):
        audio.load(path, **kwargs)


def test_silence_decodes_to_zeros(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(22050, dtype=np.float32), 22050)
    y = audio.load(path)
    assert y.size == 22050 and not y.any()


def test_is_audio_file():
    assert audio.is_audio_file("x/Song.MP3") and audio.is_audio_file("a.opus")
    assert not audio.is_audio_file("cover.jpg") and not audio.is_audio_file("notes.txt")


@pytest.mark.parametrize("clip", real_clips(), ids=lambda p: p.name)
def test_real_clips_decode(clip):
    y = audio.load(clip)
    assert y.size > 22050 and np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_real_clips_present_or_skipped(real_clip_paths):
    # Guards against the parametrised test above silently collecting nothing where clips exist.
    assert len(real_clip_paths) >= 10


def test_unreadable_file_as_any_user(write_audio, monkeypatch):
    # Root reads every file, so simulate the refusal the way the OS reports it.
    path = write_audio("locked.wav")
    monkeypatch.setattr(audio.os, "access", lambda p, mode: False)
    assert "permission denied" in _error(path)


def test_decoder_notes_go_to_the_log_not_to_stderr(write_audio, capfd, caplog):
    # A few kB of noise in the middle of an mp3: libmpg123 prints "Note: Illegal Audio-MPEG-Header",
    # "Trying to resync" ... straight to fd 2.
    path = write_audio("damaged.mp3", seconds=5.0)
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : third + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    capfd.readouterr()
    with caplog.at_level("DEBUG", logger="genrify.audio.decode"):
        try:
            audio.load(path)
        except AudioError:
            pass  # how damaged is too damaged is decoding's call; the notes are this test's subject
    err = capfd.readouterr().err
    assert "Note:" not in err and "mpg123" not in err, err
    notes = [r.getMessage() for r in caplog.records if r.name == "genrify.audio.decode"]
    assert any("Note:" in m and str(path) in m for m in notes), notes


def test_other_output_while_decoding_still_reaches_stderr(tmp_path, capfd, caplog):
    # fd 2 is the whole process's: what another thread writes during a decode must not vanish.
    capfd.readouterr()
    with caplog.at_level("DEBUG", logger="genrify.audio.decode"), audio.decoder_output(tmp_path / "x.mp3"):
        os.write(2, b"Note: Trying to resync...\n")
        os.write(2, b"progress 50%\n")
    err = capfd.readouterr().err
    assert err == "progress 50%\n"
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path / 'x.mp3'}: Note: Trying to resync..."]


def test_a_name_that_is_not_utf8_decodes(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")  # Latin-1, as another system wrote it
    sf.write(raw, np.full(22050, 0.25, dtype=np.float32), 22050)
    path = os.fsdecode(raw)  # how os.listdir and the library scan hand it over
    assert audio.info(path).frames == 22050
    assert audio.load(path).shape == (22050,)
