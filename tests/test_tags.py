from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from helpers import tone, write_with_av

from genrify import audio, fsutil, tags
from genrify.errors import GenrifyError, ParameterError, TagError
from genrify.tags import TagChange, read_artist, read_genre, write_genre

FORMATS = ["mp3", "flac", "ogg", "opus", "m4a", "wav", "aiff"]
# Formats whose genre tag holds several values; the others get one joined string.
MULTI_VALUED = {"mp3", "flac", "ogg", "opus", "wav", "aiff"}
SR = 22050


def _make(path: Path, seconds: float = 1.0) -> Path:
    data = tone(seconds, SR)
    fmt = path.suffix[1:]
    if fmt in ("mp3", "m4a", "opus"):
        write_with_av(path, data, SR)
    else:
        sf.write(path, data, SR)
    return path


def _set_artist_title(path: Path) -> None:
    """Tags a player shows, set the format's own way before genrify touches the file."""
    from mutagen.id3 import ID3, TALB, TIT2, TPE1

    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if isinstance(f.tags, ID3):
        f.tags.add(TPE1(encoding=3, text=["Ärtist"]))
        f.tags.add(TIT2(encoding=3, text=["A Title"]))
        f.tags.add(TALB(encoding=3, text=["An Album"]))
    elif path.suffix == ".m4a":
        f.tags["\xa9ART"] = ["Ärtist"]
        f.tags["\xa9nam"] = ["A Title"]
        f.tags["\xa9alb"] = ["An Album"]
    else:
        f.tags["artist"] = ["Ärtist"]
        f.tags["title"] = ["A Title"]
        f.tags["album"] = ["An Album"]
    f.save()


def _other_tags(path: Path) -> dict[str, str]:
    """Every tag but the genre, in a comparable form."""
    f = mutagen.File(path)
    genre_keys = {"tcon", "genre", "\xa9gen"}
    return {str(k): repr(v) for k, v in f.tags.items() if str(k).split(":")[0].lower() not in genre_keys}


def _packets(path: Path) -> list[bytes]:
    """The compressed (or PCM) audio packets exactly as stored in the file."""
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def _folder(path: Path) -> list[str]:
    return sorted(os.listdir(path.parent))


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """One small file per format (encoded once per module, copied by each test)."""
    root = tmp_path_factory.mktemp("originals")
    return {fmt: _make(root / f"song.{fmt}") for fmt in FORMATS}


@pytest.fixture
def song(tmp_path, originals):
    """song(fmt) -> a fresh copy of the module's file in that format."""

    def _copy(fmt: str, name: str = "song") -> Path:
        path = tmp_path / f"{name}.{fmt}"
        shutil.copyfile(originals[fmt], path)
        return path

    return _copy


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_then_read_keeps_other_tags_and_the_audio(song, fmt):
    path = song(fmt)
    _set_artist_title(path)
    os.chmod(path, 0o640)
    before_tags = _other_tags(path)
    before_audio = audio.load(path)
    before_packets = _packets(path)
    assert read_genre(path) == ()

    change = write_genre(path, ["Jazz"])

    assert change == TagChange(path=path, old=(), new=("Jazz",), changed=True, dry_run=False)
    assert change.written
    assert read_genre(path) == ("Jazz",)
    if fmt not in ("wav", "aiff"):  # read_artist's easy interface has no WAVE/AIFF variant
        assert read_artist(path) == "Ärtist"
    assert _other_tags(path) == before_tags
    after_audio = audio.load(path)
    assert after_audio.dtype == before_audio.dtype and np.array_equal(after_audio, before_audio)
    assert _packets(path) == before_packets
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _folder(path) == [path.name]  # no temporary left behind


@pytest.mark.parametrize("fmt", FORMATS)
def test_several_genres_are_separate_values_where_the_format_allows(song, fmt):
    path = song(fmt)
    change = write_genre(path, ["Rock", " Jazz ", "Rock", ""])
    expected = ("Rock", "Jazz") if fmt in MULTI_VALUED else ("Rock; Jazz",)
    assert change.new == expected
    assert read_genre(path) == expected


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_separator_joins_genres_into_one_value(song, fmt):
    path = song(fmt)
    assert write_genre(path, ["Rock", "Jazz"], separator=" / ").new == ("Rock / Jazz",)
    assert read_genre(path) == ("Rock / Jazz",)


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "m4a"])
def test_a_new_genre_replaces_the_old_one(song, fmt):
    path = song(fmt)
    write_genre(path, ["Rock", "Pop"])
    change = write_genre(path, ["Jazz"])
    assert change.old == (("Rock", "Pop") if fmt in MULTI_VALUED else ("Rock; Pop",))
    assert change.new == ("Jazz",) and change.changed
    assert read_genre(path) == ("Jazz",)


