from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrify import __version__

from genrify.models import modelfile

from helpers import nan_answer_for

from genrify.classify import predict
from genrify.classify.listener import Listener
from genrify.classify.modelref import BuiltinModel, ModelFile, ModelRef, loaded_models
from genrify.classify.service import (
    ClassifyOptions,
    LibraryRun,
    classify_library,
    classify_song,
    open_cache,
)
from genrify.classify.placing import confident, organize_results, playlist_results
from genrify.classify.tagging import FileSink, TagListener, tag_results
from genrify.classify.predict import Failure, Prediction, classify
from genrify.classify.results import ResultCache, file_digest
from genrify.core.runner import LocalRunner
from genrify.errors import ModelFileError, ParameterError, PredictionError


@pytest.fixture
def music(small_store, tmp_path) -> Path:
    """A copy of one genre's songs (tests change files)."""
    root = tmp_path / "music"
    shutil.copytree(small_store.parent / "music" / "metal", root)
    return root


# --- the model reference ---------------------------------------------------------------------------


def test_a_file_reference_knows_its_model_without_loading_it(model_file):
    ref = ModelRef.file(model_file)
    loaded = modelfile.load(model_file)
    assert not ref.is_builtin and ref.name == "m.safetensors"
    assert ref.genres == loaded.genres and ref.chunk_frames == loaded.chunk_frames and ref.params == loaded.params
    assert ref.cache_key == file_digest(model_file)  # the key earlier versions wrote: their caches stay valid
    assert len(pickle.dumps(ModelRef.file(model_file))) < 500  # what a remote worker receives
    assert pickle.loads(pickle.dumps(ref)) == ref


def test_the_built_in_reference_keys_its_genres_and_refuses_unknown_ones():
    ref = ModelRef.builtin(["rock", " jazz"])
    assert ref.is_builtin and ref.genres == ["rock", "jazz"]
    assert ref.cache_key == f"builtin:genrify-musicnn:{__version__}:rock,jazz:asked-share"
    assert ModelRef.builtin().cache_key != ref.cache_key and len(ModelRef.builtin().genres) > 2
    with pytest.raises(ParameterError, match="polka"):
        ModelRef.builtin(["polka-core"])


def test_the_two_kinds_answer_one_interface_and_pickle_as_small_values(model_file, monkeypatch):
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES

    monkeypatch.chdir(model_file.parent)
    file, builtin = ModelRef.file(model_file.name), ModelRef.builtin(["jazz", "rock"])
    assert isinstance(file, ModelFile) and isinstance(builtin, BuiltinModel)
    assert isinstance(file, ModelRef) and isinstance(builtin, ModelRef)
    assert (file.is_builtin, builtin.is_builtin) == (False, True)
    assert (file.path, builtin.chosen) == ("m.safetensors", ("jazz", "rock"))
    assert (builtin.name, builtin.params, builtin.chunk_frames, builtin.metadata) == (
        "genrify-musicnn", MUSICNN_PARAMS, PATCH_FRAMES, {})
    assert file.metadata["genres"] == file.genres and file.metadata["chunk_frames"] == file.chunk_frames
    # what a worker needs: an absolute path to a file it must see, or nothing at all
    assert file.for_workers() == ModelFile(str(model_file)) and file.for_workers().worker_files == (str(model_file),)
    assert builtin.for_workers() is builtin and builtin.worker_files == ()
    assert BuiltinModel() == ModelRef.builtin() == ModelRef.builtin([]) and BuiltinModel().genres == ModelRef.builtin().genres
    for ref in (file, builtin, BuiltinModel()):
        again = pickle.loads(pickle.dumps(ref))
        assert again == ref and type(again) is type(ref) and hash(again) == hash(ref)
        assert (again.name, again.genres, again.params, again.chunk_frames, again.cache_key, again.is_builtin) == (
            ref.name, ref.genres, ref.params, ref.chunk_frames, ref.cache_key, ref.is_builtin)
    assert len(pickle.dumps(builtin)) < 300
    assert file != ModelFile("other.safetensors") and builtin != BuiltinModel()


