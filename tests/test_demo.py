"""The demo's closing figure: songs named right of all tested, with a 95 % interval (issue 21)."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import synth_store

from genrify.errors import ParameterError
from genrify.learn.demo import closing_line, fold_lists, wilson_interval, write_fold_files
from genrify.learn.splits import split_from_file
from genrify.store.store import FeatureStore, StoredTrack


def test_closing_line_carries_the_count_and_its_interval():
    assert closing_line(37, 40, genres=4, folds=5) == (
        "test songs: 37/40 named right (92%, 95% interval 80-98%; chance 25%), each by one of 5 heads that never heard it"
    )
    # The case: 4 of 4 right says "somewhere from about half to all".
    assert "4/4 named right (100%, 95% interval 51-100%" in closing_line(4, 4, genres=4, folds=4)
    assert "0/8 named right (0%, 95% interval 0-33%" in closing_line(0, 8, genres=2, folds=4)


def test_closing_line_rounds_honestly():
    # A miss never shows as 100 %, a hit never as 0 %, and the interval is rounded outwards.
    assert "399/400 named right (99%, 95% interval 98-100%" in closing_line(399, 400, genres=4, folds=5)
    assert "1/400 named right (1%, 95% interval 0-2%" in closing_line(1, 400, genres=4, folds=5)
    assert "29/100 named right (29%" in closing_line(29, 100, genres=3, folds=5)  # 0.29 * 100 < 29 in floats
    assert "chance 33%" in closing_line(29, 100, genres=3, folds=5)


@pytest.mark.parametrize(("right", "n"), [(0, 1), (4, 4), (37, 40), (20, 40), (1, 12), (399, 400)])
def test_wilson_interval_is_scipys(right, n):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(right, n).proportion_ci(method="wilson")
    assert wilson_interval(right, n) == pytest.approx((expected.low, expected.high), abs=1e-9)


@pytest.mark.parametrize(("right", "n"), [(1, 0), (-1, 4), (5, 4)])
def test_wilson_interval_refuses_impossible_counts(right, n):
    with pytest.raises(ParameterError):
        wilson_interval(right, n)


def _tracks(per_genre: dict[str, int]) -> list[StoredTrack]:
    return [StoredTrack(path=f"/m/{g}/{g}.{i:05d}.wav", genre=g, artist=None, duration=10.0, size=1, mtime_ns=0,
                        frames=1, status="done", error=None, array=None, flags=())
            for g, n in per_genre.items() for i in range(n)]


def test_folds_deal_every_song_once_and_every_genre_into_every_fold():
    tracks = _tracks({"blues": 10, "jazz": 11, "rock": 5})
    dealt = fold_lists(tracks, 5)
    assert sorted(t.path for fold in dealt for t in fold) == sorted(t.path for t in tracks)
    for fold in dealt:
        assert set(Counter(t.genre for t in fold)) == {"blues", "jazz", "rock"}
    assert [len(f) for f in dealt] == [6, 5, 5, 5, 5]
    assert fold_lists(tracks, 5) == dealt  # seeded


def test_folds_refuse_too_few_songs_or_folds():
    with pytest.raises(ParameterError, match="too few in rock 3"):
        fold_lists(_tracks({"blues": 5, "rock": 3}), 4)
    with pytest.raises(ParameterError, match="at least 3 folds"):
        fold_lists(_tracks({"blues": 5, "rock": 5}), 2)


def test_fold_files_test_each_song_once(tmp_path):
    store = synth_store(tmp_path, ("disco", "jazz"), per_genre=3, seconds=2.0, seed=1)
    with FeatureStore.open(store) as opened:
        tracks = opened.tracks()
    files = write_fold_files(tracks, tmp_path / "folds", 3)
    splits = [split_from_file(tracks, f) for f in files]
    assert sorted(p for s in splits for p in s.test) == sorted(t.path for t in tracks)
    for s in splits:
        assert not s.unmatched and sum(s.sizes().values()) == len(tracks)
        assert not set(s.test) & set(s.valid) and not (set(s.test) | set(s.valid)) & set(s.train)
