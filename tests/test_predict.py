from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import tone

from genrify.audio import decode as audio

from genrify.errors import AudioError, ParameterError
from genrify.classify.predict import (
    Failure,
    Prediction,
    SegmentPlan,
    classify,
    predict_features,
    predict_segments,
)
from genrify.audio.segments import segment_starts, song_features


@pytest.fixture(scope="module")
def songs(small_store) -> list[Path]:
    return sorted((small_store.parent / "music").rglob("*.wav"))


def test_segment_starts_cover_the_song_and_max_segments_spreads_them():
    assert segment_starts(1000, 128).tolist() == list(range(0, 1000 - 127, 128))
    assert segment_starts(1000, 128, 64)[:3].tolist() == [0, 64, 128]
    assert segment_starts(50, 128).tolist() == [0]  # shorter than a segment: one, filled
    picked = segment_starts(100_000, 128, max_segments=5)
    every = segment_starts(100_000, 128)
    assert picked.size == 5 and picked[0] == 0 and picked[-1] == every[-1]  # first and last included
    assert np.all(np.diff(picked) > 0.2 * every[-1])  # spread over the whole song
    assert segment_starts(1000, 128, max_segments=0).tolist() == segment_starts(1000, 128).tolist()  # 0: all
    with pytest.raises(ParameterError):
        segment_starts(1000, 128, max_segments=-1)


def test_a_song_gets_the_answer_evaluation_gives_it(model, small_store, songs):
    """Features computed while classifying equal the stored ones: same chunks, same probabilities."""
    from genrify.learn.data import ChunkDataset
    from genrify.learn.evaluation import chunk_probabilities
    from genrify.store.store import FeatureStore

    song = songs[0]
    prediction = classify(song, model)
    with FeatureStore.open(small_store) as store:
        dataset = ChunkDataset(store, [str(song)], model.genres, model.normalization,
                               chunk_frames=model.chunk_frames, hop_frames=model.chunk_frames)
        chunks = chunk_probabilities(model.network, dataset)
    assert prediction.segments == chunks.shape[0]
    np.testing.assert_allclose(prediction.segment_probabilities, chunks, atol=1e-5)
    np.testing.assert_allclose(prediction.probabilities, chunks.mean(axis=0), atol=1e-5)