def test_a_missing_or_bad_model_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        ModelRef.file(tmp_path / "nope.safetensors").check()
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        ModelRef.file(fake).check()
    with pytest.raises(ModelFileError):
        ModelRef.file(tmp_path / "nope.safetensors").load()


def test_load_is_once_per_process_until_the_file_changes(model_file, tmp_path):
    copy = tmp_path / "copy.safetensors"
    shutil.copy(model_file, copy)
    ref = ModelRef.file(copy)
    first = ref.load()
    assert ModelRef.file(str(copy)).load() is first
    os.utime(copy, ns=(1, 1))  # "changed": reloaded, and the old version is dropped
    again = ref.load()
    assert again is not first
    assert [k for k in loaded_models() if k[0] == str(copy)] == [(str(copy), copy.stat().st_size, 1)]


# --- a library run ---------------------------------------------------------------------------------


class Recorder(Listener):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_start(self, found) -> None:
        self.events.append(("start", len(found.files)))

    def on_result(self, result, cached) -> None:
        self.events.append(("result", result.path, cached))

    def on_finish(self, run) -> None:
        self.events.append(("finish", run))


def test_a_library_run_returns_results_in_order_with_a_summary_and_uses_the_cache(model_file, music, tmp_path):
    (music / "broken.wav").write_bytes(b"RIFF" + os.urandom(200))
    ref, options = ModelRef.file(model_file), ClassifyOptions(max_segments=2)
    recorder = Recorder()
    with open_cache(tmp_path / "cache.sqlite", ref, options) as cache:
        run = classify_library([music, tmp_path / "missing.mp3"], ref, options=options, runner=LocalRunner(2),
                               cache=cache, listeners=[recorder])
    assert isinstance(run, LibraryRun)
    files = sorted(str(p) for p in music.iterdir())
    assert [r.path for r in run.results] == [*files, str(tmp_path / "missing.mp3")]
    assert {r.path for r in run.failures} == {str(music / "broken.wav"), str(tmp_path / "missing.mp3")}
    s = run.summary
    assert (s.classified, s.from_cache, s.failed) == (len(files) - 1, 0, 2)
    assert sum(s.genres.values()) == s.classified and s.line.startswith(f"{s.classified} classified (0 from cache)")
    assert recorder.events[0] == ("start", len(files)) and recorder.events[-1] == ("finish", run)
    assert sorted(e[1] for e in recorder.events[1:-1]) == files  # one event per file found
    for p in run.predictions:  # the answer one song alone gets
        want = classify(p.path, modelfile.load(model_file), max_segments=2)
        np.testing.assert_allclose(p.probabilities, want.probabilities, atol=1e-6)

    with open_cache(tmp_path / "cache.sqlite", ref, options) as cache:
        again = classify_library([music], ref, options=options, runner=LocalRunner(1), cache=cache)
    assert again.summary.from_cache == again.summary.classified == len(files) - 1
    for a, b in zip(run.predictions, again.predictions, strict=True):
        assert a.path == b.path
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    with open_cache(tmp_path / "cache.sqlite", ref, ClassifyOptions(max_segments=3)) as cache:  # other settings
        assert classify_library([music], ref, options=ClassifyOptions(max_segments=3), runner=LocalRunner(1),
                                cache=cache).summary.from_cache == 0


