"""Learning a genre head from labelled songs: the learner, its honest report, and the head file."""

from __future__ import annotations

import ast
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from genrify.classify.predict import Prediction
from genrify.errors import ModelFileError, ParameterError
from genrify.learn import learner
from genrify.learn.embedcache import SongEmbedding
from genrify.learn.learner import LearnReport, learn_head, predict_songs
from genrify.models.builtin import GENRES, HEAD_FORMAT, GenreHead

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DIM = 200


def song(centre: np.ndarray, rng: np.random.Generator, *, segments: int = 3, noise: float = 1.0,
         path: str = "song") -> SongEmbedding:
    """A song whose segments scatter around ``centre`` (taggrams are noise: no tag prior is used)."""
    x = centre + rng.normal(scale=noise, size=(segments, DIM))
    grams = {n: rng.uniform(size=(segments, 50)).astype(np.float32) for n in ("MSD_musicnn", "MTT_musicnn")}
    return SongEmbedding(path, x.astype(np.float32), grams, False)


def library(genres: dict[str, np.ndarray], *, songs: int = 24, artists: int = 6, seed: int = 0, noise: float = 1.0):
    """``songs`` songs per genre around its centre, by ``artists`` artists of that genre each."""
    rng = np.random.default_rng(seed)
    out, labels, groups = [], [], []
    for name, centre in genres.items():
        for i in range(songs):
            out.append(song(centre, rng, noise=noise, path=f"{name}/{i}.mp3"))
            labels.append((name,))
            groups.append(f"{name} artist {i % artists}")
    return out, labels, groups


def centres(names: list[str], *, spread: float = 1.5, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(scale=spread, size=DIM) / np.sqrt(DIM) * 10 for n in names}


@pytest.fixture(scope="module")
def learned() -> tuple[GenreHead, LearnReport, dict[str, np.ndarray]]:
    where = centres(["alpha", "beta", "gamma", "delta"])
    songs, labels, groups = library(where)
    head, report = learn_head(songs, labels, groups, builtin=False, info={"trained_on": "synthetic clusters"})
    return head, report, where


def test_the_learner_recovers_the_genres_of_clustered_songs(learned):
    head, report, where = learned
    assert head.genres == report.genres and sorted(head.genres) == sorted(where)
    assert sorted(head.learned) == sorted(where) and head.priors == [None] * 4  # made-up names: no tags
    assert report.cv_top1 >= 0.95 and report.cv_macro_recall >= 0.95
    # New songs near each centre are answered with its genre.
    rng = np.random.default_rng(9)
    fresh = [song(c, rng) for c in where.values()]
    answers = [head.genres[i] for i in predict_songs(head, fresh).argmax(axis=1)]
    assert answers == list(where)
    assert predict_songs(head, fresh).sum(axis=1) == pytest.approx(np.ones(4))
    assert predict_songs(head, []).shape == (0, 4)


def test_the_report_adds_up_and_is_stored_in_the_head(learned):
    head, report, _ = learned
    k = len(report.genres)
    matrix = np.array(report.confusion["matrix"])
    assert report.confusion["genres"] == report.genres and matrix.shape == (k, k)
    for j, g in enumerate(report.genres):
        row = report.per_genre[g]
        assert 0 <= row["recall"] <= 1 and row["songs"] == 24
        assert matrix[j].sum() == row["songs"] and matrix[j, j] / matrix[j].sum() == pytest.approx(row["recall"])
    assert matrix.sum() == report.songs == 96 and report.artists == 24 and report.folds == 5
    assert report.cv_top1 == pytest.approx(np.trace(matrix) / matrix.sum())
    assert report.cv_macro_recall == pytest.approx(np.mean([r["recall"] for r in report.per_genre.values()]))
    assert len(report.fold_settings) == 5 and set(report.settings) == {"C", "prior_weight", "cap", "mobility",
                                                                        "temperature", "threshold", "margin"}
    assert report.held_out is None  # every genre learned: nothing to hold out for
    assert report.settings["C"] in learner.GRID_C and report.settings["cap"] in learner.GRID_CAP
    assert 0 <= report.unsure["flagged"] <= 1 and report.builtin is None  # no genre the built-in model knows
    stored = json.loads(json.dumps(head.info["report"]))
    assert stored == json.loads(json.dumps(report.to_dict())) and "answers" not in stored
    assert head.info["trained_on"] == "synthetic clusters" and head.info["songs"] == 96
    text = "\n".join(report.lines())
    assert "top-1" in text and "alpha" in text and "no artist on both sides" in text


