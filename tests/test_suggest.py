"""Active learning (``genrify learn --suggest N``): uncertain songs, spread over the kinds of music.

The selection is tested on synthetic embeddings with a hand-made head whose answer depends on one
dimension only (so each song's margin is known), and whose songs lie in clusters along others.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genrify.collection.organize import is_genrify_playlist
from genrify.errors import ParameterError, UsageError
from genrify.learn.embedcache import SongEmbedding
from genrify.models.builtin import GenreHead
from genrify.learn.suggest import (
    METHODS,
    check_playlist,
    choose,
    margins,
    playlist_text,
    suggest,
    write_playlist,
)

DIM = 200


def head_on_dimension_zero(scale: float = 4.0) -> GenreHead:
    """Two genres, no tag prior: the log-odds of "Beat" over "Calm" are ``scale * x[0]`` (the
    standardisation is the identity), so a song near ``x[0] = 0`` is a coin toss."""
    weight = np.zeros((DIM, 2))
    weight[0] = [scale / 2, -scale / 2]
    return GenreHead(genres=["Beat", "Calm"], priors=[None, None], mean=np.zeros(DIM), std=np.ones(DIM), weight=weight,
                     bias=np.zeros(2), prior_logit=np.zeros(2), learned=["Beat", "Calm"], prior_weight=0.0,
                     cap=50.0, temperature=1.0)


def song(name: str, x0: float, where: tuple[int, float], rng: np.random.Generator, segments: int = 2) -> SongEmbedding:
    """A song whose segments lie at ``x[0] = x0`` and ``x[dim] = value`` (plus a little noise)."""
    x = 0.01 * rng.standard_normal((segments, DIM))
    x[:, 0] += x0
    x[:, where[0]] += where[1]
    taggrams = {"MSD_musicnn": np.full((segments, 50), 0.02, np.float32), "MTT_musicnn": np.full((segments, 50), 0.02, np.float32)}
    return SongEmbedding(path=name, embedding=x.astype(np.float32), taggrams=taggrams, short=False)


def two_uncertain_clusters(rng: np.random.Generator) -> list[SongEmbedding]:
    """Cluster "a": ten near-duplicates, the most uncertain of all; cluster "b": ten others, a
    little less uncertain, far from "a"; cluster "c": twenty songs the head is sure of."""
    a = [song(f"a{i}", 0.001 * i, (5, 6.0), rng) for i in range(10)]
    b = [song(f"b{i}", 0.05 + 0.001 * i, (5, -6.0), rng) for i in range(10)]
    c = [song(f"c{i}", 3.0 if i % 2 else -3.0, (9, 6.0), rng) for i in range(20)]
    return a + b + c


# --- margins ---------------------------------------------------------------------------------------


def test_margins_are_the_gap_between_the_two_most_probable_genres():
    prob = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.34, 0.33, 0.33], [1.0, 0.0, 0.0]])
    assert margins(prob) == pytest.approx([0.2, 0.7, 0.01, 1.0])
    assert margins(np.ones((3, 1))) == pytest.approx([1.0, 1.0, 1.0])  # one genre: nothing to hesitate between
    with pytest.raises(ParameterError):
        margins(np.ones(3))


def test_a_suggestion_carries_the_heads_guess_its_probability_and_margin():
    rng = np.random.default_rng(0)
    head = head_on_dimension_zero()
    songs = [song("sure-beat", 1.0, (5, 1.0), rng), song("unsure", -0.05, (5, 1.0), rng)]
    got = {s.path: s for s in suggest(head, songs, 5)}
    for name, x0 in (("sure-beat", 1.0), ("unsure", -0.05)):
        z = 4.0 * x0  # the segments' log-odds of Beat over Calm (noise of 0.01 on x0)
        p_beat = 1 / (1 + np.exp(-z))
        guess = "Beat" if p_beat >= 0.5 else "Calm"
        assert got[name].guess == guess
        assert got[name].probability == pytest.approx(max(p_beat, 1 - p_beat), abs=0.02)
        assert got[name].margin == pytest.approx(abs(2 * p_beat - 1), abs=0.04)
    # Most uncertain first.
    assert [s.path for s in suggest(head, songs, 5)] == ["unsure", "sure-beat"]


# --- the choice ------------------------------------------------------------------------------------


def test_suggestions_cover_both_uncertain_clusters_not_one_clusters_near_duplicates():
    songs = two_uncertain_clusters(np.random.default_rng(1))
    head = head_on_dimension_zero()
    # Margin sampling alone takes the most uncertain songs: all of cluster "a", near-duplicates.
    from genrify.learn.learner import predict_songs
    from genrify.learn.suggest import song_means

    prob = predict_songs(head, songs)
    plain = [songs[i].path for i in choose(prob, song_means(songs), 4, method="margin")]
    assert all(p.startswith("a") for p in plain)
    for n in (2, 4):
        picked = [s.path for s in suggest(head, songs, n)]
        assert len(picked) == len(set(picked)) == n
        assert {"a", "b"} <= {p[0] for p in picked}, picked  # both kinds of uncertain music
        assert picked[0] == songs[int(np.argmin(margins(prob)))].path  # the most uncertain song of all comes first
        # Near-duplicates are not suggested together: each pick from its own cluster.
        assert sum(p.startswith("a") for p in picked) <= n // 2, picked
    for method in ("clusters", "weighted-clusters"):
        picked = [songs[i].path for i in choose(prob, song_means(songs), 2, method=method)]
        assert sorted(p[0] for p in picked) == ["a", "b"], (method, picked)  # none of the songs it is sure of
    # The same seed, the same suggestions.
    assert suggest(head, songs, 4, seed=3) == suggest(head, songs, 4, seed=3)


def test_every_method_gives_n_distinct_songs_most_uncertain_first():
    rng = np.random.default_rng(2)
    prob = rng.dirichlet(np.ones(4), size=60)
    features = rng.standard_normal((60, 8))
    m = margins(prob)
    for method in METHODS:
        picked = choose(prob, features, 7, method=method, seed=1)
        assert len(picked) == len(set(picked)) == 7, method
        assert list(m[picked]) == sorted(m[picked]), method
    assert choose(prob, features, 7, method="margin") == list(np.argsort(m)[:7])
    with pytest.raises(ParameterError):
        choose(prob, features, 7, method="entropy")
    with pytest.raises(ParameterError):
        choose(prob, features, 0)


def test_more_songs_asked_than_candidates_gives_every_candidate():
    rng = np.random.default_rng(3)
    songs = two_uncertain_clusters(rng)[:5]
    got = suggest(head_on_dimension_zero(), songs, 50)
    assert sorted(s.path for s in got) == sorted(s.path for s in songs)
    assert [s.margin for s in got] == sorted(s.margin for s in got)
    assert suggest(head_on_dimension_zero(), [], 5) == []
    with pytest.raises(ParameterError):
        suggest(head_on_dimension_zero(), songs, 0)


def test_copies_of_one_song_still_give_n_suggestions():
    # k-means finds fewer distinct clusters than asked: the most uncertain others fill the gap.
    rng = np.random.default_rng(4)
    one = song("x", 0.0, (5, 1.0), rng)
    songs = [SongEmbedding(f"copy{i}", one.embedding, one.taggrams, False) for i in range(6)]
    songs.append(song("other", 0.2, (9, 3.0), rng))
    got = suggest(head_on_dimension_zero(), songs, 3)
    assert len({s.path for s in got}) == 3


# --- the playlist ----------------------------------------------------------------------------------


def _suggestions(folder: Path) -> list:
    from genrify.learn.suggest import Suggestion

    return [Suggestion(str(folder / "music" / "b song.flac"), "Jazz", 0.41, 0.02),
            Suggestion(str(folder / "#1.mp3"), "Hip-Hop", 0.38, 0.05)]  # beside the playlist: "#" starts a comment


def test_the_playlist_is_marked_as_genrifys_and_relative_to_its_folder(tmp_path):
    path = tmp_path / "next.m3u"
    write_playlist(path, _suggestions(tmp_path))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U" and lines[1].startswith("#GENRIFY:") and is_genrify_playlist(path)
    assert [line for line in lines if not line.startswith("#")] == ["music/b song.flac", "./#1.mp3"]
    assert "#EXTINF:-1,b song (genrify guesses Jazz, 0.41)" in lines
    # genrify's own playlist is replaced by the next run.
    write_playlist(path, _suggestions(tmp_path)[:1])
    assert path.read_text(encoding="utf-8").count("music/") == 1
    # A line break cannot be a playlist line: the song is left out, not the playlist broken.
    from genrify.learn.suggest import Suggestion

    assert "bad" not in playlist_text([Suggestion(str(tmp_path / "bad\nname.mp3"), "Jazz", 0.5, 0.1)], path)


def test_a_file_genrify_did_not_write_is_never_replaced(tmp_path):
    mine = tmp_path / "mine.m3u"
    mine.write_text("#EXTM3U\nsong.mp3\n")
    link = tmp_path / "link.m3u"
    theirs = tmp_path / "theirs.m3u"
    write_playlist(theirs, _suggestions(tmp_path))
    os.symlink(theirs, link)  # a link, even to genrify's playlist, is a person's arrangement
    for path in (mine, link, tmp_path):
        with pytest.raises(UsageError, match="genrify did not write it"):
            write_playlist(path, _suggestions(tmp_path))
    assert mine.read_text() == "#EXTM3U\nsong.mp3\n" and os.path.islink(link)
    with pytest.raises(UsageError, match="does not exist"):
        check_playlist(tmp_path / "no" / "such.m3u")


# --- the command -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Synthetic songs of two genres in artist folders: four of each tagged, three of each not."""
    from genrify.audio.synth import SynthSpec, song_paths, write_dataset
    from genrify.collection import tags

    root = tmp_path_factory.mktemp("suggest")
    spec = SynthSpec(genres=("metal", "classical"), per_genre=7, seconds=3.5, seed=5, fmt="flac")
    write_dataset(root / "made", spec)
    lib, untagged = root / "lib", []
    for path, genre, index in song_paths(root / "made", spec):
        dest = lib / f"artist{index}" / f"{genre}-{index}{path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        if index < 4:
            tags.write_genre(dest, [genre.title()])
        else:
            untagged.append(dest)
    return lib, untagged


