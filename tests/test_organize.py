from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from genrify.core import fsutil
from genrify.errors import OrganizeError, ParameterError
from genrify.collection.organize import (
    Move,
    apply,
    check_destination,
    organize,
    plan_moves,
    PLAYLIST_MARK_LINE,
    is_genrify_playlist,
    sanitize_genre,
    write_playlists,
)


def _file(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


@pytest.fixture
def library(tmp_path) -> dict[Path, str]:
    """Four small files in two folders, two of them with the same name, and their genres."""
    music = tmp_path / "music"
    return {
        _file(music / "a" / "song.mp3", "a song"): "rock",
        _file(music / "b" / "song.mp3", "b song"): "rock",
        _file(music / "a" / "tune.flac", "a tune"): "jazz",
        _file(music / "b" / "Ünïcode name.ogg", "unicode"): "jazz",
    }


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (links followed) with its content."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_copy_puts_every_file_under_its_genre_and_keeps_the_sources(tmp_path, library):
    before = _tree(tmp_path / "music")
    dest = tmp_path / "sorted"
    results = organize(library, dest, mode="copy")
    assert [r.status for r in results] == ["done"] * 4 and all(r.ok for r in results)
    assert {r.method for r in results} == {"copy"}
    assert _tree(dest) == {
        "jazz/tune.flac": b"a tune",
        "jazz/Ünïcode name.ogg": b"unicode",
        "rock/song.mp3": b"a song",
        "rock/song (1).mp3": b"b song",
    }
    assert _tree(tmp_path / "music") == before
    # copy2 keeps the modification time, so a feature cache keyed on it stays valid for the copy
    source = tmp_path / "music" / "a" / "tune.flac"
    assert (dest / "jazz" / "tune.flac").stat().st_mtime_ns == source.stat().st_mtime_ns
    assert _no_temporaries(dest)


def test_link_makes_hard_links(tmp_path, library):
    results = organize(library, tmp_path / "sorted", mode="link")
    assert {r.method for r in results} == {"hardlink"}
    for r in results:
        assert r.target.stat().st_ino == r.source.stat().st_ino and not r.target.is_symlink()


def test_link_falls_back_to_a_symbolic_link_across_filesystems(tmp_path, library, monkeypatch):
    def cross_device(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    results = organize(library, tmp_path / "sorted", mode="link")
    assert {r.method for r in results} == {"symlink"}
    for r in results:
        assert r.status == "done" and "symbolic link" in r.detail
        assert r.target.is_symlink() and r.target.resolve() == r.source.resolve()
    from genrify.classify.placing import OrganizeReport

    report = OrganizeReport(dest=tmp_path / "sorted", moves=results, dry_run=False)
    assert report.line.endswith(f"(0 failed; {len(results)} as symbolic links, a hard link being impossible)")


def test_move_renames_and_leaves_nothing_behind(tmp_path, library):
    contents = {path: path.read_bytes() for path in library}
    results = organize(library, tmp_path / "sorted", mode="move")
    assert {r.method for r in results} == {"rename"}
    for r in results:
        assert not r.source.exists() and r.target.read_bytes() == contents[r.source]


@pytest.mark.parametrize("mode", ["link", "move"])
def test_a_song_reached_through_a_relative_symbolic_link_is_still_reached_from_its_genre(tmp_path, mode):
    # music/links/song.mp3 -> ../real/song.mp3: linked or moved as it is, the link would dangle.
    real = _file(tmp_path / "music" / "real" / "song.mp3", "the song")
    link = tmp_path / "music" / "links" / "song-link.mp3"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "real" / "song.mp3")
    (result,) = organize({link: "jazz"}, tmp_path / "sorted", mode=mode, sources=[tmp_path / "music"])
    assert result.status == "done" and result.target.read_bytes() == b"the song"
    assert result.target.resolve() == real.resolve() or result.target.stat().st_ino == real.stat().st_ino
    assert real.read_bytes() == b"the song"  # the song itself stays where it was
    if mode == "move":
        assert not os.path.lexists(link) and result.target.is_symlink() and result.method == "relinked"
        from genrify.classify.placing import OrganizeReport

        line = OrganizeReport(dest=tmp_path / "sorted", moves=[result], dry_run=False).line
        assert line.endswith("(0 failed)"), line  # no hard link was tried: none said impossible


def test_a_link_in_a_folder_reached_through_a_link_is_moved_to_the_song_itself(tmp_path):
    # music/links -> store/links, holding song-link.mp3 -> ../real/song.mp3: ".." is from store/.
    real = _file(tmp_path / "store" / "real" / "song.mp3", "the song")
    (tmp_path / "store" / "links").mkdir()
    (tmp_path / "store" / "links" / "song-link.mp3").symlink_to(Path("..") / "real" / "song.mp3")
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "links").symlink_to(tmp_path / "store" / "links")
    link = tmp_path / "music" / "links" / "song-link.mp3"
    (result,) = organize({link: "jazz"}, tmp_path / "sorted", mode="move")
    assert result.status == "done" and result.target.read_bytes() == b"the song"
    assert result.target.resolve() == real.resolve()


