"""The one atomic write (temporary name, fsync, rename) and the cleanup of its leftovers."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrify.core import fsutil
from genrify.errors import GenrifyIOError
from genrify.core.fsutil import (
    TEMP_PATTERN,
    atomic_path,
    atomic_write,
    remove_leftovers,
    scratch_path,
)


@pytest.fixture
def umask() -> Iterator[int]:
    """A known umask for the test, restored afterwards."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _host() -> str:
    return fsutil.host_name()


def _leftover(folder: Path, target: str, pid: int, host: str | None = None, data: bytes = b"half a song") -> Path:
    path = folder / f".{target}.{host or _host()}.{pid}.0123abcd.genrify-tmp"
    path.write_bytes(data)
    return path


def test_atomic_write_writes_through_one_temporary_with_the_umask_mode(tmp_path, umask):
    target = tmp_path / "report.json"
    with atomic_write(target, "w") as f:
        f.write("{}")
        (tmp,) = [p for p in tmp_path.iterdir()]
        assert TEMP_PATTERN.fullmatch(tmp.name) and not target.exists()
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["report.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_library_that_makes_0600_files_still_gets_the_umask_mode(tmp_path, umask):
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)  # what safetensors does
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    with atomic_path(target, keep_mode=True) as tmp:
        tmp.write_bytes(b"song")
        os.chmod(tmp, 0o604)  # a copy that keeps its original's mode
    assert stat.S_IMODE(target.stat().st_mode) == 0o604


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "list.m3u8"
    target.write_text("old")
    with pytest.raises(type(error)), atomic_write(target, "w") as f:
        f.write("new, half")
        raise error
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["list.m3u8"]


def test_no_overwrite_refuses_a_name_taken_while_writing(tmp_path):
    target = tmp_path / "song.mp3"
    with pytest.raises(FileExistsError), atomic_write(target, overwrite=False) as f:
        f.write(b"mine")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's" and os.listdir(tmp_path) == ["song.mp3"]


def test_a_device_is_written_into_not_replaced():
    with atomic_write(os.devnull, "w") as f:
        f.write("nothing")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_scratch_files_never_outlive_their_block(tmp_path):
    with scratch_path(tmp_path / "song.flac") as tmp:
        tmp.write_bytes(b"copy")
        assert TEMP_PATTERN.fullmatch(tmp.name)
    assert os.listdir(tmp_path) == []


def test_a_very_long_name_still_gives_a_valid_temporary_name(tmp_path):
    target = tmp_path / ("é" * 120 + ".txt")  # 244 bytes: the temporary's name must be cut
    fsutil.write_text_atomic(target, "x")
    assert target.read_text() == "x"


def test_leftovers_of_dead_writers_go_and_everything_else_stays(tmp_path, dead_pid):
    dead = _leftover(tmp_path, "song.mp3", dead_pid)
    live = _leftover(tmp_path, "song.mp3", os.getpid())
    elsewhere = _leftover(tmp_path, "song.mp3", dead_pid, host="another-machine")
    old_mkstemp = tmp_path / ".song.mp3.k2x_9q0z.genrify-part"
    old_mkstemp.write_bytes(b"old")
    hour_ago = time.time() - 7200
    os.utime(old_mkstemp, (hour_ago, hour_ago))
    recent_mkstemp = tmp_path / ".other.flac.abcdefgh.genrify-tmp"  # its writer may still run
    recent_mkstemp.write_bytes(b"recent")
    users = [
        tmp_path / ".song.mp3.genrify-tmp",
        tmp_path / f"song.mp3.{_host()}.{dead_pid}.0123abcd.genrify-tmp",  # not hidden
        tmp_path / f".song.mp3.{_host()}.{dead_pid}.0123abcd.genrify-tmp.bak",
        tmp_path / f".song.mp3.{_host()}.{dead_pid}.0123ABCD.genrify-tmp",
        tmp_path / "song.mp3",
    ]
    for path in users:
        path.write_bytes(b"keep")
        os.utime(path, (hour_ago, hour_ago))
    folder_like = tmp_path / f".x.{_host()}.{dead_pid}.0123abcd.genrify-tmp"
    folder_like.mkdir()

    removed = remove_leftovers(tmp_path)

    assert sorted(removed) == sorted([dead, old_mkstemp])
    assert all(p.exists() for p in [live, elsewhere, recent_mkstemp, folder_like, *users])