def test_prediction_fields(model, songs):
    p = classify(songs[0], model, hop_seconds=1.0)
    assert p.probabilities.sum() == pytest.approx(1.0)
    assert p.votes.sum() == pytest.approx(1.0)
    assert p.genre == p.top(1)[0][0] and p.confidence == pytest.approx(p.probabilities.max())
    assert p.duration == pytest.approx(6.0, abs=0.05)
    # 1 s hops over a 6 s song of ~3 s segments: 4 overlapping segments, starts 1 s apart
    assert p.segments == 4 and np.allclose(np.diff(p.segment_starts), 1.0, atol=0.03)
    d = p.to_dict(top_k=2, timeline=True)
    assert set(d) >= {"path", "genre", "probabilities", "votes", "segments", "duration", "timeline"}
    assert len(d["top"]) == 2 and len(d["timeline"]) == p.segments
    assert sum(d["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    back = Prediction.from_dict(d)
    np.testing.assert_allclose(back.probabilities, p.probabilities, atol=1e-6)
    np.testing.assert_allclose(back.segment_probabilities, p.segment_probabilities, atol=1e-6)
    assert "timeline" not in p.to_dict()


def test_max_segments_bounds_the_work(model, songs):
    p = classify(songs[0], model, hop_seconds=0.5, max_segments=2)
    assert p.segments == 2


def test_waveform_input_equals_file_input(model, songs):
    waveform = audio.load(songs[1], model.params.sample_rate)
    from_file = classify(songs[1], model)
    from_wave = classify(waveform, model, sample_rate=model.params.sample_rate)
    np.testing.assert_allclose(from_wave.probabilities, from_file.probabilities, atol=1e-6)
    assert from_wave.path is None
    resampled = classify(tone(3.0, sr=44100), model, sample_rate=44100)  # resampled to the model's rate
    assert resampled.duration == pytest.approx(3.0, abs=0.01)


def test_bad_waveforms_are_refused(model):
    with pytest.raises(ParameterError, match="sample_rate"):
        classify(np.zeros(1000, dtype=np.float32), model)
    with pytest.raises(ParameterError, match="NaN"):
        classify(np.full(22050, np.nan, dtype=np.float32), model, sample_rate=22050)
    with pytest.raises(ParameterError):
        predict_features(np.zeros((7, 100), dtype=np.float32), model)


def test_unreadable_file_is_an_audio_error(model, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(os.urandom(4000))
    with pytest.raises(AudioError, match="bad.mp3"):
        classify(bad, model)


def _library_run(files, ref, runner):
    """The classification service's results for ``files``, by path."""
    from genrify.classify.service import classify_library

    return {r.path: r for r in classify_library(files, ref, runner=runner).results}


def test_many_files_in_a_pool_equal_one_by_one_and_bad_files_do_not_stop_the_run(model_file, songs, tmp_path):
    from genrify.classify.modelref import ModelRef
    from genrify.core.runner import LocalRunner

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF" + os.urandom(200))
    files = [str(s) for s in songs[:6]] + [str(bad)]
    pooled = _library_run(files, ModelRef.file(model_file), LocalRunner(2))
    alone = _library_run(files, ModelRef.file(model_file), LocalRunner(1))
    assert set(pooled) == set(files)
    assert isinstance(pooled[str(bad)], Failure) and pooled[str(bad)].error
    for f in files[:-1]:
        np.testing.assert_allclose(pooled[f].probabilities, alone[f].probabilities, atol=1e-6)


def test_a_crashing_decoder_costs_only_its_own_file(model, songs, tmp_path):
    from crashing_worker import CRASHING_SEGMENTER

    from genrify.core.runner import CRASHED, LocalRunner

    crash = tmp_path / "crash.wav"
    crash.write_bytes(songs[0].read_bytes())
    files = [str(s) for s in songs[:8]] + [str(crash)]
    results = list(LocalRunner(2).run(CRASHING_SEGMENTER, files, SegmentPlan.for_model(model)))
    by_path = {path: (song, error) for path, song, error in results}
    assert len(results) == len(files) == len(by_path), "every file reported exactly once"
    assert by_path[str(crash)] == (None, CRASHED)
    for f in files[:-1]:
        song, error = by_path[f]
        assert error is None and isinstance(predict_segments(song, model, path=f), Prediction)


def test_the_service_takes_a_runner(model_file, songs):
    from genrify.classify.modelref import ModelRef
    from genrify.core.runner import LocalRunner

    files = [str(s) for s in songs[:3]]
    here = _library_run(files, ModelRef.file(model_file), LocalRunner(1))
    pooled = _library_run(files, ModelRef.file(model_file), LocalRunner(2, in_process=False))
    assert set(here) == set(pooled) == set(files)
    for f in files:
        np.testing.assert_allclose(here[f].probabilities, pooled[f].probabilities, atol=1e-6)


def test_a_remote_runner_gets_a_model_reference_never_a_loaded_model(model_file, songs, monkeypatch):
    from genrify.classify.modelref import ModelFile, ModelRef
    from genrify.classify.service import FILE_CLASSIFIER

    class Remote:  # a runner whose workers are elsewhere: they must load the model themselves
        remote = True

        def __init__(self) -> None:
            self.checked: list[str] = []
            self.handed: list[tuple] = []

        def check(self, paths=(), folder=None, *, writable=False, what="folder"):
            self.checked.extend(paths)

        def run(self, processor, items, *args):
            self.handed.append((processor, list(items), args))
            return (processor.failed(item, "not run here") for item in items)

    def not_here(self):
        raise AssertionError("the model is loaded by the workers, not here")

    monkeypatch.setattr(ModelFile, "load", not_here)
    runner = Remote()
    results = _library_run([str(songs[0])], ModelRef.file(model_file), runner)
    assert [r.error for r in results.values()] == ["not run here"]
    ((processor, items, args),) = runner.handed
    assert processor is FILE_CLASSIFIER and items == [str(songs[0])]
    assert args[0] == ModelFile(str(model_file)) and runner.checked == [str(model_file), str(songs[0])]


def test_song_features_are_float16_and_proportional_to_length(tmp_path):
    """The features of a long file are float16 and proportional to its length."""
    from genrify.audio.features import FeatureParams

    path = tmp_path / "long.wav"
    import soundfile as sf

    sf.write(path, tone(120.0), 22050)
    features, duration = song_features(path, FeatureParams())
    assert features.dtype == np.float16 and features.shape == (128, FeatureParams().n_frames(120 * 22050))
    assert duration == pytest.approx(120.0)


# --- no silent wrong answers: non-finite probabilities, songs shorter than a segment -----------


class _NanNetwork:
    """A network whose every answer is NaN (as weights that overflow give)."""

    def __init__(self, n_genres: int) -> None:
        import torch

        self.n_genres = n_genres
        self.anchor = torch.nn.Linear(1, 1)  # a parameter, so that its device can be found

    def eval(self):
        return self

    def parameters(self):
        return self.anchor.parameters()

    def buffers(self):
        return iter(())

    def __call__(self, x):
        import torch

        return torch.full((x.shape[0], self.n_genres), float("nan"))


def test_non_finite_probabilities_are_an_error_for_that_file_never_an_answer(model, model_file, songs, monkeypatch):
    from types import SimpleNamespace

    from genrify.classify.modelref import ModelFile, ModelRef
    from genrify.core.runner import LocalRunner
    from genrify.errors import PredictionError

    broken = SimpleNamespace(network=_NanNetwork(len(model.genres)), genres=model.genres, params=model.params,
                             chunk_frames=model.chunk_frames)
    features, duration = song_features(songs[0], model.params)
    with pytest.raises(PredictionError, match=rf"^{songs[0]}: the model gave non-finite probabilities$"):
        predict_features(features, broken, duration=duration, path=str(songs[0]))
    with pytest.raises(PredictionError, match="non-finite probabilities"):
        classify(songs[0], broken)
    # In a library run it is that file's failure, and the run goes on.
    monkeypatch.setattr(ModelFile, "load", lambda self: broken)
    results = list(_library_run([str(songs[0]), str(songs[1])], ModelRef.file(model_file), LocalRunner(1)).values())
    assert [type(r) for r in results] == [Failure, Failure]
    assert all(r.error == "the model gave non-finite probabilities" for r in results)


def _write(path: Path, samples: np.ndarray, sr: int = 22050, subtype: str | None = None) -> Path:
    import soundfile as sf

    sf.write(path, samples, sr, subtype=subtype)
    return path


def test_a_song_shorter_than_one_segment_is_padded_and_flagged(model, tmp_path):
    one = _write(tmp_path / "one-sample.wav", tone(1.0)[:1])
    p = classify(one, model)
    assert p.short and p.low_confidence and p.segments == 1
    d = p.to_dict()
    assert d["short"] is True and d["low_confidence"] is True
    assert Prediction.from_dict(d).short and Prediction.from_dict(d).low_confidence
    # Just under one segment is short; a whole segment is not.
    seconds = model.chunk_frames * model.params.seconds_per_frame
    almost = _write(tmp_path / "almost.wav", tone(seconds - 0.1))
    assert classify(almost, model).short
    whole = classify(_write(tmp_path / "whole.wav", tone(seconds + 0.1)), model)
    assert not whole.short and whole.to_dict()["short"] is False
    assert whole.low_confidence == (whole.confidence < whole.confidence_threshold)


def test_the_builtin_model_flags_short_songs_too(tmp_path):
    from genrify.models.builtin import load_builtin

    builtin = load_builtin(["jazz", "metal", "classical"])
    p = classify(_write(tmp_path / "one-sample.wav", tone(1.0)[:1]), builtin)
    assert p.short and p.low_confidence and p.to_dict()["low_confidence"] is True


def test_no_audio_at_all_is_an_error_for_that_file(model, model_file, tmp_path):
    from genrify.classify.modelref import ModelRef
    from genrify.core.runner import LocalRunner
    from genrify.errors import PredictionError

    empty = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="empty.wav: no audio"):
        classify(empty, model)
    with pytest.raises(PredictionError, match="x.wav: no audio"):
        predict_features(np.zeros((model.params.n_mels, 0), dtype=np.float16), model, path="x.wav")
    (result,) = _library_run([str(empty)], ModelRef.file(model_file), LocalRunner(1)).values()
    assert isinstance(result, Failure) and "no audio" in result.error


def test_a_waveform_with_channels_in_either_layout_gives_the_mono_answer(model):
    sr = model.params.sample_rate
    mono = tone(3.0, sr=sr)
    expected = classify(mono, model, sample_rate=sr)
    stereo = np.stack([mono, mono])  # (channels, samples), as librosa gives it
    for layout in (stereo, stereo.T):  # and (samples, channels), as soundfile does
        got = classify(np.ascontiguousarray(layout), model, sample_rate=sr)
        assert got.duration == pytest.approx(3.0, abs=0.01), layout.shape
        np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 2), (20, 50), (50, 20), (2, 3, 1000)])