def test_only_a_calibrated_model_says_how_many_answers_to_expect_right(model_file, music, tmp_path, monkeypatch):
    """A learned head's probabilities are calibrated by its cross-check (the built-in model's over
    all its genres, a file from genrify learn); a trained network's are not, and neither are the
    built-in model's asked for a few genres (a song of another genre still gets one of them)."""
    from genrify.models.builtin import GenreHead

    head = tmp_path / "learned.safetensors"
    GenreHead.load().save(head)
    assert ModelRef.file(head).calibrated and ModelRef.builtin().calibrated
    assert not ModelRef.file(model_file).calibrated and not ModelRef.builtin(["jazz", "rock"]).calibrated

    ref = ModelRef.file(model_file)
    plain = classify_library([music], ref, runner=LocalRunner(1))
    assert plain.summary.expected_accuracy is None and "expect" not in plain.summary.line

    import soundfile as sf

    sf.write(music / "silence.wav", np.zeros(22050 * 4, dtype=np.float32), 22050)
    monkeypatch.setattr(ModelFile, "calibrated", property(lambda self: True))
    run = classify_library([music], ref, runner=LocalRunner(1))
    silent = [p for p in run.predictions if p.path.endswith("silence.wav")]
    assert silent and silent[0].not_music  # what is not music has no right genre: left out of the estimate
    music_answers = [p.confidence for p in run.predictions if not p.not_music]
    assert run.summary.expected_accuracy == pytest.approx(np.mean(music_answers))
    assert run.summary.line.endswith(f" · expect about {np.mean(music_answers):.0%} right")
    # Nor is it counted in any genre: the summary counts it apart.
    flagged = sum(bool(p.not_music) for p in run.predictions)
    assert run.summary.not_music == flagged and sum(run.summary.genres.values()) == len(run.predictions) - flagged
    assert f" · {flagged} not music · expect" in run.summary.line
    assert predict.expected_accuracy([]) is None

    # Tags: the share of the genres written (not of every answer) to expect right, from a calibrated run only.
    from genrify.collection.tagpolicy import TagPolicy

    answers = {p.path: p.confidence for p in run.predictions if not p.not_music}  # silence is never tagged
    # The untrained model is unsure of everything; only the answers at or above the median are written.
    policy = TagPolicy(skip_unsure=False, min_confidence=float(np.median(list(answers.values()))))
    for calibrated in (True, False):
        monkeypatch.setattr(ModelFile, "calibrated", property(lambda self, c=calibrated: c))
        tagger = TagListener(policy, FileSink(None), model="m", dry_run=True)
        classify_library([music], ref, runner=LocalRunner(1), listeners=[tagger])
        written = [c.path for c in tagger.report.changes if c.status == "written"]
        assert sorted(map(str, written)) == sorted(p for p, c in answers.items() if c >= policy.min_confidence)
        assert 0 < len(written) < len(answers)
        if calibrated:
            want = np.mean([answers[str(p)] for p in written])
            assert tagger.report.expected_accuracy == pytest.approx(want)
            assert f"would write {len(written)} (expect about {want:.0%} right)," in tagger.report.line
        else:
            assert tagger.report.expected_accuracy is None and "expect" not in tagger.report.line


def test_a_changed_file_is_classified_again(model_file, music, small_store, tmp_path):
    ref = ModelRef.file(model_file)
    song = min(music.iterdir())
    with open_cache(tmp_path / "cache.sqlite", ref) as cache:
        classify_library([song], ref, runner=LocalRunner(1), cache=cache)
    other = min((small_store.parent / "music" / "classical").iterdir())
    shutil.copy(other, song)  # new content at the same path
    with open_cache(tmp_path / "cache.sqlite", ref) as cache:
        run = classify_library([song], ref, runner=LocalRunner(1), cache=cache)
    assert run.summary.from_cache == 0
    np.testing.assert_allclose(run.predictions[0].probabilities,
                               classify(other, modelfile.load(model_file)).probabilities, atol=1e-6)


def test_a_damaged_cache_is_set_aside(model_file, music, tmp_path):
    path = tmp_path / "cache.sqlite"
    ResultCache(path, "m", {}).close()  # a genrify cache (its header says so), then damaged
    data = bytearray(path.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)
    path.write_bytes(data)
    ref = ModelRef.file(model_file)
    with open_cache(path, ref) as cache:
        assert cache.enabled
        assert classify_library([min(music.iterdir())], ref, runner=LocalRunner(1), cache=cache).summary.classified == 1
    assert (tmp_path / "cache.sqlite.damaged").exists()


def test_a_non_finite_answer_is_a_failure_and_never_cached(model_file, music, tmp_path, monkeypatch):
    from genrify.collection.library import find_audio

    real = predict.predict_or_fail
    nan_answer_for(find_audio([music]).files[0], monkeypatch)  # the first file's answer is NaN
    ref = ModelRef.file(model_file)
    with open_cache(tmp_path / "cache.sqlite", ref) as cache:
        run = classify_library([music], ref, runner=LocalRunner(1), cache=cache)
    assert isinstance(run.results[0], Failure) and "non-finite" in run.results[0].error
    assert all(isinstance(r, Prediction) for r in run.results[1:])
    monkeypatch.setattr(predict, "predict_or_fail", real)
    with open_cache(tmp_path / "cache.sqlite", ref) as cache:
        again = classify_library([music], ref, runner=LocalRunner(1), cache=cache)
    assert isinstance(again.results[0], Prediction) and again.summary.from_cache == len(run.results) - 1