def test_leftovers_of_one_target_only(tmp_path, dead_pid):
    mine = _leftover(tmp_path, "a.flac", dead_pid)
    other = _leftover(tmp_path, "b.flac", dead_pid)
    assert remove_leftovers(tmp_path, "a.flac") == [mine]
    assert other.exists()
    assert remove_leftovers(tmp_path / "missing") == []


def test_the_store_writes_arrays_the_same_way_and_cleans_up_their_leftovers(tmp_path, umask):
    import numpy as np

    from genrify.store.store import ARRAYS_DIR, FeatureStore, write_array

    with FeatureStore.create(tmp_path / "s") as store:
        name = write_array(store.root, "/m/a.wav", np.zeros((128, 3)))
        final = store.root / ARRAYS_DIR / name
        assert stat.S_IMODE(final.stat().st_mode) == 0o666 & ~umask
        # A killed worker's array, on another machine of the cluster: under the writer lock, it goes.
        leftover = _leftover(final.parent, final.name, 1, host="worker-7")
        store.lock()
        store.clean()
        assert not leftover.exists()


# --- in-place rewrites through a journal (issue 22) -----------------------------------------------


def _journal(folder: Path, target: Path, content: bytes, pid: int, host: str | None = None, *,
             name: str | None = None) -> Path:
    """A journal for ``target`` holding ``content``, as a writer of ``pid`` left it before the file's
    first change (its old size recorded; ``name``: the name the write went through, if not ``target``'s)."""
    import hashlib

    st = target.stat()
    digest = hashlib.sha256(content).hexdigest()[:16]
    path = folder / (f".{name or target.name}.{host or _host()}.{pid}.{st.st_dev}-{st.st_ino}.{st.st_size}"
                     f".{digest}.genrify-journal")
    path.write_bytes(content)
    assert fsutil.JOURNAL_PATTERN.fullmatch(path.name)
    return path


def test_write_in_place_keeps_the_inode_and_every_link_and_leaves_nothing(tmp_path):
    target = tmp_path / "song.flac"
    target.write_bytes(b"old" * 1000)
    os.link(target, tmp_path / "link.flac")
    inode = target.stat().st_ino
    with scratch_path(target) as tmp:
        tmp.write_bytes(b"new content, longer than before " * 200)
        fsutil.write_in_place(tmp, target)
    assert target.stat().st_ino == inode and (tmp_path / "link.flac").read_bytes() == target.read_bytes()
    assert target.read_bytes() == b"new content, longer than before " * 200
    assert sorted(os.listdir(tmp_path)) == ["link.flac", "song.flac"]


def test_a_failed_in_place_write_that_changed_nothing_leaves_no_journal(tmp_path, monkeypatch):
    target = tmp_path / "song.flac"
    target.write_bytes(b"old" * 1000)
    source = tmp_path / "new"
    source.write_bytes(b"new" * 1000)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil, "fsync_dir", full_disk)  # fails before the first byte of the file changes
    with pytest.raises(GenrifyIOError, match="file left unchanged"):
        fsutil.write_in_place(source, target)
    assert target.read_bytes() == b"old" * 1000 and os.listdir(tmp_path) == ["song.flac"]


def test_deferred_signals_hold_back_ctrl_c_and_term_until_the_block_ends():
    import signal

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            with fsutil.deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                inside = list(seen)  # nothing delivered yet
        assert inside == [] and seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_recover_in_place_finishes_a_dead_writers_journal(tmp_path, dead_pid):
    target = tmp_path / "song.flac"
    target.write_bytes(b"half new, half old")
    os.link(target, tmp_path / "link.flac")
    journal = _journal(tmp_path, target, b"the whole new file" * 100, dead_pid)

    (done,) = fsutil.recover_in_place(tmp_path)

    assert done.finished and done.target == target and done.journal == journal
    assert (tmp_path / "link.flac").read_bytes() == b"the whole new file" * 100
    assert sorted(os.listdir(tmp_path)) == ["link.flac", "song.flac"]