def test_a_waveform_whose_channel_axis_is_unclear_is_refused_naming_its_shape(model, shape):
    with pytest.raises(ParameterError, match=re.escape(str(shape))):
        classify(np.zeros(shape, dtype=np.float32), model, sample_rate=22050)


@pytest.mark.parametrize("samples", [np.zeros(22050, np.int16), np.zeros((22050, 2), np.int32)])
def test_an_integer_waveform_is_refused_not_read_as_floats(model, samples):
    with pytest.raises(ParameterError, match=str(samples.dtype)):
        classify(samples, model, sample_rate=22050)


def test_an_empty_waveform_is_refused(model):
    for empty in (np.zeros(0, np.float32), np.zeros((0, 2), np.float32)):
        with pytest.raises(ParameterError, match="empty"):
            classify(empty, model, sample_rate=22050)


def test_a_model_path_or_reference_is_refused_with_how_to_load_it(model_file, songs):
    from genrify.classify.modelref import ModelRef

    for named in (str(model_file), model_file):
        with pytest.raises(ParameterError, match="must be a loaded model, not a path.*modelfile.load"):
            classify(songs[0], named)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"must be a loaded model, not a model reference.*\.load\(\)"):
        classify(songs[0], ModelRef.file(model_file))  # type: ignore[arg-type]
