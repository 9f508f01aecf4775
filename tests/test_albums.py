"""Album mode: grouping tracks into albums, pooling their answers, the genres each track gets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import tone
from mutagen.flac import FLAC

from genrify.classify.albums import (
    DEFAULT_POOLING,
    POOLING_RULES,
    Album,
    AlbumAnswer,
    album_answers,
    group_albums,
    pool_album,
    track_ranking,
)
from genrify.classify.predict import Prediction
from genrify.errors import ParameterError

GENRES = ["rock", "jazz", "pop"]


# --- grouping -------------------------------------------------------------------------------------


def _flac(path: Path, *, album: str | None = None, albumartist: str | None = None, artist: str | None = None) -> str:
    """A short FLAC file with the given tags (Vorbis comments, as taggers write them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(0.2, 22050), 22050)
    f = FLAC(path)
    for key, value in (("album", album), ("albumartist", albumartist), ("artist", artist)):
        if value is not None:
            f[key] = [value]
    f.save()
    return str(path)


def _keys(albums: list[Album]) -> list[tuple[str, ...]]:
    return [a.key for a in albums]


def test_untagged_tracks_group_by_folder(tmp_path):
    a1 = _flac(tmp_path / "A" / "1.flac")
    b1 = _flac(tmp_path / "B" / "1.flac")
    a2 = _flac(tmp_path / "A" / "2.flac")
    albums = group_albums([a1, b1, a2, a1])  # a1 twice: counted once
    assert [a.tracks for a in albums] == [(a1, a2), (b1,)]  # albums in order of their first track
    assert _keys(albums) == [("folder", str(tmp_path / "A")), ("folder", str(tmp_path / "B"))]


def test_a_folder_with_several_tagged_albums_splits_by_tags(tmp_path):
    folder = tmp_path / "Downloads"
    x1 = _flac(folder / "x1.flac", album="Blue Train", artist="John Coltrane")
    y1 = _flac(folder / "y1.flac", album="Paranoid", artist="Black Sabbath")
    x2 = _flac(folder / "x2.flac", album="Blue Train", artist="John Coltrane")
    loose1 = _flac(folder / "loose1.flac")
    loose2 = _flac(folder / "loose2.flac", artist="Someone")  # an artist but no album: untagged as an album
    albums = group_albums([x1, y1, x2, loose1, loose2])
    assert [a.tracks for a in albums] == [(x1, x2), (y1,), (loose1, loose2)]
    assert albums[0].key == ("tags", "john coltrane", "blue train")
    assert albums[0].name == "John Coltrane - Blue Train"
    # untagged tracks do not join the folder's tagged albums
    assert albums[2].key == ("folder", str(folder))


def test_a_tagged_album_across_folders_is_one_album_and_spelling_does_not_split_it(tmp_path):
    cd1 = _flac(tmp_path / "Album" / "CD1" / "01.flac", album="The Wall", albumartist="Pink Floyd")
    cd2 = _flac(tmp_path / "Album" / "CD2" / "01.flac", album="the  wall ", albumartist="PINK FLOYD")
    assert [a.tracks for a in group_albums([cd1, cd2])] == [(cd1, cd2)]


def test_the_album_artist_holds_a_compilation_together(tmp_path):
    folder = tmp_path / "Now 42"
    tracks = [_flac(folder / f"{i}.flac", album="Now 42", albumartist="Various Artists", artist=f"Band {i}")
              for i in range(3)]
    albums = group_albums(tracks)
    assert len(albums) == 1 and albums[0].tracks == tuple(tracks)


def test_an_album_tag_without_artist_does_not_join_folders(tmp_path):
    # "Greatest Hits" alone names many albums: without an artist the folder decides.
    a = _flac(tmp_path / "A" / "1.flac", album="Greatest Hits")
    b = _flac(tmp_path / "B" / "1.flac", album="Greatest Hits")
    a2 = _flac(tmp_path / "A" / "2.flac", album="Greatest Hits")
    assert [al.tracks for al in group_albums([a, b, a2])] == [(a, a2), (b,)]


def test_an_unreadable_file_counts_as_untagged(tmp_path):
    bad = tmp_path / "A" / "broken.flac"
    bad.parent.mkdir()
    bad.write_bytes(b"not audio at all")
    good = _flac(tmp_path / "A" / "1.flac")
    assert [a.tracks for a in group_albums([str(bad), good])] == [(str(bad), good)]


def test_paths_may_be_path_objects(tmp_path):
    a = _flac(tmp_path / "A" / "1.flac", album="X", artist="Y")
    assert group_albums([Path(a)])[0].tracks == (os.fspath(a),)


# --- pooling -------------------------------------------------------------------------------------


def _pred(probs: list[float], path: str | None = None, duration: float = 30.0, genres: list[str] | None = None) -> Prediction:
    p = np.array(probs, dtype=np.float64)
    return Prediction(genres=list(genres or GENRES), probabilities=p, votes=p.copy(), segments=8, duration=duration,
                      path=path)