def run(*args: object):
    # Wide enough that the table's paths are not wrapped.
    return CliRunner().invoke(app(), [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "400"})


def app():
    from genrify.cli import app

    return app


def test_learn_suggest_prints_the_table_and_writes_the_playlist(tmp_path, library):
    pytest.importorskip("genrify.learn.learner")
    lib, untagged = library
    model, cache, playlist = tmp_path / "m.safetensors", tmp_path / "emb.sqlite", tmp_path / "next.m3u8"
    result = run("learn", lib, "--out", model, "--cache-file", cache, "--jobs", "1", "--min-songs", "3",
                 "--suggest", "2", "--playlist", playlist)
    assert result.exit_code == 0, result.output
    assert "2 songs to tag next" in result.output and "current guess" in result.output
    assert "tag them in any tagger, then learn again" in result.output
    assert "GENRIFY field" not in result.output  # no song holds a guess of genrify's
    # Songs of fewer than 10 artists calibrate nothing: no share right is promised, the note says why.
    assert "right now" not in result.output and "only " in result.output and "artists: too few" in result.output
    lines = playlist.read_text(encoding="utf-8").splitlines()
    assert is_genrify_playlist(playlist)
    entries = [line for line in lines if not line.startswith("#")]
    assert len(entries) == 2 and {(tmp_path / e).resolve() for e in entries} <= {p.resolve() for p in untagged}
    for entry in entries:
        assert Path(entry).name in result.output  # each listed in the table too
    # Learning again: the untagged songs' embeddings came from the cache, and the playlist is replaced.
    again = run("learn", lib, "--out", model, "--cache-file", cache, "--jobs", "1", "--min-songs", "3",
                "--suggest", "10", "--playlist", playlist)
    assert again.exit_code == 0, again.output
    assert "6 songs to tag next" in again.output  # all six untagged songs: fewer than asked
    assert len([line for line in playlist.read_text().splitlines() if not line.startswith("#")]) == 6
    # Silence without a genre: neither suggested nor promised a genre by the next step.
    import soundfile as sf

    sf.write(lib / "silence.wav", np.zeros(22050 * 4, dtype=np.float32), 22050)
    third = run("learn", lib, "--out", model, "--cache-file", cache, "--jobs", "1", "--min-songs", "3",
                "--suggest", "10")
    assert third.exit_code == 0, third.output
    said = " ".join(third.output.split())
    assert "6 songs to tag next" in said and "gives the 6 songs without a genre one (1 not music left alone)" in said
    (lib / "silence.wav").unlink()