def test_nothing_to_classify_is_one_clear_error(model_file, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="no audio files in"):
        classify_library([tmp_path / "empty"], ModelRef.file(model_file))
    with pytest.raises(ParameterError, match="does not exist"):
        classify_library([tmp_path / "nope.mp3"], ModelRef.file(model_file))


class HereAsIfRemote(LocalRunner):  # workers that load the model from its reference, as Dask's do
    remote = True


def test_a_remote_runner_loads_the_model_itself_and_keeps_the_paths_given(model_file, music, monkeypatch):
    from genrify.collection.library import AudioSearch

    monkeypatch.chdir(music)
    song = min(os.listdir(music))
    options = ClassifyOptions(hop_seconds=1.5, max_segments=2)
    # A caller's own search, with a relative path: the workers get it absolute, the results as given.
    (result,) = classify_library(AudioSearch([song]), ModelRef.file(os.path.relpath(model_file)),
                                 runner=HereAsIfRemote(1), options=options).results
    want = classify(song, modelfile.load(model_file), hop_seconds=1.5, max_segments=2)
    assert isinstance(result, Prediction) and result.path == song  # the path as given, not absolute
    np.testing.assert_allclose(result.probabilities, want.probabilities, atol=1e-6)
    assert result.segments == want.segments
    run = classify_library([music], ModelRef.file(model_file), options=options, runner=HereAsIfRemote(1))
    assert run.summary.classified == len(os.listdir(music))


def test_workers_in_other_processes_load_the_model_from_its_pickled_reference(model_file, music):
    files = sorted(str(p) for p in music.iterdir())[:3]
    options = ClassifyOptions(max_segments=2)
    here = classify_library(files, ModelRef.file(model_file), options=options, runner=LocalRunner(1)).results
    pooled = classify_library(files, ModelRef.file(model_file), options=options,
                              runner=HereAsIfRemote(2, in_process=False)).results
    assert [r.path for r in pooled] == [r.path for r in here] == files
    for a, b in zip(here, pooled, strict=True):
        assert isinstance(a, Prediction) and isinstance(b, Prediction)
        np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-6)


def test_one_song_gets_the_answer_of_a_library_run(model_file, music):
    ref = ModelRef.file(model_file)
    song = min(music.iterdir())
    (from_run,) = classify_library([song], ref, runner=LocalRunner(1)).results
    alone = classify_song(song, ref.load(), name="upload.wav")
    assert alone.path == "upload.wav"
    assert alone.to_dict() == {**from_run.to_dict(), "path": "upload.wav"}


def test_one_song_with_a_nan_model_is_a_prediction_error(model_file, music, monkeypatch):
    real = predict.classify

    def nan(*args, **kwargs):
        p = real(*args, **kwargs)
        p.probabilities = p.probabilities * np.nan
        return p

    monkeypatch.setattr(predict, "classify", nan)
    with pytest.raises(PredictionError, match="non-finite"):
        classify_song(min(music.iterdir()), ModelRef.file(model_file).load())


# --- consumers of results --------------------------------------------------------------------------