def test_move_across_filesystems_copies_then_removes(tmp_path, library, monkeypatch):
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src) in library:  # renaming a source: pretend the destination is another disk
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    contents = {path: path.read_bytes() for path in library}
    results = organize(library, tmp_path / "sorted", mode="move")
    assert {r.method for r in results} == {"copy+delete"}
    for r in results:
        assert not r.source.exists() and r.target.read_bytes() == contents[r.source]
    assert _no_temporaries(tmp_path / "sorted")


def test_name_clashes_get_suffixes_and_nothing_is_overwritten(tmp_path, library):
    dest = tmp_path / "sorted"
    _file(dest / "rock" / "song.mp3", "someone else's song")
    _file(dest / "rock" / "song (1).mp3", "another")
    moves = plan_moves(library, dest, mode="copy")
    rock = [m.target.name for m in moves if m.genre == "rock"]
    assert rock == ["song (2).mp3", "song (3).mp3"]
    apply(moves)
    assert (dest / "rock" / "song.mp3").read_bytes() == b"someone else's song"
    assert (dest / "rock" / "song (1).mp3").read_bytes() == b"another"
    assert (dest / "rock" / "song (2).mp3").read_bytes() == b"a song"
    assert (dest / "rock" / "song (3).mp3").read_bytes() == b"b song"


def test_a_name_taken_between_planning_and_applying_gets_the_next_suffix(tmp_path, library):
    dest = tmp_path / "sorted"
    moves = plan_moves(library, dest, mode="copy")
    late = _file(moves[0].target, "arrived late")
    results = apply(moves)
    assert late.read_bytes() == b"arrived late"
    assert results[0].status == "done" and results[0].target != moves[0].target
    assert results[0].target.read_bytes() == moves[0].source.read_bytes()


@pytest.mark.parametrize("mode", ["copy", "link", "move"])
def test_running_the_same_organisation_twice_changes_nothing_the_second_time(tmp_path, library, mode):
    dest = tmp_path / "sorted"
    first = organize(library, dest, mode=mode)
    after_first = _tree(dest)
    # After a move the files live in dest: organising them again must find them in place.
    assignments = library if mode != "move" else {r.target: r.genre for r in first}
    second = organize(assignments, dest, mode=mode)
    assert [r.status for r in second] == ["skipped"] * 4
    assert _tree(dest) == after_first


def test_dry_run_touches_nothing(tmp_path, library):
    dest = tmp_path / "sorted"
    before = _tree(tmp_path)
    for mode in ("copy", "link", "move"):
        results = organize(library, dest, mode=mode, dry_run=True)
        assert [r.status for r in results] == ["planned"] * 4 and {r.method for r in results} == {None}
    assert not dest.exists()
    assert _tree(tmp_path) == before


