from __future__ import annotations

import dataclasses

import pytest
from helpers import SHARED

from genrify.errors import ParameterError, SplitError
from genrify.learn.splits import make_split, read_split_file, song_keys, split_from_file
from genrify.store.store import StoredTrack


def track(genre: str, i: int, artist: str | None = None) -> StoredTrack:
    return StoredTrack(f"/m/{genre}/{genre}.{i:05d}.wav", genre, artist, 30.0, 1, 1, 1292, "done", None, "x", ())


def library(per_genre: int = 20, genres=("blues", "jazz", "rock"), artists: int = 0) -> list[StoredTrack]:
    return [
        track(g, i, f"{g}-artist-{i % artists}" if artists else None) for g in genres for i in range(per_genre)
    ]


def test_song_split_is_stratified_disjoint_and_seeded():
    tracks = library()
    split = make_split(tracks, valid=0.15, test=0.15, seed=3)
    parts = [set(split.train), set(split.valid), set(split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == {t.path for t in tracks}
    for genre in ("blues", "jazz", "rock"):
        assert sum(genre in p for p in split.test) == 3 and sum(genre in p for p in split.valid) == 3
    assert split.method == "song"
    assert make_split(tracks, seed=3) == split
    assert make_split(tracks, seed=4) != split


@pytest.mark.parametrize("valid, test", [(0.0, 0.15), (0.5, 0.5), (0.15, 1.2), (float("nan"), 0.15)])
def test_make_split_refuses_fractions_as_a_training_config_does(valid, test):
    # One rule for both: a config that TrainConfig accepts is never refused at its split, and the
    # error names the setting, as the CLI needs.
    from genrify.learn.config import TrainConfig

    with pytest.raises(ParameterError, match="valid and test must each be between 0 and 1") as caught:
        make_split(library(), valid=valid, test=test)
    assert caught.value.field == "valid"
    with pytest.raises(ParameterError, match="valid and test must each be between 0 and 1"):
        TrainConfig(valid=valid, test=test)


def test_artists_never_cross_splits():
    tracks = library(per_genre=24, artists=6)
    split = make_split(tracks, seed=0)
    assert split.method == "artist"
    artist_of = {t.path: t.artist for t in tracks}
    sides = [{artist_of[p] for p in split[name]} for name in ("train", "valid", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert all(sides)


def test_group_by_artist_without_any_artist_tag_is_refused_and_untagged_songs_are_counted():
    with pytest.raises(SplitError, match="none of the 60 songs has an artist tag"):
        make_split(library(), group_by="artist")
    tracks = library(per_genre=24, artists=6)
    tracks[:5] = [track(t.genre, 100 + i) for i, t in enumerate(tracks[:5])]  # five without an artist
    split = make_split(tracks, group_by="artist")
    assert split.method == "artist" and split.alone == 5
    assert make_split(library(per_genre=24, artists=6), group_by="artist").alone == 0


def test_group_by_song_ignores_artists():
    assert make_split(library(artists=4), group_by="song").method == "song"


def test_too_few_songs_names_the_genre_and_the_counts():
    tracks = library(per_genre=10) + [track("polka", 0), track("polka", 1)]
    with pytest.raises(SplitError, match=r"too few in polka 2 \(songs per genre: blues 10, jazz 10, polka 2, rock 10\)"):
        make_split(tracks)


def test_one_genre_and_empty_store():
    with pytest.raises(SplitError, match="single genre"):
        make_split(library(genres=("jazz",)))
    with pytest.raises(SplitError, match="no extracted tracks"):
        make_split([])


def test_tabbed_split_file_and_unmatched_entries(tmp_path):
    tracks = library(per_genre=3)
    lines = ["/elsewhere/blues/blues.00000.wav\ttrain", "jazz/jazz.00001.mp3\tvalidation", "rock.00002\ttest",
             "missing/song.wav\ttest"]
    (tmp_path / "split.tsv").write_text("\n".join(lines) + "\n")
    split = split_from_file(tracks, tmp_path / "split.tsv")
    assert split.train == ("/m/blues/blues.00000.wav",)
    assert split.valid == ("/m/jazz/jazz.00001.wav",)
    assert split.test == ("/m/rock/rock.00002.wav",)
    assert split.unmatched == ("missing/song.wav",)


def test_bad_split_file_lines(tmp_path):
    (tmp_path / "bad.tsv").write_text("a.wav\tholdout\n")
    with pytest.raises(SplitError, match=r"bad.tsv:1: expected 'path<TAB>train\|valid\|test'"):
        read_split_file(tmp_path / "bad.tsv")
    with pytest.raises(SplitError, match="split file not found"):
        read_split_file(tmp_path / "none.txt")


def test_split_file_matching_nothing(tmp_path):
    (tmp_path / "s.tsv").write_text("x.wav\ttrain\ny.wav\tvalid\nz.wav\ttest\n")
    with pytest.raises(SplitError, match="no track of the store matches the train, valid, test list"):
        split_from_file(library(per_genre=3), tmp_path / "s.tsv")


GTZAN = SHARED / "data" / "gtzan-splits"


@pytest.mark.skipif(not GTZAN.is_dir(), reason="../shared/data/gtzan-splits is absent")
def test_gtzan_fault_filtered_lists_work_as_they_are():
    genres = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
    tracks = library(per_genre=100, genres=genres)
    lists = read_split_file(GTZAN)  # a folder with both variants: the fault-filtered one is used
    assert {k: len(v) for k, v in lists.items()} == {"train": 443, "valid": 197, "test": 290}
    split = split_from_file(tracks, GTZAN)
    assert split.sizes() == {"train": 443, "valid": 197, "test": 290}
    assert not split.unmatched
    stratified = split_from_file(tracks, GTZAN / "train_stratified.txt")
    assert stratified.sizes() == {"train": 500, "valid": 250, "test": 250}
    # GTZAN's filtered split keeps each artist on one side; here it must at least keep songs apart.
    assert not set(split.train) & set(split.test)


def test_song_keys_tell_apart_songs_that_share_a_file_name():
    tracks = [StoredTrack(f"/m/{g}/{a}/01.mp3", g, a, 30.0, 1, 1, 1, "done", None, "x", ())
              for g in ("rock", "jazz") for a in ("Queen", "Ella")]
    keys = song_keys(tracks)
    assert sorted(keys.values()) == ["jazz/Ella/01.mp3", "jazz/Queen/01.mp3", "rock/Ella/01.mp3", "rock/Queen/01.mp3"]
    # The same library elsewhere gives the same keys; a flat genre folder gives genre/file name.
    moved = [dataclasses.replace(t, path=t.path.replace("/m/", "/elsewhere/music/")) for t in tracks]
    assert sorted(song_keys(moved).values()) == sorted(keys.values())
    assert song_keys([track("rock", 1), track("jazz", 2)]) == {
        "/m/rock/rock.00001.wav": "rock/rock.00001.wav", "/m/jazz/jazz.00002.wav": "jazz/jazz.00002.wav"}