def test_learn_refuses_a_playlist_genrify_did_not_write_before_any_work(tmp_path, library):
    lib, _ = library
    mine = tmp_path / "mine.m3u"
    mine.write_text("#EXTM3U\nfavourite.mp3\n")
    model = tmp_path / "m.safetensors"
    result = run("learn", lib, "--out", model, "--no-cache", "--suggest", "2", "--playlist", mine)
    assert result.exit_code == 2 and "genrify did not write it" in result.output
    assert mine.read_text() == "#EXTM3U\nfavourite.mp3\n" and not model.exists()
    assert run("learn", lib, "--out", model, "--no-cache", "--playlist", tmp_path / "p.m3u").exit_code == 2
    assert run("learn", lib, "--out", model, "--no-cache", "--suggest", "0").exit_code == 2
    assert not model.exists()


def test_suggest_files_embeds_the_segments_it_is_told_to(monkeypatch):
    """Without a cache (beets' ``cache: no``), the segments come from ``max_segments``, as when
    classifying: the suggestions must judge the songs on the same segments the model answers from."""
    import genrify.learn.embedcache as embedcache
    from genrify.learn.suggest import Suggestions, suggest_files

    asked: list[int | None] = []

    def fake_embed_songs(paths, **kwargs):
        asked.append(kwargs.get("max_segments"))
        return iter(())

    monkeypatch.setattr(embedcache, "embed_songs", fake_embed_songs)
    assert suggest_files(head_on_dimension_zero(), ["a.mp3"], 1, max_segments=3) == Suggestions([], 0, None, [])
    assert asked == [3]