def test_tags_organize_and_playlists_consume_the_results(model_file, music, tmp_path):
    from genrify.collection.genremap import GenreMap
    from genrify.collection.tagpolicy import TagPolicy
    from genrify.collection.tags import read_genre, read_provenance

    run = classify_library([music], ModelRef.file(model_file), runner=LocalRunner(1))
    assert confident(run.results, 1.01) == [] and len(confident(run.results)) == len(run.predictions)
    chosen = confident(run.results)

    # The untrained model is unsure of everything: the default policy leaves such answers alone.
    assert tag_results(chosen).left_alone == sum(p.low_confidence for p in chosen) == len(chosen)
    policy = TagPolicy(count=2, min_probability=0.0, skip_unsure=False, mode="replace")
    dry = tag_results(chosen, policy, model="m", dry_run=True)
    assert dry.line.startswith(f"genre tags: would write {len(chosen)}, unchanged 0,")
    assert all(read_genre(p.path) == () for p in chosen)
    tagged = tag_results(chosen, policy, model="m")
    assert tagged.count("written") == len(chosen) and not tagged.failures
    spelled = GenreMap.default().name
    assert all(read_genre(p.path) == tuple(spelled(g) for g, _ in p.top(2)) for p in chosen)
    assert all(read_provenance(p.path).model == "m" for p in chosen)
    again = tag_results(chosen, policy, model="m")
    assert again.count("unchanged") == len(chosen) and again.count("written") == 0
    # Keep mode keeps a person's genre whatever the answer: counted kept, not unsure.
    from genrify.collection.tags import write_genre

    write_genre(chosen[0].path, ["Shoegaze"])
    kept = tag_results(chosen, TagPolicy(), model="m")
    assert (kept.count("kept"), kept.left_alone, kept.count("written")) == (1, len(chosen) - 1, 0)
    assert read_genre(chosen[0].path) == ("Shoegaze",)

    dest = tmp_path / "sorted"
    planned = organize_results(chosen, dest, dry_run=True, sources=[music])
    assert not dest.exists() and planned.line == f"would place {len(chosen)} files in {dest} (0 failed)"
    placed = organize_results(chosen, dest, sources=[music])
    assert placed.line == f"placed {len(chosen)} files in {dest} (0 failed)"
    assert sorted(placed.placed) == sorted(p.path for p in chosen)
    again = organize_results(chosen, dest, sources=[music])  # the same files are there already
    assert again.line == f"placed 0 files in {dest} ({len(chosen)} already there, 0 failed)"
    assert all(Path(t).parent.name == next(p.genre for p in chosen if p.path == s) for s, t in placed.placed.items())

    lists = tmp_path / "lists"
    assert playlist_results(chosen, lists, dry_run=True).line.startswith("would write") and not lists.exists()
    written = playlist_results(chosen, lists, placed=placed.placed)
    assert written.line == f"{len({p.genre for p in chosen})} playlists in {lists}"
    entries = [line for f in written.playlists for line in f.read_text().splitlines() if not line.startswith("#")]
    assert len(entries) == len(chosen) and all((lists / e).resolve().is_relative_to(dest.resolve()) for e in entries)


def test_a_tag_writer_tags_each_answer_as_it_arrives(model_file, music):
    from genrify.collection.tagpolicy import TagPolicy
    from genrify.collection.tags import read_genre

    class Interrupt(Listener):
        def __init__(self) -> None:
            self.seen = 0

        def on_result(self, result, cached: bool) -> None:
            self.seen += 1
            if self.seen == 3:
                raise KeyboardInterrupt  # what Ctrl-C does in the middle of a long run

    writer = TagListener(TagPolicy(skip_unsure=False, mode="replace"), FileSink(), model="m")
    with pytest.raises(KeyboardInterrupt):
        classify_library([music], ModelRef.file(model_file), runner=LocalRunner(1), listeners=[writer, Interrupt()])
    files = sorted(str(p) for p in music.rglob("*.wav"))
    tagged = [f for f in files if read_genre(f)]
    assert len(tagged) == 3 == writer.report.count("written") and len(files) > 3


def test_a_numpy_model_classifies_whole_files_in_each_worker(music, monkeypatch):
    # The built-in model answers in numpy: a pooled run loads it in each worker, which decodes and
    # classifies whole files; the parent predicts nothing, and the answers are the one-process ones.
    from genrify.collection.library import find_audio

    files = find_audio([music]).files[:3]
    ref = ModelRef.builtin(["rock", "jazz", "metal"])
    here = classify_library(files, ref, runner=LocalRunner(1))

    def never(*args, **kwargs):
        raise AssertionError("the parent predicted a song its workers should have")

    monkeypatch.setattr(predict, "predict_or_fail", never)
    pooled = classify_library(files, ref, runner=LocalRunner(2))
    assert pooled.summary.classified == 3 and not pooled.failures
    for a, b in zip(here.predictions, pooled.predictions, strict=True):
        assert a.path == b.path and a.genre == b.genre
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