def _album(n_agree: int = 5) -> list[Prediction]:
    """An album of rock tracks the model is moderately sure of, and one loud jazz outlier."""
    tracks = [_pred([0.6, 0.3, 0.1], path=f"t{i}") for i in range(n_agree)]
    return [*tracks, _pred([0.01, 0.98, 0.01], path="outlier")]


def test_one_loud_outlier_does_not_flip_an_album_of_five_agreeing_tracks():
    pooled = pool_album(_album())
    assert GENRES[int(np.argmax(pooled))] == "rock"
    assert pooled.sum() == pytest.approx(1.0)


def test_the_geometric_mean_lets_one_sure_track_veto_the_album():
    # Why it is not the default: the outlier's 0.01 for rock outweighs five tracks' 0.6.
    pooled = pool_album(_album(), rule="geometric")
    assert GENRES[int(np.argmax(pooled))] == "jazz"
    assert DEFAULT_POOLING != "geometric"


def test_each_rule_computes_what_it_says():
    preds = [_pred([1.0, 0.0, 0.0], duration=10.0), _pred([0.0, 1.0, 0.0], duration=30.0),
             _pred([0.5, 0.5, 0.0], duration=0.0)]
    np.testing.assert_allclose(pool_album(preds, rule="mean"), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(pool_album(preds, rule="duration"), [0.25, 0.75, 0.0])
    geo = pool_album([_pred([0.8, 0.2, 0.0]), _pred([0.2, 0.8, 0.0])], rule="geometric")
    # sqrt(0.8 * 0.2) for both, the floored zero far below: renormalised to ~0.5 each
    np.testing.assert_allclose(geo, [0.5, 0.5, 0.0], atol=1e-5)
    assert np.all(np.isfinite(geo)) and geo.sum() == pytest.approx(1.0)


def test_duration_weighting_without_durations_is_the_mean():
    preds = [_pred([1.0, 0.0, 0.0], duration=0.0), _pred([0.0, 1.0, 0.0], duration=float("nan"))]
    np.testing.assert_allclose(pool_album(preds, rule="duration"), [0.5, 0.5, 0.0])


def test_a_single_track_album_keeps_its_own_answer():
    for rule in POOLING_RULES:
        np.testing.assert_allclose(pool_album([_pred([0.2, 0.7, 0.1])], rule=rule), [0.2, 0.7, 0.1], atol=1e-9)


def test_pooling_refuses_what_it_cannot_pool():
    with pytest.raises(ParameterError, match="at least one"):
        pool_album([])
    with pytest.raises(ParameterError, match="one model"):
        pool_album([_pred([0.5, 0.5, 0.0]), _pred([0.5, 0.5, 0.0], genres=["rock", "pop", "jazz"])])
    with pytest.raises(ParameterError, match="unknown pooling rule"):
        pool_album([_pred([0.5, 0.5, 0.0])], rule="median")


# --- album answers -------------------------------------------------------------------------------


def test_every_track_of_an_album_gets_the_albums_answer():
    preds = _album()
    rock_album = Album(("folder", "/music/rock"), tuple(p.path for p in preds) + ("failed-track",))
    other = Album(("folder", "/music/other"), ("lone",))
    never = Album(("folder", "/music/nothing"), ("also-failed",))
    lone = _pred([0.1, 0.2, 0.7], path="lone")
    answers = album_answers([*preds, lone], [rock_album, other, never])
    assert set(answers) == {*(p.path for p in preds), "lone"}  # failed tracks and empty albums: no entry
    rock = answers["outlier"]
    assert all(answers[p.path] is rock for p in preds)
    assert rock.album == rock_album and rock.tracks == 6  # the failed track is not pooled
    assert rock.genre == "rock" and rock.top(2)[0] == ("rock", pytest.approx(rock.confidence))
    np.testing.assert_allclose(rock.probabilities, pool_album(preds))
    assert answers["lone"].genre == "pop"


def test_an_album_answer_is_unsure_where_its_tracks_disagree():
    split = album_answers([_pred([0.8, 0.1, 0.1], path="a"), _pred([0.1, 0.8, 0.1], path="b"),
                           _pred([0.1, 0.1, 0.8], path="c")], [Album(("folder", "f"), ("a", "b", "c"))])["a"]
    assert split.low_confidence  # a third each: below the model's threshold of 0.5
    sure = AlbumAnswer(album=Album(("folder", "f"), ("a",)), genres=GENRES, probabilities=np.array([0.9, 0.1, 0.0]))
    assert not sure.low_confidence


def test_an_album_of_none_of_the_genres_asked_for_is_unsure_however_its_tracks_agree():
    import dataclasses

    from genrify.classify.albums import track_choice

    album = Album(("folder", "f"), ("a", "b"))
    tracks = [dataclasses.replace(_pred([0.9, 0.05, 0.05], path=p), asked_share=share) for p, share in (("a", 0.2), ("b", 0.4))]
    answer = album_answers(tracks, [album])["a"]
    assert answer.asked_share == pytest.approx(0.3) and answer.confidence > 0.8 and answer.low_confidence
    assert track_choice(tracks[0], answer)[1]  # every track of it is left alone unless --tag-unsure
    held = [dataclasses.replace(t, asked_share=0.7) for t in tracks]
    assert not album_answers(held, [album])["a"].low_confidence
    unasked = album_answers([_pred([0.9, 0.05, 0.05], path="a")], [album])["a"]
    assert unasked.asked_share is None and not unasked.low_confidence


# --- the genres a track gets -----------------------------------------------------------------------


def _answers() -> tuple[list[Prediction], dict[str, AlbumAnswer]]:
    preds = [*_album(), _pred([0.35, 0.45, 0.2], path="unsure")]
    return preds, album_answers(preds, [Album(("folder", "f"), tuple(p.path for p in preds))])


def test_without_own_genre_every_track_gets_the_albums_ranking():
    preds, answers = _answers()
    rankings = [track_ranking(p, answers[p.path]) for p in preds]
    assert all(r == rankings[0] for r in rankings)
    assert [g for g, _ in rankings[0]] == ["rock", "jazz", "pop"]


def test_own_genre_is_added_second_where_the_track_is_sure_of_another():
    preds, answers = _answers()
    by = {p.path: p for p in preds}
    outlier = track_ranking(by["outlier"], answers["outlier"], own_genre_above=0.5)
    # jazz comes second with the track's own probability, and is not repeated further down
    album = answers["outlier"]
    assert outlier == [album.top(1)[0], ("jazz", pytest.approx(0.98)), ("pop", pytest.approx(album.probabilities[2]))]
    # a track that agrees with its album, and one whose other genre is too unsure: the album's ranking
    album_ranking = track_ranking(by["t0"], answers["t0"])
    assert track_ranking(by["t0"], answers["t0"], own_genre_above=0.5) == album_ranking
    assert track_ranking(by["unsure"], answers["unsure"], own_genre_above=0.5) == album_ranking
    # "exceeds": a probability equal to the threshold is not enough
    assert track_ranking(by["outlier"], answers["outlier"], own_genre_above=0.98) == album_ranking
    assert track_ranking(by["unsure"], answers["unsure"], own_genre_above=0.4)[1][0] == "jazz"


def test_own_genre_threshold_must_be_a_probability_and_models_must_match():
    preds, answers = _answers()
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ParameterError, match="own_genre_above"):
            track_ranking(preds[0], answers[preds[0].path], own_genre_above=bad)
    stranger = _pred([0.5, 0.5, 0.0], path="t0", genres=["rock", "pop", "jazz"])
    with pytest.raises(ParameterError, match="genres differ"):
        track_ranking(stranger, answers["t0"])