def test_a_name_holding_a_newline_has_its_journal_and_temporaries_known(tmp_path, dead_pid):
    # Such names are legal on Linux; a journal not known for one would leave its file half-written.
    target = tmp_path / "new\nline.flac"
    target.write_bytes(b"half new, half old")
    os.link(target, tmp_path / "link.flac")
    _journal(tmp_path, target, b"the whole new file" * 100, dead_pid)

    (done,) = fsutil.recover_in_place(tmp_path)

    assert done.finished and done.target == target and target.read_bytes() == b"the whole new file" * 100
    assert fsutil.is_temp_name(fsutil.temp_name(target.name))


def test_recover_in_place_leaves_journals_it_must_not_or_cannot_use(tmp_path, dead_pid):
    live = tmp_path / "live.flac"
    live.write_bytes(b"being written")
    running = _journal(tmp_path, live, b"a live writer's", os.getppid())
    elsewhere = _journal(tmp_path, live, b"another machine's", dead_pid, host="nas-7")
    damaged_for = tmp_path / "damaged.flac"
    damaged_for.write_bytes(b"half")
    damaged = _journal(tmp_path, damaged_for, b"whole", dead_pid)
    damaged.write_bytes(b"whol")  # cut short: its checksum no longer matches
    gone_for = tmp_path / "gone.flac"
    gone_for.write_bytes(b"half")
    gone = _journal(tmp_path, gone_for, b"whole", dead_pid)
    gone_for.unlink()

    found = {r.journal: r for r in fsutil.recover_in_place(tmp_path)}

    assert running not in found  # a live writer's: not even reported
    assert not any(r.finished for r in found.values()) and set(found) == {elsewhere, damaged, gone}
    assert "another machine" in found[elsewhere].reason and "checksum" in found[damaged].reason
    assert "gone" in found[gone].reason
    assert all(p.exists() for p in (running, elsewhere, damaged, gone))
    assert live.read_bytes() == b"being written" and damaged_for.read_bytes() == b"half"
    # Only the journals of the file asked for; and a dry run writes nothing.
    assert fsutil.recover_in_place(tmp_path, damaged_for, dry_run=True)[0].journal == damaged
    assert fsutil.remove_leftovers(tmp_path) == []  # journals are never taken for temporaries


# --- recovery writes only into the file the interrupted write left (review of issue 22) ----------