def test_a_head_says_which_genrify_made_it(learned, tmp_path):
    from dataclasses import replace

    from genrify import __version__
    from genrify.models.builtin import load_builtin
    from genrify.models.modelfile import read_metadata

    head, _, _ = learned
    assert head.info["genrify_version"] == __version__
    mine = replace(head, info={**head.info, "learned_from": {"labels": "tags"}, "genrify_version": "0.0.9"})
    assert load_builtin(head=mine).genrify_version == "0.0.9"
    assert read_metadata(mine.save(tmp_path / "mine.safetensors"))["genrify_version"] == "0.0.9"
    # A head learned before the version was recorded says it is not known, not this genrify's.
    older = replace(mine, info={k: v for k, v in mine.info.items() if k != "genrify_version"})
    assert load_builtin(head=older).genrify_version is None
    assert read_metadata(older.save(tmp_path / "older.safetensors"))["genrify_version"] == "?"
    # The packaged head ships with this genrify; the tags alone have no head to date.
    assert load_builtin().genrify_version == __version__ and load_builtin(head=False).genrify_version is None


def test_folds_never_share_an_artist_and_settings_never_see_the_songs_they_answer(monkeypatch):
    calls = []
    real = learner.group_folds

    def spy(strata, groups, folds, seed):
        splits = real(strata, groups, folds, seed)
        calls.append((np.asarray(groups).copy(), splits))
        return splits

    monkeypatch.setattr(learner, "group_folds", spy)
    where = centres(["alpha", "beta", "gamma"])
    songs, labels, groups = library(where, songs=20, artists=5)
    learn_head(songs, labels, groups, builtin=False, folds=4)
    outer_groups, outer = calls[0]
    assert len(outer) == 4 and len(calls) == 1 + 4  # one inner cross-validation per outer fold
    for groups_seen, splits in calls:
        for train, test in splits:
            assert not set(groups_seen[train]) & set(groups_seen[test])  # no artist on both sides
            assert len(train) + len(test) == len(groups_seen)
    for (train, test), (inner_groups, _) in zip(outer, calls[1:], strict=True):
        # The inner folds that choose a fold's settings hold only the other folds' songs.
        assert len(inner_groups) == len(train)
        assert not set(inner_groups) & set(outer_groups[test])
    tested = np.concatenate([test for _, test in outer])
    assert sorted(tested) == list(range(len(songs)))  # every song answered once


def test_a_song_of_two_genres_teaches_both():
    where = centres(["alpha", "beta", "gamma", "blend"], seed=3)
    songs, labels, groups = library({g: where[g] for g in ("alpha", "beta", "gamma")}, songs=20, artists=5)
    rng = np.random.default_rng(4)
    # Songs around a fourth centre carry two genres, alpha and beta: positives for both.
    for i in range(20):
        songs.append(song(where["blend"], rng, path=f"blend/{i}.mp3"))
        labels.append(("alpha", "beta"))
        groups.append(f"blend artist {i % 5}")
    head, report = learn_head(songs, labels, groups, builtin=False)
    assert sorted(head.genres) == ["alpha", "beta", "gamma"]
    assert report.per_genre["alpha"]["songs"] == report.per_genre["beta"]["songs"] == 40
    assert np.array(report.confusion["matrix"]).sum() == 100  # a row for each genre of each song
    p = predict_songs(head, [song(where["blend"], rng) for _ in range(5)]).mean(axis=0)
    top_two = {head.genres[i] for i in np.argsort(p)[-2:]}
    assert top_two == {"alpha", "beta"} and p[head.genres.index("gamma")] < min(p[head.genres.index(g)] for g in top_two)
    assert report.cv_top1 >= 0.9  # either genre of a two-genre song counts as right


def test_a_sub_genre_always_tagged_with_its_parent_earns_no_recall_from_the_parents_answers():
    where = centres(["alpha", "beta", "gamma"], seed=5)
    songs, labels, groups = library(where, songs=15, artists=5, seed=5)
    rng = np.random.default_rng(6)
    # "alpha; sub" songs of one artist, sounding like alpha: held out, sub is never heard.
    for i in range(6):
        songs.append(song(where["alpha"], rng, path=f"sub/{i}.mp3"))
        labels.append(("alpha", "sub"))
        groups.append("the sub artist")
    head, report = learn_head(songs, labels, groups, builtin=False)
    assert report.per_genre["sub"]["recall"] <= 0.2  # answered alpha: right for top-1, not a find of sub
    assert report.per_genre["alpha"]["recall"] >= 0.8 and report.cv_top1 >= 0.8
    genres = report.confusion["genres"]
    row = report.confusion["matrix"][genres.index("sub")]
    assert sum(row) == 6 and row[genres.index("alpha")] >= 5
    assert any("every song of sub is by one artist" in n for n in report.notes)