def test_track_choice_takes_the_albums_ranking_and_its_unsure_flag():
    from genrify.classify.albums import Album, album_answers, track_choice
    from genrify.classify.predict import Prediction

    def answer(path: str, probs: list[float]) -> Prediction:
        p = np.asarray(probs)
        return Prediction(genres=["rock", "jazz", "pop"], probabilities=p, votes=p, segments=1, duration=60.0,
                          path=path)

    sure = [answer(f"/a/{i}.mp3", [0.9, 0.05, 0.05]) for i in range(4)]
    doubtful = answer("/a/4.mp3", [0.4, 0.35, 0.25])  # unsure alone
    tracks = [*sure, doubtful]
    answers = album_answers(tracks, [Album(key=("folder", "/a"), tracks=tuple(t.path for t in tracks))])
    assert doubtful.low_confidence
    ranking, unsure = track_choice(doubtful, answers[doubtful.path])
    assert ranking[0][0] == "rock" and not unsure  # the album is sure: the doubtful track gets its genre
    alone, unsure = track_choice(doubtful, None)
    assert alone == doubtful.top(3) and unsure


def test_a_track_that_is_not_music_is_never_tagged_even_on_a_sure_album_or_with_tag_unsure():
    from dataclasses import replace

    from genrify.classify.albums import Album, album_answers, track_choice
    from genrify.collection.tagpolicy import TagPolicy

    sure = [_pred([0.9, 0.05, 0.05], path=f"/a/{i}.mp3") for i in range(4)]
    noise = replace(_pred([0.9, 0.05, 0.05], path="/a/noise.mp3"), not_music="noise")
    tracks = [*sure, noise]
    answers = album_answers(tracks, [Album(key=("folder", "/a"), tracks=tuple(t.path for t in tracks))])
    assert not answers[noise.path].low_confidence  # the album itself is sure ...
    tag_unsure = TagPolicy(skip_unsure=False)
    for album in (answers[noise.path], None):
        ranking, unsure = track_choice(noise, album)
        assert ranking == [] and unsure  # ... but its noise track gets nothing, even with --tag-unsure
        assert tag_unsure.genres_for(ranking, unsure=unsure) == []
    ranking, _ = track_choice(sure[0], answers[sure[0].path])
    assert tag_unsure.genres_for(ranking, unsure=False)  # the album's music tracks are still tagged
