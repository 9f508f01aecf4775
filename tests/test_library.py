from __future__ import annotations

import pytest

from genrify.errors import LibraryError
from genrify.library import scan


def test_genres_from_top_folders_at_any_depth(make_library, tmp_path):
    music = make_library({"jazz": ["a.wav", "live/1999/b.wav"], "rock": ["c.wav"]}, seconds=0.5)
    lib = scan(music)
    assert lib.counts() == {"jazz": 2, "rock": 1}
    assert lib.genres == ["jazz", "rock"]
    by_name = {t.path.rsplit("/", 1)[1]: t for t in lib.tracks}
    assert by_name["b.wav"].genre == "jazz"
    assert all(t.size > 0 and t.mtime_ns > 0 for t in lib.tracks)
    assert [t.path for t in lib.tracks] == sorted(t.path for t in lib.tracks)


def test_hidden_and_non_audio_files_are_skipped(make_library):
    music = make_library({"pop": ["a.wav", ".hidden.wav", ".trash/b.wav"]}, seconds=0.5)
    (music / "pop" / "cover.jpg").write_bytes(b"\xff\xd8")
    (music / "stray.wav").write_bytes(b"RIFF")
    lib = scan(music)
    assert [t.path.rsplit("/", 1)[1] for t in lib.tracks] == ["a.wav"]
    reasons = {p.rsplit("/", 1)[1]: r for p, r in lib.skipped}
    assert reasons == {"cover.jpg": "not an audio file", "stray.wav": "not in a genre folder"}


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(LibraryError, match="no such folder"):
        scan(tmp_path / "missing")


def test_a_file_is_not_a_library(tmp_path):
    f = tmp_path / "song.wav"
    f.write_bytes(b"x")
    with pytest.raises(LibraryError, match="not a folder"):
        scan(f)


def test_empty_folder(tmp_path):
    with pytest.raises(LibraryError, match="no genre sub-folders"):
        scan(tmp_path)


def test_folder_without_genre_sub_folders(make_library, tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(LibraryError, match=r"no genre sub-folders; lay the music out as .*/<genre>/"):
        scan(tmp_path / "flat")


def test_genre_folders_without_audio(tmp_path):
    (tmp_path / "lib" / "blues").mkdir(parents=True)
    (tmp_path / "lib" / "blues" / "readme.txt").write_text("hi")
    with pytest.raises(LibraryError, match=r"no audio files found in its 1 genre folder\(s\) \(blues\)"):
        scan(tmp_path / "lib")


def test_find_audio_takes_files_as_given_and_searches_folders(tmp_path):
    from genrify.library import find_audio

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/x.mp3", "a/b/y.flac", "a/notes.txt", "a/.secret.mp3", "a/.hidden/z.wav", "odd.bin"):
        (tmp_path / name).write_bytes(b"0")
    files, problems = find_audio([tmp_path / "a", tmp_path / "odd.bin", tmp_path / "a" / "x.mp3", tmp_path / "nope"])
    assert files == [str(tmp_path / "a/x.mp3"), str(tmp_path / "a/b/y.flac"), str(tmp_path / "odd.bin")]
    assert problems == [(str(tmp_path / "nope"), "no such file or folder")]