def test_a_near_tie_is_flagged_unsure():
    tie = Prediction(genres=["a", "b", "c"], probabilities=np.array([0.41, 0.39, 0.20]), votes=np.zeros(3),
                     segments=1, duration=3.0, confidence_threshold=0.3, near_tie_margin=0.05)
    assert tie.near_tie and tie.low_confidence and tie.unsure_reason == "near tie"
    data = tie.to_dict()
    assert data["low_confidence"] is True and data["unsure_reason"] == "near tie" and data["near_tie_margin"] == 0.05
    assert Prediction.from_dict(data).near_tie
    clear = Prediction(genres=["a", "b", "c"], probabilities=np.array([0.41, 0.39, 0.20]), votes=np.zeros(3),
                       segments=1, duration=3.0, confidence_threshold=0.3, near_tie_margin=0.01)
    assert not clear.near_tie and not clear.low_confidence and clear.unsure_reason is None
    assert Prediction(genres=["a", "b"], probabilities=np.array([0.2, 0.8]), votes=np.zeros(2), segments=1,
                      duration=3.0, confidence_threshold=0.5, near_tie_margin=0.0).unsure_reason is None


def test_the_near_tie_margin_is_learned_where_songs_sit_between_two_genres():
    where = centres(["alpha", "beta", "gamma"], seed=5)
    songs, labels, groups = library(where, songs=20, artists=5, seed=5)
    rng = np.random.default_rng(6)
    middle = (where["alpha"] + where["beta"]) / 2
    # Songs halfway between alpha and beta, labelled either by turns: the two are a coin toss there.
    for i in range(60):
        songs.append(song(middle, rng, noise=0.3, path=f"mid/{i}.mp3"))
        labels.append(("alpha",) if i % 2 else ("beta",))
        groups.append(f"mid artist {i % 12}")
    head, report = learn_head(songs, labels, groups, builtin=False)
    assert head.margin > 0 and report.settings["margin"] == head.margin
    p = predict_songs(head, [song(middle, rng, noise=0.3) for _ in range(20)])
    top = np.sort(p, axis=1)
    flagged = (top[:, -1] - top[:, -2] < head.margin) | (top[:, -1] < head.threshold)
    assert flagged.mean() >= 0.5  # most songs between the two are flagged unsure
    assert report.unsure["flagged"] > 0 and report.unsure["flagged_top1"] < report.unsure["kept_top1"]


def test_only_a_head_learned_from_enough_artists_is_calibrated(learned, tmp_path):
    from genrify.classify.modelref import ModelFile

    head, report, _ = learned
    assert report.calibrated and report.artists >= learner.MIN_CALIBRATION_ARTISTS
    head.save(tmp_path / "many.safetensors")
    songs, labels, groups = library(centres(["alpha", "beta"], seed=8), songs=8, artists=2, seed=8)
    few, few_report = learn_head(songs, labels, groups, builtin=False)
    few.save(tmp_path / "few.safetensors")
    assert few_report.artists == 4 and not few_report.calibrated
    assert ModelFile(str(tmp_path / "many.safetensors")).calibrated
    assert not ModelFile(str(tmp_path / "few.safetensors")).calibrated


def test_the_head_file_round_trips_and_runs_as_the_built_in_model(learned, tmp_path):
    head, _, _ = learned
    path = head.save(tmp_path / "mine.safetensors")
    again = GenreHead.load(path)
    assert again.genres == head.genres and again.priors == head.priors and again.learned == head.learned
    for key in ("mean", "std", "weight", "bias", "prior_logit"):
        np.testing.assert_allclose(getattr(again, key), getattr(head, key), rtol=1e-6, atol=1e-6)
    for key in ("prior_weight", "cap", "temperature", "threshold", "margin", "mobility"):
        assert getattr(again, key) == pytest.approx(getattr(head, key))
    assert again.info == json.loads(json.dumps(head.info))
    from genrify.models.builtin import load_builtin

    model = load_builtin(head=again)
    assert model.genres == head.genres and model.near_tie_margin == pytest.approx(head.margin)
    assert load_builtin(["Gamma", "alpha"], head=again).genres == ["Gamma", "alpha"]
    with pytest.raises(ParameterError, match="knows no genre 'rock'"):
        load_builtin(["rock"], head=again)