def test_a_bad_file_costs_only_that_file(tmp_path, library):
    missing = tmp_path / "music" / "gone.mp3"
    results = organize({**library, missing: "rock"}, tmp_path / "sorted", mode="copy")
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and failed[0].source == missing
    assert "not found" in failed[0].detail
    assert sum(r.status == "done" for r in results) == 4


def test_a_failed_copy_leaves_nothing_at_the_target(tmp_path, library, monkeypatch):
    def copy_half(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", copy_half)
    results = organize(library, tmp_path / "sorted", mode="copy")
    assert {r.status for r in results} == {"failed"}
    assert all("No space left on device" in r.detail for r in results)
    assert _tree(tmp_path / "sorted") == {} and _no_temporaries(tmp_path / "sorted")


@pytest.mark.parametrize(
    ("genre", "folder"),
    [
        ("Rock", "Rock"),
        ("Hip-Hop/Rap", "Hip-Hop_Rap"),
        ("R&B\\Soul", "R&B_Soul"),
        ("..", "unknown"),
        ("../../etc", "_.._etc"),
        ("/", "unknown"),
        (".hidden", "hidden"),
        ("", "unknown"),
        ("   ", "unknown"),
        ("  Drum  and\tBass ", "Drum and Bass"),
        ('what?*:"<>|', "what_______"),
        ("line\nbreak", "line break"),
        ("a\x00b\x7f", "a_b_"),
        ("/:/", "unknown"),
        ("CON", "CON_"),
        ("nul.x", "nul_.x"),
        ("Música Popular Brasileira", "Música Popular Brasileira"),
        ("x" * 300, "x" * 100),
    ],
)
def test_genre_names_become_safe_folder_names(genre, folder):
    assert sanitize_genre(genre) == folder


def test_unsafe_genres_stay_inside_the_destination(tmp_path, library):
    dest = tmp_path / "sorted"
    genres = ["../../escape", "/etc", "..", ".git"]
    assignments = dict(zip(library, genres, strict=True))
    results = organize(assignments, dest, mode="copy")
    assert all(r.status == "done" for r in results)
    for r in results:
        assert r.target.resolve().parent.parent == dest.resolve()
        assert not r.target.parent.name.startswith(".")
    assert len(list(tmp_path.iterdir())) == 2  # music and sorted: nothing escaped


def test_a_destination_inside_a_source_folder_is_refused(tmp_path, library):
    music = tmp_path / "music"
    with pytest.raises(OrganizeError, match="inside the source folder"):
        check_destination(music / "sorted", [music])
    with pytest.raises(OrganizeError, match="inside the source folder"):
        check_destination(music, [tmp_path / "elsewhere", music])
    with pytest.raises(OrganizeError, match="inside the source folder"):
        plan_moves(library, music / "a" / "sorted", mode="copy", sources=[music])
    check_destination(tmp_path / "sorted", [music])  # a sibling is fine
    check_destination(tmp_path / "music-sorted", [music])  # a name prefix is not "inside"


def test_a_destination_reached_through_a_symbolic_link_is_still_inside(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    (tmp_path / "alias").symlink_to(music)
    with pytest.raises(OrganizeError):
        check_destination(tmp_path / "alias" / "sorted", [music])


def test_bad_requests_raise(tmp_path, library):
    with pytest.raises(ParameterError, match="mode"):
        plan_moves(library, tmp_path / "sorted", mode="symlink")  # type: ignore[arg-type]
    _file(tmp_path / "afile", "x")
    with pytest.raises(OrganizeError, match="not a folder"):
        plan_moves(library, tmp_path / "afile", mode="copy")


def test_moves_are_planned_in_a_stable_order(tmp_path, library):
    moves = plan_moves(dict(reversed(list(library.items()))), tmp_path / "sorted", mode="copy")
    assert moves == plan_moves(library, tmp_path / "sorted", mode="copy")
    assert all(isinstance(m, Move) and m.mode == "copy" for m in moves)
    assert [m.genre for m in moves] == ["jazz", "jazz", "rock", "rock"]


def _entries(playlist: Path) -> list[str]:
    return [line for line in playlist.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_playlists_list_each_genre_with_paths_relative_to_the_playlist(tmp_path, library):
    out = tmp_path / "lists" / "genrify"
    durations = {path: 61.6 for path in library}
    durations.pop(next(p for p in library if p.name == "tune.flac"))
    done = write_playlists({**library, tmp_path / "music" / "a" / "x.wav": "Hip-Hop/Rap"}, out, durations=durations)
    written = done.written
    assert written == [out / "Hip-Hop_Rap.m3u8", out / "jazz.m3u8", out / "rock.m3u8"]
    assert not done.left_out and not done.sidestepped and not done.failed
    text = (out / "rock.m3u8").read_text(encoding="utf-8")
    assert text == (
        "#EXTM3U\n"
        f"{PLAYLIST_MARK_LINE}\n"
        "#PLAYLIST:rock\n"
        "#EXTINF:62,song\n"
        f"..{os.sep}..{os.sep}music{os.sep}a{os.sep}song.mp3\n"
        "#EXTINF:62,song\n"
        f"..{os.sep}..{os.sep}music{os.sep}b{os.sep}song.mp3\n"
    )
    jazz = (out / "jazz.m3u8").read_text(encoding="utf-8")
    assert "#EXTINF:-1,tune\n" in jazz and "#EXTINF:62,Ünïcode name\n" in jazz
    assert "#PLAYLIST:Hip-Hop/Rap\n" in (out / "Hip-Hop_Rap.m3u8").read_text(encoding="utf-8")
    for playlist in written:
        for entry in _entries(playlist):
            assert not os.path.isabs(entry)
            if "x.wav" not in entry:
                assert (out / entry).resolve() in {p.resolve() for p in library}
    assert _no_temporaries(out)


def test_playlists_without_durations_have_no_extinf_and_are_deterministic(tmp_path, library):
    out = tmp_path / "lists"
    first = write_playlists(library, out).written
    contents = {p: p.read_bytes() for p in first}
    second = write_playlists(dict(reversed(list(library.items()))), out).written
    assert second == first and {p: p.read_bytes() for p in second} == contents
    for playlist in first:
        lines = playlist.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "#EXTM3U" and not any(line.startswith("#EXTINF") for line in lines)
        assert len(lines) == 5 and is_genrify_playlist(playlist)


def test_playlist_entries_never_read_as_comments(tmp_path):
    out = tmp_path / "music"
    song = _file(out / "#1 hit.mp3", "x")
    write_playlists({song: "pop"}, out)
    (entry,) = _entries(out / "pop.m3u8")
    assert (out / entry).resolve() == song.resolve()


def test_a_failed_playlist_write_leaves_the_old_playlist(tmp_path, library, monkeypatch):
    out = tmp_path / "lists"
    write_playlists(library, out)
    before = _tree(out)

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "fsync_dir", lambda folder: None)
    monkeypatch.setattr(os, "fsync", fail)
    done = write_playlists({p: "jazz" for p in library}, out)
    assert done.written == [] and done.failed == [(out / "jazz.m3u8", "No space left on device")]
    assert _tree(out) == before and _no_temporaries(out)


def test_an_interrupted_runs_leftovers_in_a_destination_folder_are_removed(tmp_path, library):
    import stat
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    rock = tmp_path / "sorted" / "rock"
    host = fsutil.host_name()
    dead = _file(rock / f".song.mp3.{host}.{child.pid}.0123abcd.genrify-tmp", "half a copy")
    old = _file(rock / ".song.mp3.q7_x2kfa.genrify-part", "an old version's half copy")  # mkstemp name
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    live = _file(rock / f".song.mp3.{host}.{os.getpid()}.0123abcd.genrify-tmp", "a live copy")
    users = _file(rock / ".song.mp3.genrify-part", "the user's own file")
    os.chmod(next(iter(library)), 0o604)

    results = organize(library, tmp_path / "sorted", mode="copy")

    assert all(r.status == "done" for r in results)
    assert not dead.exists() and not old.exists() and live.exists() and users.exists()
    # A copy keeps its song's mode, whatever the umask (the temporary file had the umask's).
    copied = {r.source: r.target for r in results}[next(iter(library))]
    assert stat.S_IMODE(copied.stat().st_mode) == 0o604


def test_a_destination_that_is_a_file_is_refused_before_any_work(tmp_path):
    song = _file(tmp_path / "song.wav", "audio")
    with pytest.raises(OrganizeError, match="exists and is not a folder"):
        check_destination(song, [tmp_path / "elsewhere"])
    assert song.read_bytes() == b"audio"


def test_playlists_never_replace_an_input_a_folder_or_a_file(tmp_path, library):
    from genrify.collection.organize import check_playlists

    lists = tmp_path / "lists"
    song = _file(lists / "rock.m3u8", "#EXTM3U\nmy own list, also an input\n")
    os.link(song, tmp_path / "alias.m3u8")
    with pytest.raises(OrganizeError, match="would replace this input file"):
        check_playlists(lists, ["rock", "jazz"], keep=[tmp_path / "alias.m3u8"])
    (lists / "jazz.m3u8").mkdir()
    with pytest.raises(OrganizeError, match="not a regular file"):
        write_playlists({p: "jazz" for p in library}, lists)
    with pytest.raises(OrganizeError, match="exists and is not a folder"):
        write_playlists(library, song)
    assert song.read_text().endswith("also an input\n")


def test_a_name_that_is_not_utf8_is_left_out_of_playlists(tmp_path, library):
    odd = _file(Path(os.fsdecode(os.fsencode(tmp_path) + b"/music/bad\xff.mp3")), "x")
    done = write_playlists({odd: "rock", **{p: "rock" for p in library}}, tmp_path / "lists")
    (written,) = done.written
    assert len(_entries(written)) == len(library)
    assert done.left_out == [(odd, "its name is not valid UTF-8, which an M3U8 playlist cannot hold")]


def test_every_file_left_out_of_a_playlist_is_named_with_why_dry_run_too(tmp_path, library):
    broken = _file(tmp_path / "music" / "two\nlines.mp3", "x")
    lists = tmp_path / "lists"
    planned = write_playlists({broken: "rock", **library}, lists, dry_run=True)
    assert planned.dry_run and not lists.exists()
    assert planned.written == [lists / "jazz.m3u8", lists / "rock.m3u8"]
    assert planned.left_out == [(broken, "a line break in its name cannot be written in a playlist")]
    done = write_playlists({broken: "rock", **library}, lists)
    assert done.left_out == planned.left_out and done.written == planned.written
    assert "lines.mp3" not in (lists / "rock.m3u8").read_text(encoding="utf-8")


def test_a_persons_own_playlist_of_the_same_name_is_never_replaced(tmp_path, library):
    lists = tmp_path / "lists"
    theirs = _file(lists / "rock.m3u8", b"#EXTM3U\r\n#EXTINF:10,mine\r\nmine.mp3\r\n")
    favourites = _file(tmp_path / "mine" / "favourites.m3u8", "#EXTM3U\nfavourite.mp3\n")
    link = lists / "jazz.m3u8"
    os.symlink(favourites, link)  # a link is theirs too
    own = dict(theirs=theirs.read_bytes())

    first = write_playlists(library, lists)
    ours = lists / "rock (genrify).m3u8"
    assert first.written == [lists / "jazz (genrify).m3u8", ours]
    assert first.sidestepped == [(link, lists / "jazz (genrify).m3u8"), (theirs, ours)]
    assert theirs.read_bytes() == own["theirs"] and os.readlink(link) == str(favourites)
    assert favourites.read_text() == "#EXTM3U\nfavourite.mp3\n"
    assert is_genrify_playlist(ours) and not is_genrify_playlist(theirs) and not is_genrify_playlist(link)
    assert len(_entries(ours)) == 2

    # A second run rewrites genrify's own list (here: with one song less), and still not theirs.
    second = write_playlists({p: g for p, g in library.items() if p.name != "tune.flac"}, lists)
    assert second.written == first.written and theirs.read_bytes() == own["theirs"]
    assert len(_entries(ours)) == 2 and len(_entries(lists / "jazz (genrify).m3u8")) == 1

    # genrify's own playlist at the usual name is rewritten there; one without the mark is not.
    theirs.unlink()
    third = write_playlists(library, lists)
    assert lists / "rock.m3u8" in third.written and is_genrify_playlist(lists / "rock.m3u8")
    (lists / "rock.m3u8").write_text("#EXTM3U\n#PLAYLIST:rock\nmy edit.mp3\n")  # the mark deleted: theirs now
    fourth = write_playlists(library, lists)
    assert (lists / "rock.m3u8").read_text() == "#EXTM3U\n#PLAYLIST:rock\nmy edit.mp3\n"
    assert (lists / "rock.m3u8", ours) in fourth.sidestepped and _no_temporaries(lists)


def test_a_persons_file_at_genrifys_other_name_is_passed_over_too(tmp_path, library):
    lists = tmp_path / "lists"
    mine = {name: _file(lists / name, f"{name} is mine\n").read_bytes()
            for name in ("rock.m3u8", "rock (genrify).m3u8", "rock (genrify 2).m3u8")}
    done = write_playlists(library, lists)
    assert (lists / "rock.m3u8", lists / "rock (genrify 3).m3u8") in done.sidestepped
    assert {name: (lists / name).read_bytes() for name in mine} == mine


def test_a_genre_spelled_in_another_case_goes_where_an_earlier_run_put_it(tmp_path, library):
    # The built-in model says "jazz", a learned one "Jazz": one folder and one playlist, not two.
    organize({p: g for p, g in library.items()}, tmp_path / "sorted", mode="copy")
    write_playlists({p: g for p, g in library.items()}, tmp_path / "lists")
    again = {p: g.capitalize() for p, g in library.items()}
    moves = plan_moves(again, tmp_path / "sorted", mode="copy")
    assert {m.target.parent.name for m in moves} == {"jazz", "rock"}
    assert all(m.skip for m in moves)  # the same files are there already
    written = write_playlists(again, tmp_path / "lists").written
    assert sorted(p.name for p in written) == ["jazz.m3u8", "rock.m3u8"]
    assert sorted(os.listdir(tmp_path / "lists")) == ["jazz.m3u8", "rock.m3u8"]


def test_links_to_songs_the_same_move_moves_follow_them(tmp_path):
    # a_alias -> z.mp3 and z_alias -> a.mp3 in one folder; all four moved in one run, in any order.
    lib = tmp_path / "lib"
    a, z = _file(lib / "a.mp3", "song a"), _file(lib / "z.mp3", "song z")
    (lib / "a_alias.mp3").symlink_to("z.mp3")
    (lib / "z_alias.mp3").symlink_to("a.mp3")
    assignments = {a: "jazz", z: "metal", lib / "a_alias.mp3": "metal", lib / "z_alias.mp3": "jazz"}
    results = organize(assignments, tmp_path / "sorted", mode="move")
    assert [r.status for r in results] == ["done"] * 4
    for r in results:
        assert r.target.read_bytes() in (b"song a", b"song z"), r
    by_name = {r.target.name: r.target for r in results}
    assert by_name["a_alias.mp3"].read_bytes() == b"song z" and by_name["z_alias.mp3"].read_bytes() == b"song a"
    assert not any(os.path.lexists(p) for p in assignments)


def test_a_genre_in_another_case_reuses_genrifys_playlist_beside_a_persons(tmp_path, library):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "jazz.m3u8").write_text("#EXTM3U\nmine.mp3\n")  # a person's
    write_playlists(dict(library.items()), lists)
    assert (lists / "jazz (genrify).m3u8").is_file()
    write_playlists({p: g.capitalize() for p, g in library.items()}, lists)
    assert sorted(os.listdir(lists)) == ["jazz (genrify).m3u8", "jazz.m3u8", "rock.m3u8"]
    assert (lists / "jazz.m3u8").read_text() == "#EXTM3U\nmine.mp3\n"