def test_every_vorbis_genre_comment_is_replaced_whatever_its_case(song):
    path = song("flac")
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    f.tags.append(("GENRE", "Rock"))
    f.tags.append(("Genre", "Pop"))
    f.save()
    assert read_genre(path) == ("Rock", "Pop")
    write_genre(path, ["Jazz"])
    assert read_genre(path) == ("Jazz",)
    assert [k for k, _ in mutagen.File(path).tags if k.lower() == "genre"] == ["genre"]


def test_the_same_genre_again_leaves_the_file_alone(song):
    path = song("mp3")
    write_genre(path, ["Rock", "Jazz"])
    st = path.stat()
    change = write_genre(path, ["Rock", "Jazz"])
    assert not change.changed and not change.written
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_dry_run_changes_nothing(song, fmt):
    path = song(fmt)
    _set_artist_title(path)
    data, st = path.read_bytes(), path.stat()
    change = write_genre(path, ["Metal", "Rock"], dry_run=True)
    assert change.changed and change.dry_run and not change.written
    assert change.old == () and change.new[0].startswith("Metal")
    assert path.read_bytes() == data
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert _folder(path) == [path.name]


def test_a_read_only_file_is_refused_even_for_root(song):
    path = song("mp3")
    data = path.read_bytes()
    os.chmod(path, 0o444)
    for dry_run in (False, True):
        with pytest.raises(TagError, match="read-only") as info:
            write_genre(path, ["Rock"], dry_run=dry_run)
        assert str(path) in str(info.value) and info.value.path == str(path)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert read_genre(path) == ()  # reading is fine


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).bytes(4000))


def _truncated_flac(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:30])  # "fLaC" + half a STREAMINFO block


def _damaged_id3(path: Path) -> None:
    # An ID3v2.4 header that promises far more tag bytes than the file holds.
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x7f\x7f" + path.read_bytes()[:50])


def _text(path: Path) -> None:
    path.write_text("not audio at all\n" * 20)


@pytest.mark.parametrize(
    ("fmt", "damage", "reason"),
    [
        ("mp3", _random_bytes, "damaged or unsupported"),
        ("flac", _truncated_flac, "damaged or unsupported"),
        ("mp3", _damaged_id3, "damaged ID3 tag"),
        ("ogg", _text, "unrecognised audio format"),
    ],
)
def test_a_broken_file_gives_one_clear_error_and_stays_untouched(song, fmt, damage, reason):
    path = song(fmt)
    damage(path)
    data = path.read_bytes()
    with pytest.raises(TagError, match=reason) as info:
        write_genre(path, ["Rock"])
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert path.read_bytes() == data
    assert _folder(path) == [path.name]
    with pytest.raises(TagError):
        read_genre(path)


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(TagError, match="file not found"):
        write_genre(tmp_path / "gone.mp3", ["Rock"])
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(TagError, match="empty file"):
        write_genre(tmp_path / "empty.flac", ["Rock"])
    au = tmp_path / "song.au"
    sf.write(au, tone(0.5, SR), SR)  # audio genrify decodes, but no tag format mutagen writes
    with pytest.raises(TagError, match="unrecognised audio format") as info:
        write_genre(au, ["Rock"])
    assert isinstance(info.value, GenrifyError)
    with pytest.raises(TagError, match="not a regular file"):
        write_genre(tmp_path, ["Rock"])


