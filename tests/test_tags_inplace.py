"""Tag writes that keep the file itself: hard links, interruptions, kill -9, owner, group, xattrs.

Issue 22: an in-place rewrite (a hard-linked file) goes through a journal and holds back signals,
and the next write finishes what a kill -9 cut short; a rewritten copy carries the file's owner,
group, mode and extended attributes, or the file is written in place where it cannot.
"""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from helpers import tone_file

from genrify.core import fsutil

from genrify.collection import tags
from genrify.collection.tags import read_genre, recover_interrupted_writes, write_genre
from genrify.core.fsutil import JOURNAL_PATTERN

SR = 22050
REPO = Path(__file__).resolve().parents[1]


def _make(path: Path) -> Path:
    """A 1 s song with an artist tag (and for flac, tags padded as a tagger leaves them)."""
    f = mutagen.File(tone_file(path, 1.0, SR))
    if f.tags is None:
        f.add_tags()
    if path.suffix == ".flac":
        f.tags["artist"] = ["Ärtist"]
    else:
        from mutagen.id3 import TPE1

        f.tags.add(TPE1(encoding=3, text=["Ärtist"]))
    f.save()
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("originals")
    return {fmt: _make(root / f"song.{fmt}") for fmt in ("flac", "mp3", "wav")}


@pytest.fixture
def linked(tmp_path, originals) -> tuple[Path, Path]:
    """A flac file and a second hard link to it, in one folder (as Lidarr/Sonarr leave them)."""
    path = tmp_path / "song.flac"
    shutil.copyfile(originals["flac"], path)
    other = tmp_path / "other-name.flac"
    os.link(path, other)
    return path, other


def _journals(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if JOURNAL_PATTERN.fullmatch(n)]


def _assert_whole(path: Path, genres: tuple[str, ...], samples: np.ndarray) -> None:
    """``path`` decodes to ``samples`` and holds ``genres`` and its other tags completely."""
    decoded, sr = sf.read(path, dtype="float32")
    assert sr == SR and np.array_equal(decoded, samples)
    assert read_genre(path) == genres and tags.read_artist(path) == "Ärtist"