def test_suggest_files_says_how_many_of_the_songs_without_a_genre_to_expect_right(monkeypatch):
    """The head's mean confidence over every candidate answered: a coin toss (0.5) and a sure song
    (about 1) expect about three in four right; a song that cannot be decoded is not counted."""
    import genrify.learn.embedcache as embedcache
    from genrify.learn.embedcache import EmbedFailure
    from genrify.learn.suggest import Suggestions, suggest_files

    rng = np.random.default_rng(0)
    songs = {"toss": song("toss", 0.0, (5, 1.0), rng), "sure": song("sure", 3.0, (5, -1.0), rng)}

    def fake_embed_songs(paths, **kwargs):
        for p in paths:
            yield songs[p] if p in songs else EmbedFailure(p, "cannot be decoded")

    monkeypatch.setattr(embedcache, "embed_songs", fake_embed_songs)
    found = suggest_files(head_on_dimension_zero(), ["toss", "broken", "sure"], 1)
    sure = 1 / (1 + np.exp(-4.0 * 3.0))  # the head's log-odds are 4 x[0]
    assert found.candidates == 2 and [f.path for f in found.failed] == ["broken"]
    assert found.expected_accuracy == pytest.approx((0.5 + sure) / 2, abs=0.01)
    assert [s.path for s in found.picks] == ["toss"]
    assert found.expectation() == f"of the 2 readable songs without a genre, the model would tag about {found.expected_accuracy:.0%} right now"
    assert Suggestions([], 0, None).expectation() == ""


def test_songs_flagged_not_music_are_neither_suggested_nor_in_the_figure(monkeypatch):
    import dataclasses

    import genrify.learn.embedcache as embedcache
    from genrify.learn.suggest import suggest_files

    rng = np.random.default_rng(0)
    songs = {"toss": song("toss", 0.0, (5, 1.0), rng), "sure": song("sure", 3.0, (5, -1.0), rng),
             "talk": dataclasses.replace(song("talk", 0.0, (5, 1.0), rng), not_music="speech")}
    monkeypatch.setattr(embedcache, "embed_songs", lambda paths, **kwargs: (songs[p] for p in paths))
    found = suggest_files(head_on_dimension_zero(), ["talk", "toss", "sure"], 3)
    assert [s.path for s in found.picks] == ["toss", "sure"] and found.candidates == 2 and found.not_music == 1
    assert found.expectation().startswith("of the 2 readable songs without a genre (1 file not music left out), ")


def test_learn_suggest_says_how_to_confirm_a_guess_genrify_wrote(tmp_path, library):
    pytest.importorskip("genrify.learn.learner")
    from genrify.collection.tagpolicy import Provenance
    from genrify.collection.tags import write_genre

    lib, untagged = library
    copy = tmp_path / "lib"
    shutil.copytree(lib, copy)
    guessed = copy / untagged[0].relative_to(lib)
    write_genre(guessed, ["Metal"], provenance=Provenance(genres=("Metal",), model="genrify-musicnn", version="0"))
    result = run("learn", copy, "--out", tmp_path / "m.safetensors", "--no-cache", "--jobs", "1", "--min-songs", "3",
                 "--suggest", "2")
    assert result.exit_code == 0, result.output
    assert ("note: 1 song without a genre of yours holds one genrify wrote; to confirm it as yours, delete the "
            "song's GENRIFY field") in " ".join(result.output.split())


def test_the_figure_leaves_out_the_songs_of_other_genres_and_says_so():
    from genrify.learn.suggest import Suggestions

    said = Suggestions([], 204, 0.76, not_music=2, other_genre=166).expectation()
    assert said == ("of the 204 readable songs without a genre (2 files not music left out), 166 are of other genres "
                    "by the built-in model's check (left untagged); the model would tag the other 38 about 76% right now")
    every = Suggestions([], 5, None, other_genre=5).expectation()
    assert every.endswith("the built-in model finds every one of other genres: the model would leave them untagged")