def _fail_save(self, *args, **kwargs):
    # Half-write the temporary copy first, as a full disk would, then fail.
    with open(self.filename, "r+b") as f:
        f.write(b"\x00" * 64)
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["save", "fsync", "replace"])
@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_a_crash_while_writing_leaves_the_original_and_no_temporary(song, monkeypatch, fmt, where):
    path = song(fmt)
    _set_artist_title(path)
    data = path.read_bytes()
    if where == "save":
        monkeypatch.setattr(type(mutagen.File(path)), "save", _fail_save)
    elif where == "fsync":
        monkeypatch.setattr(fsutil, "fsync_file", lambda p: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    else:
        real_replace = os.replace

        def fail_replace(src, dst, *args, **kwargs):
            if Path(dst) == path:
                raise OSError(5, "Input/output error")
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(TagError, match="file left unchanged") as info:
        write_genre(path, ["Rock"])
    assert str(path) in str(info.value)
    assert path.read_bytes() == data
    assert _folder(path) == [path.name]


def test_an_interrupt_while_writing_leaves_no_temporary(song, monkeypatch):
    path = song("ogg")
    data = path.read_bytes()

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(mutagen.File(path)), "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_genre(path, ["Rock"])
    assert path.read_bytes() == data
    assert _folder(path) == [path.name]


def test_a_symbolic_link_stays_a_link_and_its_target_is_tagged(song):
    path = song("flac")
    link = path.with_name("link.flac")
    link.symlink_to(path.name)
    change = write_genre(link, ["Ambient"])
    assert change.path == link and change.written
    assert link.is_symlink() and read_genre(path) == ("Ambient",)


def test_id3v23_tags_stay_v23_and_join_several_genres(song):
    from mutagen.id3 import ID3, TPE1

    path = song("mp3")
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    f.tags.add(TPE1(encoding=1, text=["Old Player"]))
    f.save(v2_version=3)
    assert ID3(path).version[:2] == (2, 3)
    change = write_genre(path, ["Rock", "Jazz"])
    assert change.new == ("Rock; Jazz",)
    assert ID3(path).version[:2] == (2, 3)
    assert read_genre(path) == ("Rock; Jazz",) and read_artist(path) == "Old Player"


def test_id3_genre_references_read_as_names(song):
    from mutagen.id3 import TCON

    path = song("mp3")
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    f.tags.add(TCON(encoding=3, text=["(17)"]))
    f.save()
    assert read_genre(path) == ("Rock",)
    assert write_genre(path, ["Rock"]).old == ("Rock",)


def test_a_bare_string_is_one_genre(song):
    path = song("ogg")
    assert write_genre(path, "Hip-Hop").new == ("Hip-Hop",)


@pytest.mark.parametrize(
    ("genres", "kwargs"),
    [([], {}), (["", "  "], {}), (["Ro\x00ck"], {}), (["Rock", "Jazz"], {"separator": ""})],
)
def test_bad_arguments(song, genres, kwargs):
    path = song("mp3")
    data = path.read_bytes()
    with pytest.raises(ParameterError):
        write_genre(path, genres, **kwargs)
    assert path.read_bytes() == data


@pytest.fixture(scope="module")
def dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writes_full_size_copy_is_removed_by_the_next_write(song, dead_pid):
    path = song("flac")
    other = song("flac", name="other")
    host = fsutil.host_name()
    killed = path.with_name(f".{path.name}.{host}.{dead_pid}.89abcdef.genrify-tmp")
    shutil.copyfile(path, killed)  # what kill -9 during --write-tags leaves: a hidden full copy
    running = path.with_name(f".{path.name}.{host}.{os.getpid()}.89abcdef.genrify-tmp")
    running.write_bytes(b"a live writer's")
    others = other.with_name(f".{other.name}.{host}.{dead_pid}.89abcdef.genrify-tmp")
    others.write_bytes(b"another song's leftover")

    write_genre(path, ["Rock"])

    assert not killed.exists()
    assert running.exists() and others.exists()  # a live writer's, and not this song's: left alone


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
@pytest.mark.parametrize("genre", ["Jazz", "A very long genre " * 400])  # fits the padding; does not
def test_a_hard_linked_file_is_tagged_in_place_so_every_link_sees_it(song, fmt, genre):
    path = song(fmt)
    _set_artist_title(path)
    linked = path.with_name(f"linked.{fmt}")
    os.link(path, linked)
    os.chmod(path, 0o640)
    inode, before_tags, before_packets = path.stat().st_ino, _other_tags(path), _packets(path)

    write_genre(path, [genre])

    assert path.stat().st_ino == inode and os.path.samefile(path, linked)
    assert read_genre(linked) == (genre.strip(),)
    assert _other_tags(linked) == before_tags and _packets(linked) == before_packets
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _folder(path) == sorted([path.name, linked.name])  # the checked copy is gone


def test_a_copy_whose_tag_does_not_read_back_is_never_used(song, monkeypatch):
    path = song("flac")
    linked = path.with_name("linked.flac")
    os.link(path, linked)
    data = path.read_bytes()
    monkeypatch.setattr(tags, "_set", lambda kind, tags_, values: None)  # a write that silently did nothing
    with pytest.raises(TagError, match="did not read back"):
        write_genre(path, ["Rock"])
    assert path.read_bytes() == data and _folder(path) == sorted([path.name, linked.name])