def _age(path: Path, seconds: float) -> None:
    """Set ``path``'s times back by ``seconds``: a journal left that long ago, whose writer stamped it last then."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_recovery_never_writes_a_new_file_that_was_given_the_freed_inode(tmp_path, dead_pid):
    # ext4 hands a freed inode to the next new file: song.flac's journal is left, the damaged song
    # is deleted, and a new, unrelated file gets its inode. Its device and inode are all that match.
    notes = tmp_path / "my notes.flac"
    notes.write_bytes(b"a person's own file, not a song")
    journal = _journal(tmp_path, notes, b"song.flac's new content", dead_pid, name="song.flac")

    (done,) = fsutil.recover_in_place(tmp_path)
    assert not done.finished and "gone or was replaced" in done.reason
    (asked,) = fsutil.recover_in_place(tmp_path, notes)  # a write to the new file asks too
    assert not asked.finished and asked.journal == journal

    assert notes.read_bytes() == b"a person's own file, not a song" and journal.exists()


@pytest.mark.parametrize("how", ["changed-later", "other-size"])
def test_recovery_leaves_a_file_changed_since_the_interruption_and_says_so(tmp_path, dead_pid, how):
    song = tmp_path / "song.flac"
    song.write_bytes(b"half new, half old")
    os.link(song, tmp_path / "link.flac")
    journal = _journal(tmp_path, song, b"the whole new file" * 100, dead_pid)
    if how == "changed-later":
        # Killed a minute ago; a copy over the file (or a tagger writing in place) changes it now.
        _age(journal, 60)
        song.write_bytes(b"x" * len(b"half new, half old"))
    else:
        # A size the interrupted write cannot have left: neither the old one, nor the new, nor between.
        song.write_bytes(b"y" * 5000)
    before = song.read_bytes()

    for found in (fsutil.recover_in_place(tmp_path, dry_run=True), fsutil.recover_in_place(tmp_path),
                  fsutil.recover_in_place(tmp_path, tmp_path / "link.flac")):
        (done,) = found
        assert not done.finished and "changed since the interrupted write" in done.reason
        assert "restore it by hand" in done.reason and done.journal == journal

    assert song.read_bytes() == before and journal.exists()
    from genrify.collection.tags import recovery_message

    (done,) = fsutil.recover_in_place(tmp_path)
    line = recovery_message(done)
    assert "\n" not in line and str(journal) in line and str(song) in line  # one line naming both files


def test_recovery_goes_by_the_recorded_name_also_where_the_journal_cut_it(tmp_path, dead_pid):
    song = tmp_path / ("é" * 60 + ".flac")  # 125 bytes: the journal's name keeps only its first 80
    song.write_bytes(b"half")
    name = fsutil.journal_name(song.name, song.stat(), "0" * 16)
    assert fsutil.JOURNAL_PATTERN.fullmatch(name)["name"] != song.name
    other = tmp_path / "other.flac"  # a link under another name: the journal does not name it
    os.link(song, other)
    import hashlib

    new = b"whole" * 10
    journal = tmp_path / name.replace("0" * 16, hashlib.sha256(new).hexdigest()[:16])
    journal.write_bytes(new)

    (done,) = fsutil.recover_in_place(tmp_path)
    assert done.finished and done.target == song and other.read_bytes() == new and not journal.exists()


def test_an_interrupted_in_place_write_is_recovered_however_long_the_copy_waited(tmp_path, monkeypatch):
    """The journal is stamped before each change of the file: its age before the write does not count."""
    target = tmp_path / "song.flac"
    target.write_bytes(b"old" * 1000)
    source = tmp_path / "new"
    source.write_bytes(b"new" * 2000)
    _age(source, 3600)  # a copy made an hour before it is written back (a slow disk, a stalled run)
    real_fsync = os.fsync

    def dies(fd):  # the process dies after the file changed, before it is flushed
        if os.fstat(fd).st_ino == target.stat().st_ino:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(fsutil.os, "fsync", dies)
    with pytest.raises(KeyboardInterrupt):
        fsutil.write_in_place(source, target)
    monkeypatch.undo()
    (journal,) = [p for p in tmp_path.iterdir() if p.name.endswith(fsutil.JOURNAL_SUFFIX)]
    assert int(fsutil.JOURNAL_PATTERN.fullmatch(journal.name)["size"]) == 3000  # the old size

    (done,) = fsutil.recover_in_place(tmp_path, target)
    assert done.finished and target.read_bytes() == b"new" * 2000 and not journal.exists()


def test_the_scratch_copy_is_never_more_readable_than_its_original(tmp_path, umask):
    original = tmp_path / "private.flac"
    original.write_bytes(b"a diary")
    os.chmod(original, 0o600)
    with scratch_path(original, like=original.stat()) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
    os.chmod(original, 0o644)
    with scratch_path(original, like=original.stat()) as tmp:  # and never more than the umask gives
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o644 & ~umask
    # A copy in another group than the file's would let that group read it: no group bits then.
    st = original.stat()
    other_group = os.stat_result((0o100660, st.st_ino, st.st_dev, 1, st.st_uid, st.st_gid + 1, 7, 0, 0, 0))
    with scratch_path(original, like=other_group) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600


def test_journals_are_listed_once_while_the_folder_is_unchanged(tmp_path, monkeypatch, dead_pid):
    song = tmp_path / "song.flac"
    song.write_bytes(b"half")
    _age(tmp_path, 60)  # a folder last changed a while ago: its listing can be kept
    listed: list[str] = []
    real_listdir, real_scandir = os.listdir, os.scandir

    def counting(real):
        def listing(path="."):
            listed.append(os.fspath(path))
            return real(path)
        return listing

    monkeypatch.setattr(fsutil.os, "listdir", counting(real_listdir))
    monkeypatch.setattr(fsutil.os, "scandir", counting(real_scandir))
    for _ in range(20):
        assert fsutil.recover_in_place(tmp_path, song) == []
    assert len(listed) <= 1
    # A journal that appears changes the folder: it is seen at once.
    journal = _journal(tmp_path, song, b"whole", dead_pid)
    (done,) = fsutil.recover_in_place(tmp_path, song)
    assert done.finished and done.journal == journal and song.read_bytes() == b"whole"
    # A folder changed within the last seconds is listed each time: a change in the same tick of
    # the filesystem's clock would leave its times as they were.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    listed.clear()
    assert fsutil.journal_names(fresh) == () == fsutil.journal_names(fresh)
    assert listed == [str(fresh)] * 2