def _rewrite(path: Path, out: Path, *, meta=None, tensors=None) -> Path:
    """A copy of a head file with its metadata and arrays changed (as a hostile file would be)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as f:
        stored = json.loads(f.metadata()["genrify"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if meta is not None:
        meta(stored)
    if tensors is not None:
        tensors(arrays)
    save_file(arrays, str(out), metadata={"genrify": json.dumps(stored)})
    return out


@pytest.mark.parametrize(
    ("meta", "tensors", "message"),
    [
        (lambda m: m.update(temperature=True), None, "temperature"),
        (lambda m: m.update(threshold="0.5"), None, "threshold"),
        (lambda m: m.update(cap=-1.0), None, "inconsistent"),
        (lambda m: m.update(margin=3.0), None, "inconsistent"),
        (lambda m: m.update(mobility=1.5), None, "inconsistent"),
        (lambda m: m.update(mobility="all"), None, "mobility"),
        (lambda m: m.update(genres=m["genres"][:-1]), None, "inconsistent"),
        (lambda m: m.update(genres=[m["genres"][0]] * len(m["genres"])), None, "inconsistent"),
        (lambda m: m.update(genres="alpha"), None, "genres"),
        (lambda m: m.update(priors=["not a tag genre"] * len(m["priors"])), None, "inconsistent"),
        (lambda m: m.update(features=["MSD_musicnn/../../etc"]), None, "inconsistent"),
        (lambda m: m.update(learned=["nobody"]), None, "inconsistent"),
        (lambda m: m.update(version=1), None, "version 1"),
        (lambda m: m.update(format="something else"), None, "not a genrify genre head"),
        (lambda m: m.pop("prior_weight"), None, "prior_weight"),
        (lambda m: m.update(learned=m["learned"][:1]), None, "not learned"),
        (None, lambda t: t.update(extra=np.zeros(3, dtype=np.float32)), "arrays"),
        (None, lambda t: t.update(bias=t["bias"].astype(np.float64)), "float32"),
        (None, lambda t: t.update(std=np.zeros_like(t["std"])), "inconsistent"),
        (None, lambda t: t.update(mean=np.full_like(t["mean"], np.nan)), "inconsistent"),
        (None, lambda t: t.update(weight=t["weight"][:-1]), "inconsistent"),
    ],
)
def test_a_damaged_or_hostile_head_file_is_refused_in_one_line(learned, tmp_path, meta, tensors, message):
    head, _, _ = learned
    good = head.save(tmp_path / "good.safetensors")
    bad = _rewrite(good, tmp_path / "bad.safetensors", meta=meta, tensors=tensors)
    with pytest.raises(ModelFileError, match=message) as caught:
        GenreHead.load(bad)
    assert "\n" not in str(caught.value) and str(bad) in str(caught.value)


def test_a_file_that_is_not_a_head_is_refused_in_one_line(learned, tmp_path):
    head, _, _ = learned
    good = head.save(tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    huge_header = tmp_path / "header.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    nan_meta = _rewrite(good, tmp_path / "nan.safetensors", meta=lambda m: m.update(cap=float("nan")))
    assert b"NaN" in nan_meta.read_bytes()  # json.dumps writes it; a strict reader must refuse it
    for path in (cut, huge_header, nan_meta, tmp_path / "absent.safetensors"):
        with pytest.raises(ModelFileError) as caught:
            GenreHead.load(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert HEAD_FORMAT == "genrify-genre-head"


def test_bad_input_is_refused_in_one_line():
    where = centres(["alpha", "beta"])
    songs, labels, groups = library(where, songs=6, artists=3)
    cases = [
        ((songs, labels[:-1], groups), "one of each per song"),
        ((songs, [()] + labels[1:], groups), "at least one genre"),
        ((songs, [("alpha",)] * len(songs), groups), "at least two genres"),
        ((songs, labels, ["one artist"] * len(songs)), "at least two artists"),
    ]
    for args, message in cases:
        with pytest.raises(ParameterError, match=message) as caught:
            learn_head(*args, builtin=False)
        assert "\n" not in str(caught.value)
    broken = [SongEmbedding("x.mp3", np.full((2, DIM), np.nan, dtype=np.float32), songs[0].taggrams, False)] + songs[1:]
    with pytest.raises(ParameterError, match="x.mp3"):
        learn_head(broken, labels, groups, builtin=False)
    with pytest.raises(ParameterError, match="no song teaches"):
        learn_head(songs, labels, groups, builtin=False, genres=["alpha", "beta", "polka"])


def test_genres_the_built_in_model_knows_take_the_tags_as_prior_and_are_compared_with_it():
    where = centres(["Rock", "Jazz", "Bossa Nova"], seed=7)
    songs, labels, groups = library(where, songs=12, artists=4, seed=7)
    head, report = learn_head(songs, labels, groups, builtin=False)
    assert dict(zip(head.genres, head.priors, strict=True)) == {"Rock": "rock", "Jazz": "jazz", "Bossa Nova": None}
    b = report.builtin
    assert b is not None and b["model"] == "the tags alone" and b["songs"] == 24 and b["genres"] == ["rock", "jazz"]
    assert 0 <= b["top1"] <= 1 and 0 <= b["learned_top1"] <= 1


@pytest.mark.parametrize(("builtin_top1", "noted"), [(0.9, True), (0.62, False)])
def test_a_built_in_model_well_ahead_on_the_songs_it_covers_is_said_in_a_note(monkeypatch, builtin_top1, noted):
    figures = {"model": "tags and packaged head", "songs": 24, "genres": ["rock", "jazz"], "top1": builtin_top1,
               "macro_recall": builtin_top1, "per_genre": {}, "learned_top1": 0.6, "learned_macro_recall": 0.6}
    monkeypatch.setattr(learner, "_builtin_figures", lambda *args: figures)
    where = centres(["Rock", "Jazz"], seed=7)
    _, report = learn_head(*library(where, songs=12, artists=4, seed=7), builtin=False)
    said = [n for n in report.notes if "it named more right than this head (top-1 0.90 against 0.60)" in n]
    assert bool(said) == noted, report.notes


def test_a_head_file_without_mobility_answers_as_before(learned, tmp_path):
    head, _, _ = learned
    old = _rewrite(head.save(tmp_path / "new.safetensors"), tmp_path / "old.safetensors", meta=lambda m: m.pop("mobility"))
    assert GenreHead.load(old).mobility == 1.0  # made before the rule: the evidence may move everything


def test_genres_left_out_of_training_choose_the_settings_and_are_reported(monkeypatch):
    """With unlearned genres in the vocabulary, each learned genre the tags know is held out in turn,
    with its artists, and its songs answered by a head that never heard it."""
    fitted = []
    real = learner.fit_path

    def spy(data, songs, Cs, learnable):
        fitted.append((np.asarray(songs).copy(), learnable.copy(), data))
        return real(data, songs, Cs, learnable)

    monkeypatch.setattr(learner, "fit_path", spy)
    where = centres(["Rock", "Jazz", "Country", "Polka"], seed=12)
    songs, labels, groups = library(where, songs=12, artists=4, seed=12)
    head, report = learn_head(songs, labels, groups, builtin=False, genres=["Rock", "Jazz", "Country", "Polka", "punk"])
    assert head.learned == ["Rock", "Jazz", "Country", "Polka"] and head.priors[-1] == "punk"
    assert report.settings["mobility"] in learner.GRID_MOBILITY and head.mobility == report.settings["mobility"]
    held = report.held_out
    assert held is not None and sorted(held["genres"]) == ["Country", "Jazz", "Rock"]  # Polka has no tags
    assert all(e["songs"] == 12 and 0 <= e["kept"] <= 1 and 0 <= e["tags_kept"] <= 1 for e in held["genres"].values())
    assert held["kept"] == pytest.approx(np.mean([e["kept"] for e in held["genres"].values()]))
    left_out = [(s, ln, d) for s, ln, d in fitted if ln.sum() == 3]
    assert len(left_out) == 3 * (5 + 1)  # each genre, in each outer fold and over all songs
    for train, learnable, data in left_out:
        (missing,) = np.flatnonzero(~learnable[:4])
        assert not data.truth[train, missing].any()  # none of its songs
        of_genre = np.flatnonzero(data.truth[:, missing])
        assert not set(data.groups[train]) & set(data.groups[of_genre])  # nor any song of their artists
    assert any("never heard" in line for line in report.lines())


def test_two_artists_are_enough_to_learn_and_one_artist_genres_are_noted():
    where = centres(["alpha", "beta"], seed=8)
    songs, labels, groups = library(where, songs=8, artists=1, seed=8)  # one artist per genre
    head, report = learn_head(songs, labels, groups, builtin=False)
    assert report.folds == 2 and report.artists == 2 and sorted(head.learned) == ["alpha", "beta"]
    # Each fold holds out a genre's only artist: never heard in training, so no better than a guess.
    one_artist = [n for n in report.notes if "one artist" in n]
    assert report.cv_top1 <= 0.5 and len(one_artist) == 2
    assert all(note.endswith("(recall 0 expected)") for note in one_artist)  # no tag knows them
    # Two artists calibrate nothing: the head says so, and classify will not promise a share right.
    assert not report.calibrated and any(n.startswith("only 2 artists") for n in report.notes)
    assert report.fold_settings == [learner.FALLBACK, learner.FALLBACK]
    # A genre the tags know is still answered through them when its one artist is held out.
    songs, labels, groups = library(centres(["Rock", "beta"], seed=8), songs=8, artists=1, seed=8)
    notes = [n for n in learn_head(songs, labels, groups, builtin=False)[1].notes if "one artist" in n]
    assert [n.split(" is by")[0] + " " + n[n.index("("):] for n in notes] == [
        "every song of Rock (what recall it has comes from the tags alone)", "every song of beta (recall 0 expected)"]


def test_learner_keeps_its_maths_in_numpy():
    tree = ast.parse((REPO / "src" / "genrify" / "learn" / "learner.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.split(".")[0] == "torch"}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "gtzan-excerpts").is_dir(), reason="needs ../shared/data/gtzan-excerpts")
def test_the_shipped_head_is_the_learners_and_meets_the_accuracy_targets():
    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "scripts"))
    from builtin_accuracy import GAIN, GTZAN, head_answers, recall_table, tag_map_answers
    from train_builtin_head import learn, load_excerpts

    from genrify.models.builtin import GENRE_TAGS

    songs, labels, _ = load_excerpts()
    head, report = learn()
    shipped = GenreHead.load()
    assert shipped.genres == head.genres == list(GENRES) and shipped.info["report"]["settings"] == report.settings
    truth = [g for (g,) in labels]
    ours = {"all": recall_table(head_answers(report.answers, head.genres, head.genres), truth),
            "ten": recall_table(head_answers(report.answers, head.genres, list(GTZAN)), truth)}
    tags_ten = [g for g in GTZAN if g in GENRE_TAGS] + ["dance"]
    tags = {"all": recall_table(tag_map_answers(songs, list(GENRE_TAGS)), truth),
            "ten": recall_table(tag_map_answers(songs, tags_ten), truth)}
    for key in ("all", "ten"):
        assert ours[key][0] - tags[key][0] >= GAIN and ours[key][1] - tags[key][1] >= GAIN
        assert min(ours[key][2].values()) > 0
    assert report.settings["margin"] > 0


def test_the_regressions_are_scikit_learns():
    from sklearn.linear_model import LogisticRegression

    from genrify.learn.learner import fit_one_vs_rest

    rng = np.random.default_rng(11)
    z = rng.normal(size=(300, 20))
    truth = np.stack([z[:, 0] + rng.normal(size=300) > 0, z[:, 1] - z[:, 2] + rng.normal(size=300) > 0.5], axis=1)
    weights = rng.uniform(0.2, 1.0, size=300)
    for C, (w, b) in zip((0.01, 0.1), fit_one_vs_rest(z, truth, weights, (0.01, 0.1)), strict=True):
        for j in range(2):
            ref = LogisticRegression(C=C, tol=1e-8, max_iter=10000).fit(z, truth[:, j], sample_weight=weights)
            np.testing.assert_allclose(w[:, j], ref.coef_[0], atol=2e-3)
            assert b[j] == pytest.approx(ref.intercept_[0], abs=2e-3)


def test_folds_of_a_small_library_keep_artists_apart_where_no_genre_fills_every_fold():
    from genrify.learn.learner import group_folds

    # Three songs per genre, each by its own artist: too few for five stratified folds.
    strata = np.repeat(np.arange(4), 3)
    groups = np.array([f"artist{i}" for i in range(12)])
    folds = group_folds(strata, groups, 5, seed=0)
    assert len(folds) == 5
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(12))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