def _hook_writes(on_write, only=None):
    """An ``open`` that hands back a file opened ``"r+b"`` (only the file ``only``, where given)
    with its ``write`` replaced by ``on_write(file, data)``: how the tests cut an in-place write
    short. Self-contained and unannotated: :data:`_STALLING_WRITER` runs its source in a child."""
    import builtins
    import os

    real_open = builtins.open

    class Hooked:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            return on_write(self.f, data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def hooked_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if mode == "r+b" and (only is None or os.path.realpath(file) == only):
            return Hooked(f)
        return f

    return hooked_open


# A child process that tags a file and stalls in the middle of rewriting it in place: the first
# write into the open file puts half of its bytes there, says "writing" and waits. It hooks
# open() alone, which the old and the new code both use, so the test means the same on both.
_STALLING_WRITER = inspect.getsource(_hook_writes) + textwrap.dedent("""
    import builtins, os, sys, time
    from genrify.collection.tags import write_genre

    target, pause = os.path.realpath(sys.argv[1]), float(sys.argv[2])

    def stall(f, data):
        half = len(data) // 2
        f.write(data[:half]); f.flush(); os.fsync(f.fileno())
        print("writing", flush=True)
        time.sleep(pause)
        return half + f.write(data[half:])

    builtins.open = _hook_writes(stall, only=target)
    write_genre(sys.argv[1], ["Jazz", ("A longer genre " * max(int(sys.argv[3]), 1)).strip()], mode="replace")
    print("done", flush=True)
""")


def _second(grow: int) -> str:
    """The second genre the child writes: long enough with ``grow`` to outgrow the tag's padding."""
    return ("A longer genre " * max(grow, 1)).strip()


def _interrupt_mid_write(path: Path, signum: int, *, pause: float, grow: int = 0) -> subprocess.CompletedProcess:
    """Tag ``path`` in a child and send it ``signum`` once half the in-place write is on disk."""
    child = subprocess.Popen([sys.executable, "-c", _STALLING_WRITER, str(path), str(pause), str(grow)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        child.send_signal(signum)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_a_signal_mid_in_place_write_waits_until_the_file_is_whole(linked, signum):
    path, other = linked
    samples, _ = sf.read(path, dtype="float32")
    # A tag that outgrows its padding: the audio moves, so half a rewrite is a damaged file.
    done = _interrupt_mid_write(path, signum, pause=0.5, grow=400)
    # The signal still ends the process (Ctrl-C as KeyboardInterrupt), but only after the write.
    assert done.returncode != 0 and "done" not in done.stdout
    for name in (path, other):
        _assert_whole(name, ("Jazz", _second(400)), samples)
    assert os.path.samefile(path, other) and _journals(path.parent) == []
    assert sorted(os.listdir(path.parent)) == ["other-name.flac", "song.flac"]


@pytest.mark.parametrize("grow", [0, 400], ids=["fits-the-padding", "moves-the-audio"])
def test_a_kill_9_mid_in_place_write_is_finished_by_the_next_write_and_said(linked, grow):
    path, other = linked
    samples, _ = sf.read(path, dtype="float32")
    killed = _interrupt_mid_write(path, signal.SIGKILL, pause=60, grow=grow)
    assert killed.returncode == -signal.SIGKILL
    # The complete, checked new file is kept beside it, under a name that records whose it is.
    (journal,) = _journals(path.parent)
    match = JOURNAL_PATTERN.fullmatch(journal)
    assert (int(match["dev"]), int(match["ino"])) == (path.stat().st_dev, path.stat().st_ino)
    # Another genrify's cleanup of temporaries never takes it for a leftover.
    fsutil.remove_leftovers(path.parent)
    assert _journals(path.parent) == [journal]

    # The next write, through the other link, finishes the interrupted one first and says so.
    change = write_genre(other, ["Jazz", _second(grow)], mode="replace")
    assert change.status == "unchanged"
    assert len(change.notes) == 1 and "finished an interrupted tag write" in change.notes[0]
    assert change.notes[0].startswith(f"{other.resolve()}: ")  # the file as the caller named it
    for name in (path, other):
        _assert_whole(name, ("Jazz", _second(grow)), samples)
    assert sorted(os.listdir(path.parent)) == ["other-name.flac", "song.flac"]


def test_a_library_run_finishes_interrupted_writes_before_reading_the_files(linked):
    path, other = linked
    samples, _ = sf.read(path, dtype="float32")
    _interrupt_mid_write(path, signal.SIGKILL, pause=60)
    assert recover_interrupted_writes([path.parent], dry_run=True) == [
        f"{path.resolve()}: would finish an interrupted tag write (restored from {_journals(path.parent)[0]})"]
    assert len(_journals(path.parent)) == 1  # a dry run changes nothing

    (line,) = recover_interrupted_writes([path.parent, path.parent])
    assert "finished an interrupted tag write" in line and "song.flac" in line
    for name in (path, other):
        _assert_whole(name, ("Jazz", "A longer genre"), samples)
    assert _journals(path.parent) == [] and recover_interrupted_writes([path.parent]) == []


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError(errno.EIO, "Input/output error")],
                         ids=["interrupt", "io-error"])
def test_an_exception_mid_in_place_write_keeps_the_journal_for_the_next_write(linked, monkeypatch, error):
    path, other = linked
    samples, _ = sf.read(path, dtype="float32")

    def broken_write(f, data):  # writes half of the first block, then the write is interrupted
        f.write(data[: len(data) // 2])
        raise error

    monkeypatch.setattr("builtins.open", _hook_writes(broken_write))
    with pytest.raises(KeyboardInterrupt if error is KeyboardInterrupt else tags.TagError) as info:
        write_genre(path, ["Jazz"])
    monkeypatch.undo()
    (journal,) = _journals(path.parent)
    if error is not KeyboardInterrupt:  # the one line names the file, the error and where its copy is
        assert str(info.value).startswith(f"{path}: ") and "Input/output error" in str(info.value)
        assert journal in str(info.value) and "next write there puts it back" in str(info.value)

    change = write_genre(path, ["Jazz"])
    assert change.status == "unchanged" and "finished an interrupted tag write" in change.notes[0]
    for name in (path, other):
        _assert_whole(name, ("Jazz",), samples)
    assert _journals(path.parent) == []


# --- owner, group, mode, extended attributes --------------------------------------------------


def _acl(mask: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr form): owner rw, user 4242 r, group r, mask, other -."""
    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, 4242), (0x04, 4, 0xFFFFFFFF), (0x10, mask, 0xFFFFFFFF),
               (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _set_xattrs(path: Path) -> None:
    try:
        os.setxattr(path, "user.comment", b"ripped from vinyl, 1998")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("this filesystem does not support user extended attributes")
        raise


def _attributes(path: Path) -> tuple:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), {n: os.getxattr(path, n) for n in os.listxattr(path)}


@pytest.fixture
def song(tmp_path, originals):
    def _copy(fmt: str) -> Path:
        path = tmp_path / f"song.{fmt}"
        shutil.copyfile(originals[fmt], path)
        return path

    return _copy


@pytest.mark.parametrize("fmt", ["flac", "mp3", "wav"])
def test_a_tag_write_keeps_extended_attributes_acls_owner_group_and_mode(song, fmt):
    path = song(fmt)
    _set_xattrs(path)
    os.chmod(path, 0o640)
    with_acl = True
    try:
        os.setxattr(path, "system.posix_acl_access", _acl(4))
    except OSError:
        with_acl = False  # no ACL support here: the user attribute still tells
    if os.geteuid() == 0:
        os.chown(path, 4321, 1234)
    before = _attributes(path)
    assert "user.comment" in before[3] and ("system.posix_acl_access" in before[3]) == with_acl

    assert write_genre(path, ["Jazz"]).written

    assert read_genre(path) == ("Jazz",)
    assert _attributes(path) == before
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.parametrize("refused", ["chown", "setxattr"])
def test_what_the_copy_cannot_be_given_is_kept_by_writing_in_place(song, monkeypatch, refused):
    path = song("flac")
    _set_xattrs(path)
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, os.getuid(), 1234)
    elif refused == "chown":
        pytest.skip("needs root to give the file a group of the test's choosing")
    before, inode = _attributes(path), path.stat().st_ino

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    # As for a user outside the file's group (chown) or an attribute the user may not set.
    monkeypatch.setattr(tags.os, refused, refuse)
    assert write_genre(path, ["Jazz"]).written
    monkeypatch.undo()

    assert read_genre(path) == ("Jazz",) and path.stat().st_ino == inode
    assert _attributes(path) == before
    assert os.listdir(path.parent) == [path.name]


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder another user can write to (pytest's own are the test user's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="genrify-nobody-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run a child as nobody")
def test_a_user_outside_the_files_group_keeps_its_group(open_folder, originals):
    import pwd

    nobody = pwd.getpwnam("nobody")
    path = open_folder / "song.flac"
    shutil.copyfile(originals["flac"], path)
    os.chown(path, nobody.pw_uid, 1234)  # nobody owns it, but is not in group 1234
    os.chmod(path, 0o640)
    code = "import sys; from genrify.collection.tags import write_genre; write_genre(sys.argv[1], ['Jazz'])"
    as_nobody = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": [], "cwd": "/", "timeout": 60}
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, **as_nobody)
    except PermissionError:
        pytest.skip("nobody cannot run this Python (it lies in a private folder)")
    assert done.returncode == 0, done.stderr
    st = path.stat()
    assert read_genre(path) == ("Jazz",)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 1234, 0o640)
    assert os.listdir(open_folder) == ["song.flac"]


def test_classify_write_tags_finishes_an_interrupted_write_first_and_warns(tmp_path, originals, model_file):
    from typer.testing import CliRunner

    from genrify.cli import app

    folder = tmp_path / "library"
    folder.mkdir()
    path = folder / "song.flac"
    shutil.copyfile(originals["flac"], path)
    os.link(path, folder / "other-name.flac")
    samples, _ = sf.read(path, dtype="float32")
    _interrupt_mid_write(path, signal.SIGKILL, pause=60, grow=400)
    with pytest.raises(sf.LibsndfileError):
        sf.read(path)  # what kill -9 left: a file no player decodes

    result = CliRunner().invoke(app, ["classify", str(folder), "--model", str(model_file), "--no-cache",
                                      "--write-tags", "--tag-unsure", "--tag-mode", "replace"])

    assert result.exit_code == 0, result.output
    assert "finished an interrupted tag write" in result.output and "song.flac" in result.output
    assert "failed" not in result.output.replace("0 failed", "")
    for name in (path, folder / "other-name.flac"):
        decoded, _ = sf.read(name, dtype="float32")
        # Whole: the interrupted write's genres, or the run's one genre where it tagged the file (a
        # tone may count as not music, which is never tagged).
        genres = read_genre(name)
        assert np.array_equal(decoded, samples) and (genres == ("Jazz", _second(400)) or len(genres) == 1)
    assert sorted(os.listdir(folder)) == ["other-name.flac", "song.flac"]


# --- a write never goes on over an interrupted one it could not finish (review of issue 22) -------


def _left_journal(path: Path, content: bytes, *, host: str | None = None, dev: int | None = None) -> Path:
    """A journal of a dead writer for ``path`` holding ``content`` (``host``, ``dev``: as another
    machine on a network share names it)."""
    import hashlib

    st = path.stat()
    digest = hashlib.sha256(content).hexdigest()[:16]
    name = (f".{path.name}.{host or fsutil.host_name()}.999999999.{st.st_dev if dev is None else dev}-{st.st_ino}"
            f".{st.st_size}.{digest}.genrify-journal")
    journal = path.with_name(name)
    journal.write_bytes(content)
    return journal


@pytest.mark.parametrize("left", ["damaged", "another-machine"])
def test_a_write_refuses_a_file_whose_interrupted_write_could_not_be_finished(linked, left):
    path, other = linked
    before = path.read_bytes()
    if left == "damaged":
        journal = _left_journal(path, b"the whole new file")
        journal.write_bytes(b"the whole new fi")  # cut short: its checksum no longer matches
    else:  # another machine's, whose device numbers for the same file differ (NFS)
        journal = _left_journal(path, b"the whole new file", host="nas-7", dev=path.stat().st_dev + 1)

    for name, dry_run in ((path, True), (other, False), (path, False)):
        with pytest.raises(tags.TagError) as info:
            write_genre(name, ["Jazz"], dry_run=dry_run)
        message = str(info.value)
        assert message.startswith(f"{name}: an interrupted tag write of it could not be finished, ")
        assert message.endswith("left alone") and journal.name in message and "\n" not in message
        assert ("checksum" if left == "damaged" else "another machine (nas-7)") in message

    assert path.read_bytes() == before and journal.exists()
    assert sorted(os.listdir(path.parent)) == sorted([journal.name, "other-name.flac", "song.flac"])


def test_the_journal_a_kill_9_leaves_is_no_more_readable_than_the_file(linked, monkeypatch):
    path, _ = linked
    os.chmod(path, 0o600)
    modes: list[int] = []
    real_open = open

    def dying_open(file, mode="r", *args, **kwargs):
        if mode == "r+b":  # the in-place write: the journal is complete, and the process dies here
            modes.extend(stat.S_IMODE((path.parent / n).stat().st_mode) for n in _journals(path.parent))
            raise KeyboardInterrupt
        return real_open(file, mode, *args, **kwargs)

    old_umask = os.umask(0o022)  # new files 0644: a private song's copy would be everyone's
    monkeypatch.setattr("builtins.open", dying_open)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_genre(path, ["Jazz"])
    finally:
        monkeypatch.undo()
        os.umask(old_umask)
    assert modes == [0o600]
    assert path.read_bytes() and _journals(path.parent) == []  # nothing changed yet: the journal went


def test_the_copy_is_no_more_readable_than_the_file_while_its_content_goes_in(song, monkeypatch):
    path = song("flac")
    os.chmod(path, 0o600)
    modes: list[int] = []
    real_copy = shutil.copyfileobj

    def watching_copy(src, dst, *args):
        modes.append(stat.S_IMODE(os.fstat(dst.fileno()).st_mode))
        return real_copy(src, dst, *args)

    monkeypatch.setattr(tags.shutil, "copyfileobj", watching_copy)
    old_umask = os.umask(0o022)
    try:
        assert write_genre(path, ["Jazz"]).written
    finally:
        os.umask(old_umask)
    assert modes == [0o600] and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_checking_each_file_of_a_large_folder_lists_it_once(tmp_path, originals, monkeypatch):
    folder = tmp_path / "flat"
    folder.mkdir()
    files = []
    for i in range(30):
        files.append(folder / f"{i:02d}.flac")
        shutil.copyfile(originals["flac"], files[-1])
    os.utime(folder, (1e9, 1e9))  # last changed long ago
    listed: list[str] = []
    real_listdir, real_scandir = os.listdir, os.scandir

    def counting(real):
        def listing(path="."):
            if os.fspath(path) == str(folder):
                listed.append(str(path))
            return real(path)
        return listing

    monkeypatch.setattr(fsutil.os, "listdir", counting(real_listdir))
    monkeypatch.setattr(fsutil.os, "scandir", counting(real_scandir))
    for path in files:  # a dry run checks each file as a real one does, and writes nothing
        assert write_genre(path, ["Jazz"], dry_run=True).status == "written"
    assert len(listed) <= 1, f"the folder was listed {len(listed)} times for {len(files)} files"
