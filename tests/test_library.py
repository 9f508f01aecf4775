from __future__ import annotations

import pytest

from genrify.collection.library import LINK_ABOVE, LINK_INSIDE, LINK_NOT_FOLLOWED, find_audio, scan
from genrify.errors import LibraryError


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


def test_genre_folders_that_are_links_elsewhere_are_named_with_the_option_that_follows_them(tmp_path):
    (tmp_path / "elsewhere" / "blues").mkdir(parents=True)
    (tmp_path / "elsewhere" / "blues" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blues").symlink_to(tmp_path / "elsewhere" / "blues", target_is_directory=True)
    with pytest.raises(LibraryError, match=r"no genre sub-folders \(1 link to a folder passed over: add --follow-links"):
        scan(tmp_path / "lib")
    assert [t.genre for t in scan(tmp_path / "lib", follow_links=True).tracks] == ["blues"]


def test_genre_folders_without_audio(tmp_path):
    (tmp_path / "lib" / "blues").mkdir(parents=True)
    (tmp_path / "lib" / "blues" / "readme.txt").write_text("hi")
    with pytest.raises(LibraryError, match=r"no audio files found in its 1 genre folder\(s\) \(blues\)"):
        scan(tmp_path / "lib")


def test_find_audio_takes_files_as_given_and_searches_folders(tmp_path):
    from genrify.collection.library import find_audio

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/x.mp3", "a/b/y.flac", "a/notes.txt", "a/.secret.mp3", "a/.hidden/z.wav", "odd.bin"):
        (tmp_path / name).write_bytes(b"0")
    found = find_audio([tmp_path / "a", tmp_path / "odd.bin", tmp_path / "a" / "x.mp3", tmp_path / "nope"])
    assert found.files == [str(tmp_path / "a/x.mp3"), str(tmp_path / "a/b/y.flac"), str(tmp_path / "odd.bin")]
    assert found.missing == [(str(tmp_path / "nope"), "does not exist")]
    assert found.passed_over == []


def _odd_entries(folder):
    """A link loop, a dangling link, a link to a folder, a named pipe and an unreadable folder."""
    import os

    os.symlink(folder / "b.wav", folder / "a.wav")
    os.symlink(folder / "a.wav", folder / "b.wav")
    os.symlink(folder / "gone.wav", folder / "dangling.mp3")
    os.symlink(folder.parent, folder / "up")
    os.mkfifo(folder / "pipe.wav")
    (folder / "locked").mkdir()
    (folder / "locked" / "hidden.wav").write_bytes(b"0")
    return {"a.wav": "symbolic link loop", "b.wav": "symbolic link loop",
            "dangling.mp3": "dangling symbolic link (its target does not exist)",
            "up": LINK_NOT_FOLLOWED, "pipe.wav": "not a regular file"}


@pytest.fixture
def odd_folder(make_library, monkeypatch):
    import os

    music = make_library({"rock": ["good.wav"]}, seconds=0.5)
    expected = _odd_entries(music / "rock")
    # An unreadable folder, even for root (chmod 0 does not stop root): listing it fails.
    scandir = os.scandir

    def refuse(path=".", *args):
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", refuse)
    expected["locked"] = "cannot list the folder: Permission denied"
    return music, expected


def test_find_audio_reports_links_loops_pipes_and_unreadable_folders(odd_folder):
    import os

    from genrify.collection.library import find_audio

    music, expected = odd_folder
    found = find_audio([music])
    assert found.files == [str(music / "rock" / "good.wav")]
    reasons = {os.path.basename(p): r for p, r in found.passed_over}
    assert reasons == expected
    # Named directly, a loop says what it is, not "no such file".
    named = find_audio([music / "rock" / "a.wav", music / "rock" / "pipe.wav"])
    assert named.files == [] and [r for _, r in named.missing] == ["symbolic link loop", "not a regular file"]


def test_scan_records_the_same_problems(odd_folder):
    import os

    music, expected = odd_folder
    lib = scan(music)
    assert [os.path.basename(t.path) for t in lib.tracks] == ["good.wav"]
    problems = {os.path.basename(p): r for p, r in lib.problems}
    assert problems == expected
    assert all(r != "not an audio file" for _, r in lib.problems)


def _linked_library(make_library, tmp_path):
    """A library whose genre folders include links: out of it, to a folder above it, into it."""
    import os

    music = make_library({"rock": ["a.wav", "live/b.wav"]}, seconds=0.5)
    outside = make_library({"x": ["c.wav", "deeper/d.wav"]}, seconds=0.5, root="elsewhere") / "x"
    os.symlink(outside, music / "jazz")  # a genre folder on another disk
    os.symlink(tmp_path, music / "system")  # a genre folder linked to a folder above (as to "/")
    os.symlink(music / "rock" / "live", music / "blues")  # into the library: found through rock anyway
    os.symlink(music, music / "rock" / "back")  # a loop below a genre folder
    os.symlink(outside, music / "rock" / "again")  # the same outside folder as jazz
    return music


def test_links_to_folders_are_not_followed_unless_asked(make_library, tmp_path):
    import os

    music = _linked_library(make_library, tmp_path)
    lib = scan(music)
    assert {(t.genre, os.path.basename(t.path)) for t in lib.tracks} == {("rock", "a.wav"), ("rock", "b.wav")}
    problems = {os.path.relpath(p, music): r for p, r in lib.problems}
    assert problems == {"jazz": LINK_NOT_FOLLOWED, "system": LINK_NOT_FOLLOWED, "blues": LINK_NOT_FOLLOWED,
                        "rock/back": LINK_NOT_FOLLOWED, "rock/again": LINK_NOT_FOLLOWED}


def test_follow_links_follows_links_out_of_the_library_once_and_never_a_loop(make_library, tmp_path):
    import os

    music = _linked_library(make_library, tmp_path)
    lib = scan(music, follow_links=True)
    found = {(t.genre, os.path.relpath(t.path, music)) for t in lib.tracks}
    assert found == {("rock", "rock/a.wav"), ("rock", "rock/live/b.wav"),
                     ("jazz", "jazz/c.wav"), ("jazz", "jazz/deeper/d.wav")}
    problems = {os.path.relpath(p, music): r for p, r in lib.problems}
    assert problems == {"system": LINK_ABOVE, "blues": LINK_INSIDE, "rock/back": LINK_ABOVE, "rock/again": LINK_INSIDE}


def test_find_audio_follows_links_only_when_asked(make_library, tmp_path):
    import os

    music = _linked_library(make_library, tmp_path)
    plain = find_audio([music / "rock"])
    assert sorted(os.path.basename(f) for f in plain.files) == ["a.wav", "b.wav"]
    assert {os.path.basename(p): r for p, r in plain.passed_over} == {"back": LINK_NOT_FOLLOWED, "again": LINK_NOT_FOLLOWED}
    followed = find_audio([music / "rock"], follow_links=True)
    assert sorted(os.path.relpath(f, music) for f in followed.files) == [
        "rock/a.wav", "rock/again/c.wav", "rock/again/deeper/d.wav", "rock/live/b.wav"]
    assert {os.path.basename(p): r for p, r in followed.passed_over} == {"back": LINK_ABOVE}
    # A folder named on the command line is searched even through a link; links into it are not followed.
    both = find_audio([music / "jazz", music / "rock"], follow_links=True)
    assert sorted(os.path.relpath(f, music) for f in both.files) == [
        "jazz/c.wav", "jazz/deeper/d.wav", "rock/a.wav", "rock/live/b.wav"]
    assert {os.path.basename(p): r for p, r in both.passed_over} == {"back": LINK_ABOVE, "again": LINK_INSIDE}


def test_display_path_is_readable_utf8_on_one_line():
    import os

    from genrify.collection.library import display_path

    assert display_path(os.fsdecode(b"bad\xff.wav")) == "bad\\xff.wav"
    assert display_path(b"bad\xff.wav") == "bad\\xff.wav"
    assert display_path("Ünïcode 日本.mp3") == "Ünïcode 日本.mp3"
    assert display_path("two\nlines\x1b[31m.mp3") == "two\\nlines\\x1b[31m.mp3"
    display_path(os.fsdecode(b"bad\xff.wav")).encode("utf-8")  # never raises
