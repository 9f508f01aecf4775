from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from helpers import tone, tone_file
from mediafile import MediaFile  # beets' own tag library: what beets users' files are read with

from genrify.audio import decode as audio

from genrify.core import fsutil

from genrify.collection import tags
from genrify.collection.tagpolicy import Provenance
from genrify.errors import GenrifyError, ParameterError, TagError
from genrify.collection.tags import (
    MP4_PROVENANCE_KEY,
    TAG_STATUSES,
    TagChange,
    read_album,
    read_artist,
    read_genre,
    read_provenance,
    write_genre,
)

FORMATS = ["mp3", "flac", "ogg", "opus", "m4a", "wav", "aiff"]
# Formats whose genre tag holds several values (every one: ID3v2.4, Vorbis comments, MP4).
MULTI_VALUED = set(FORMATS)
SR = 22050


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
    made: dict[str, Path | None] = {}
    for fmt in FORMATS:
        try:
            made[fmt] = tone_file(root / f"song.{fmt}", sr=SR)
        except Exception:  # noqa: BLE001 - only an m4a may be missing (see below)
            if fmt != "m4a":
                raise
            made[fmt] = None  # a PyAV (ffmpeg) build without an AAC encoder: its cases skip
    return made


@pytest.fixture
def song(tmp_path, originals):
    """song(fmt) -> a fresh copy of the module's file in that format."""

    def _copy(fmt: str, name: str = "song") -> Path:
        if originals[fmt] is None:
            pytest.skip(f"cannot make a .{fmt} file here (no AAC encoder in this PyAV/ffmpeg build)")
        path = tmp_path / f"{name}.{fmt}"
        shutil.copyfile(originals[fmt], path)
        return path

    return _copy


def save_v23(path: Path, frame: object) -> Path:
    """Add ``frame`` to the file's ID3 tag and save it as ID3v2.3 (what older taggers write)."""
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    f.tags.add(frame)
    f.save(v2_version=3)
    return path


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
    assert read_artist(path) == "Ärtist"  # wav and aiff too (their ID3 tags, read directly)
    assert _other_tags(path) == before_tags
    after_audio = audio.load(path)
    assert after_audio.dtype == before_audio.dtype and np.array_equal(after_audio, before_audio)
    assert _packets(path) == before_packets
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _folder(path) == [path.name]  # no temporary left behind


@pytest.mark.parametrize("fmt", FORMATS)
def test_several_genres_are_separate_values_where_the_format_allows(song, fmt):
    path = song(fmt)
    change = write_genre(path, ["Rock", " Jazz ", "Rock", "", "ROCK"])
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
    assert [k for k, _ in mutagen.File(path).tags if k.lower() == "genre"] == ["GENRE"]


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
    # A read-only file that already holds the genres is unchanged, not failed (a read-only library
    # tagged before, run again), and a dry run says the same.
    os.chmod(path, 0o644)
    write_genre(path, ["Rock"])
    os.chmod(path, 0o444)
    data = path.read_bytes()
    for dry_run in (False, True):
        assert write_genre(path, ["Rock"], dry_run=dry_run).status == "unchanged"
    assert path.read_bytes() == data
    with pytest.raises(TagError, match="read-only"):  # a change still needs write access
        write_genre(path, ["Jazz"], dry_run=True)


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

    path = save_v23(song("mp3"), TPE1(encoding=1, text=["Old Player"]))
    assert ID3(path).version[:2] == (2, 3)
    change = write_genre(path, ["Rock", "Jazz"])
    assert change.new == ("Rock", "Jazz")
    assert ID3(path).version[:2] == (2, 3)
    assert ID3(path)["TCON"].text == ["Rock/Jazz"]  # v2.3 has no multi-values: one "/"-joined value
    assert read_genre(path) == ("Rock", "Jazz") and read_artist(path) == "Old Player"


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
    monkeypatch.setattr(tags, "_set", lambda kind, tags_, values, provenance: None)  # a write that silently did nothing
    with pytest.raises(TagError, match="did not read back"):
        write_genre(path, ["Rock"])
    assert path.read_bytes() == data and _folder(path) == sorted([path.name, linked.name])


# --- issue 14: read-back by other tools, ID3v2.3, tag modes, provenance, albums ----------------------

# What each format holds after write_genre(["Rock", "Pop"]) with a provenance record, as mutagen
# and mediafile read it back.
READ_BACK_FORMATS = ["mp3", "mp3-v23", "flac", "ogg", "opus", "m4a", "wav"]


def _record(*genres: str) -> Provenance:
    return Provenance(genres=genres, model="genrify-musicnn", version="1.0",
                      probabilities={g: round(0.6 / (i + 1), 3) for i, g in enumerate(genres)})


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _mutagen_provenance(path: Path) -> str:
    """The provenance field as a tagger sees it, read with mutagen's own per-format keys."""
    f = mutagen.File(path)
    if path.suffix in (".mp3", ".wav", ".aiff"):
        frames = f.tags.getall("TXXX:GENRIFY")
        assert len(frames) == 1 and frames[0].desc == "GENRIFY"
        return frames[0].text[0]
    if path.suffix == ".m4a":
        values = f.tags[MP4_PROVENANCE_KEY]
        from mutagen.mp4 import AtomDataType

        assert len(values) == 1 and values[0].dataformat == AtomDataType.UTF8
        return bytes(values[0]).decode("utf-8")
    values = [v for k, v in f.tags if k == "GENRIFY"]
    assert len(values) == 1
    return values[0]


@pytest.mark.parametrize("case", READ_BACK_FORMATS)
def test_several_genres_and_the_provenance_read_back_with_mutagen_and_mediafile(song, case):
    from mutagen.id3 import ID3

    fmt, v23 = case.split("-")[0], case.endswith("v23")
    path = song(fmt)
    _set_artist_title(path)
    change = write_genre(path, ["Rock", "Pop"], provenance=_record("Rock", "Pop"), id3v23=v23)
    assert change.status == "written" and change.new == ("Rock", "Pop")

    # genrify's own reading.
    assert read_genre(path) == ("Rock", "Pop")
    assert read_provenance(path) == _record("Rock", "Pop")
    assert json.loads(_mutagen_provenance(path))["genres"] == ["Rock", "Pop"]

    # mutagen, per format: the raw frames and atoms a player reads.
    f = mutagen.File(path)
    if fmt in ("mp3", "wav"):
        tags = ID3(path) if fmt == "mp3" else f.tags
        assert tags.version[:2] == ((2, 3) if v23 else (2, 4))
        assert tags["TCON"].text == (["Rock/Pop"] if v23 else ["Rock", "Pop"])
        assert len(tags.getall("TCON")) == 1
    elif fmt == "m4a":
        assert f.tags["\xa9gen"] == ["Rock", "Pop"]
    else:
        assert [v for k, v in f.tags if k == "GENRE"] == ["Rock", "Pop"]

    # mediafile (beets): several values, except ID3v2.3's one "/"-joined value, which it does not split.
    media = MediaFile(str(path))
    if v23:
        assert media.genres == ["Rock/Pop"] and media.genre == "Rock/Pop"
    else:
        assert media.genres == ["Rock", "Pop"] and media.genre == "Rock"
    assert media.title == "A Title" and media.artist == "Ärtist"


def test_a_genre_mediafile_wrote_is_read_by_genrify(song):
    """The other direction: beets (through mediafile) writes, genrify reads."""
    for fmt in ("mp3", "flac", "m4a"):
        path = song(fmt)
        media = MediaFile(str(path))
        media.genres = ["Shoegaze", "Dream Pop"]
        media.save()
        assert read_genre(path) == ("Shoegaze", "Dream Pop")
        assert read_provenance(path) is None


def test_a_v23_tag_written_by_another_tool_is_split_on_slash(song):
    from mutagen.id3 import TCON

    path = save_v23(song("mp3"), TCON(encoding=1, text=["Rock / Pop"]))
    assert MediaFile(str(path)).genres == ["Rock / Pop"]  # mediafile keeps one value
    assert read_genre(path) == ("Rock", "Pop")  # genrify sees what a splitting player shows
    change = write_genre(path, ["Pop", "Jazz"], mode="merge")
    assert change.old == ("Rock", "Pop") and change.new == ("Rock", "Pop", "Jazz")
    assert mutagen.File(path).tags["TCON"].text == ["Rock/Pop/Jazz"]


def test_id3v23_converts_a_v24_tag_and_its_dates(song):
    from mutagen.id3 import ID3, TDRC

    path = song("mp3")
    _set_artist_title(path)
    f = mutagen.File(path)
    f.tags.add(TDRC(encoding=3, text=["2001-02-03"]))
    f.save(v2_version=4)
    write_genre(path, ["Rock", "Pop"], id3v23=True)
    raw = ID3(path, translate=False)  # the frames exactly as stored
    assert raw.version[:2] == (2, 3)
    assert "TYER" in raw and str(raw["TYER"]) == "2001" and "TDRC" not in raw
    assert MediaFile(str(path)).year == 2001
    assert raw["TPE1"].text == ["Ärtist"]
    # Without the option an existing v2.3 tag stays v2.3, dates and all.
    write_genre(path, ["Jazz"])
    raw = ID3(path, translate=False)
    assert raw.version[:2] == (2, 3) and "TYER" in raw and "TDRC" not in raw
    assert read_genre(path) == ("Jazz",)


def test_a_v23_tag_keeps_the_frames_v24_has_no_place_for(song):
    # mutagen's reading translation to v2.4 drops RVAD, TSIZ, TRDA, a year it cannot parse and a
    # TIME of a whole hour: a v2.3 tag written as v2.3 keeps every frame as it was stored.
    from mutagen.id3 import ID3, RVAD, TDAT, TIME, TRDA, TSIZ, TYER

    path = song("mp3")
    tag = ID3()
    tag.add(TYER(encoding=0, text=["199x"]))
    tag.add(TDAT(encoding=0, text=["0302"]))
    tag.add(TIME(encoding=0, text=["1500"]))
    tag.add(TSIZ(encoding=0, text=["123456"]))
    tag.add(TRDA(encoding=0, text=["12 June 1999"]))
    tag.add(RVAD(adjustments=[1, 1], peaks=[0, 0]))
    tag.save(path, v1=0, v2_version=3)
    before = {k: v for k, v in ID3(path, translate=False).items()}
    assert {"TYER", "TDAT", "TIME", "TSIZ", "TRDA", "RVAD"} <= set(before)
    write_genre(path, ["Jazz"], mode="merge")
    after = ID3(path, translate=False)
    assert after.version[:2] == (2, 3) and read_genre(path) == ("Jazz",)
    for key, frame in before.items():
        assert after[key] == frame, key


def test_id3v23_does_not_touch_other_formats(song):
    path = song("flac")
    assert write_genre(path, ["Rock", "Pop"], id3v23=True).new == ("Rock", "Pop")
    assert MediaFile(str(path)).genres == ["Rock", "Pop"]


# --- tag modes on real files -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
@pytest.mark.parametrize(
    ("mode", "with_record", "status", "after", "ours"),
    [
        # The file holds "Rock" and "Pop"; genrify proposes "Jazz" and "Rock". "ours": what the
        # new record says genrify wrote (a person's "Rock" stays a person's even when proposed).
        ("replace", False, "written", ("Jazz", "Rock"), ("Jazz",)),
        ("replace", True, "written", ("Jazz", "Rock"), ("Jazz", "Rock")),
        ("merge", False, "written", ("Rock", "Pop", "Jazz"), ("Jazz",)),  # all a person's: kept first
        ("merge", True, "written", ("Jazz", "Rock"), ("Jazz", "Rock")),  # all genrify's: stale "Pop" goes
        ("keep", False, "kept", ("Rock", "Pop"), None),
        ("keep", True, "written", ("Jazz", "Rock"), ("Jazz", "Rock")),
    ],
)
def test_tag_modes_with_and_without_provenance(song, fmt, mode, with_record, status, after, ours):
    path = song(fmt)
    if with_record:
        write_genre(path, ["Rock", "Pop"], provenance=_record("Rock", "Pop"))
    else:
        media = MediaFile(str(path))
        media.genres = ["Rock", "Pop"]  # as a person sets them in beets or a tagger
        media.save()
    stamp = _stamp(path)

    change = write_genre(path, ["Jazz", "Rock"], mode=mode, provenance=_record("Jazz", "Rock"))

    assert change.status == status and change.old == ("Rock", "Pop") and change.new == after
    assert change.changed == (status == "written") and change.written == (status == "written")
    assert read_genre(path) == after and MediaFile(str(path)).genres == list(after)
    if status == "kept":
        assert _stamp(path) == stamp and read_provenance(path) is None
    else:
        assert read_provenance(path) == _record("Jazz", "Rock").with_genres(ours)


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "m4a"])
def test_a_genre_a_person_set_after_genrify_is_kept_in_keep_and_merge_modes(song, fmt):
    path = song(fmt)
    write_genre(path, ["Rock"], provenance=_record("Rock"))
    # A person replaces genrify's genre in their tagger, leaving the GENRIFY field as it was.
    media = MediaFile(str(path))
    media.genres = ["Shoegaze"]
    media.save()
    stamp = _stamp(path)

    kept = write_genre(path, ["Metal"], mode="keep", provenance=_record("Metal"))
    assert kept.status == "kept" and not kept.changed and kept.new == ("Shoegaze",)
    assert _stamp(path) == stamp and read_genre(path) == ("Shoegaze",)

    merged = write_genre(path, ["Metal"], mode="merge", provenance=_record("Metal"))
    assert merged.status == "written" and merged.new == ("Shoegaze", "Metal")
    assert read_genre(path) == ("Shoegaze", "Metal")
    assert read_provenance(path).genres == ("Metal",)  # only what genrify wrote, never the person's

    # The next run still knows: "Metal" is genrify's and goes, "Shoegaze" stays.
    again = write_genre(path, ["Blues"], mode="merge", provenance=_record("Blues"))
    assert again.new == ("Shoegaze", "Blues")
    assert write_genre(path, ["Blues"], mode="keep", provenance=_record("Blues")).status == "kept"


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_a_file_whose_genres_would_not_change_is_not_rewritten_even_for_new_probabilities(song, fmt):
    path = song(fmt)
    write_genre(path, ["Rock", "Pop"], provenance=_record("Rock", "Pop"))
    before = read_provenance(path)
    stamp, data = _stamp(path), path.read_bytes()
    newer = Provenance(genres=("Rock", "Pop"), model="other-model", version="2.0", probabilities={"Rock": 0.99})
    for mode in ("replace", "merge", "keep"):
        change = write_genre(path, ["Rock", "Pop"], mode=mode, provenance=newer)
        assert change.status == "unchanged" and not change.changed and not change.written
        assert change.old == change.new == ("Rock", "Pop")
    assert _stamp(path) == stamp and path.read_bytes() == data and read_provenance(path) == before


def test_merge_that_adds_nothing_new_leaves_the_file_alone(song):
    path = song("flac")
    media = MediaFile(str(path))
    media.genres = ["rock", "Pop"]  # a person's, in their own spelling
    media.save()
    stamp = _stamp(path)
    change = write_genre(path, ["Rock"], mode="merge", provenance=_record("Rock"))
    assert change.status == "unchanged" and change.new == ("rock", "Pop")
    assert _stamp(path) == stamp


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_dry_run_reports_before_and_after_and_writes_nothing(song, fmt):
    path = song(fmt)
    write_genre(path, ["Rock"], provenance=_record("Rock"))
    stamp, data = _stamp(path), path.read_bytes()
    change = write_genre(path, ["Jazz", "Blues"], mode="merge", provenance=_record("Jazz", "Blues"), dry_run=True)
    assert (change.old, change.new, change.status) == (("Rock",), ("Jazz", "Blues"), "written")
    assert change.dry_run and change.changed and not change.written
    assert _stamp(path) == stamp and path.read_bytes() == data
    media = MediaFile(str(path))
    media.genres = ["Shoegaze"]
    media.save()
    kept = write_genre(path, ["Jazz"], mode="keep", dry_run=True)
    assert (kept.old, kept.new, kept.status, kept.dry_run) == (("Shoegaze",), ("Shoegaze",), "kept", True)


@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_a_separator_joins_and_merges_genre_by_genre(song, fmt):
    path = song(fmt)
    change = write_genre(path, ["Rock", "Pop"], separator="; ", provenance=_record("Rock", "Pop"))
    assert change.new == ("Rock; Pop",) and MediaFile(str(path)).genres == ["Rock; Pop"]
    assert read_provenance(path).genres == ("Rock", "Pop")
    # The next run knows the joined genres are genrify's.
    assert write_genre(path, ["Jazz"], mode="keep", separator="; ", provenance=_record("Jazz")).new == ("Jazz",)
    # A person adds one; merge keeps it, repeats nothing, and records only genrify's.
    media = MediaFile(str(path))
    media.genres = ["Shoegaze; Jazz"]
    media.save()
    merged = write_genre(path, ["Metal", "Shoegaze"], mode="merge", separator="; ", provenance=_record("Metal", "Shoegaze"))
    assert merged.new == ("Shoegaze; Metal",) and read_provenance(path).genres == ("Metal",)
    assert write_genre(path, ["Metal"], mode="merge", separator="; ", provenance=_record("Metal")).status == "unchanged"
    # Without the separator, the record still says genrify joined Metal in with "; ": the person's
    # Shoegaze stays, genrify's earlier Metal goes.
    assert write_genre(path, ["Blues"], mode="merge", provenance=_record("Blues")).new == ("Shoegaze", "Blues")


@pytest.mark.parametrize("fmt", ["mp3", "flac", "m4a"])
def test_writing_without_a_record_removes_a_stale_one(song, fmt):
    path = song(fmt)
    write_genre(path, ["Rock"], provenance=_record("Rock"))
    assert read_provenance(path) is not None
    write_genre(path, ["Jazz"])
    assert read_genre(path) == ("Jazz",) and read_provenance(path) is None
    assert write_genre(path, ["Blues"], mode="keep").status == "kept"  # "Jazz" now counts as a person's


def test_a_record_from_another_tool_counts_as_none(song):
    from mutagen.id3 import TXXX

    path = song("mp3")
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    f.tags.add(TXXX(encoding=3, desc="GENRIFY", text=['{"by": "someone else", "genres": ["Rock"]}']))
    f.tags.add(TXXX(encoding=3, desc="genre source", text=["lastfm"]))
    f.save()
    write_genre(path, ["Rock"], mode="replace")  # no provenance given: genres only
    assert read_provenance(path) is None
    assert write_genre(path, ["Jazz"], mode="keep").status == "kept"


def test_a_record_that_does_not_read_back_is_never_used(song, monkeypatch):
    from mutagen.flac import FLAC

    path = song("flac")
    data = path.read_bytes()
    real_save = FLAC.save

    def save_dropping_the_record(self, *args, **kwargs):
        del self.tags["GENRIFY"]  # a save that silently lost the provenance field
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(FLAC, "save", save_dropping_the_record)
    with pytest.raises(TagError, match="did not read back"):
        write_genre(path, ["Rock"], provenance=_record("Rock"))
    assert path.read_bytes() == data and _folder(path) == [path.name]


def test_tag_change_status_must_agree_with_changed(tmp_path):
    assert TagChange(tmp_path, (), ("Rock",), True).status == "written"
    assert TagChange(tmp_path, ("Rock",), ("Rock",), False).status == "unchanged"
    assert TAG_STATUSES == ("written", "unchanged", "kept")
    with pytest.raises(ParameterError):
        TagChange(tmp_path, (), ("Rock",), True, status="kept")
    with pytest.raises(ParameterError):
        TagChange(tmp_path, (), (), False, status="maybe")


def test_an_unknown_mode_is_refused_before_the_file_is_read(tmp_path):
    with pytest.raises(ParameterError, match="tag mode"):
        write_genre(tmp_path / "missing.mp3", ["Rock"], mode="overwrite")


# --- albums ----------------------------------------------------------------------------------------


def _set_album(path: Path, artist: str | None, album_artist: str | None, album: str | None) -> None:
    media = MediaFile(str(path))
    media.artist, media.albumartist, media.album = artist, album_artist, album
    media.save()


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "m4a", "wav"])
def test_read_album_prefers_the_album_artist(song, fmt):
    path = song(fmt)
    _set_album(path, "Track Artist", "Album Artist", "The Album")
    assert read_album(path) == ("Album Artist", "The Album")
    assert read_artist(path) == "Track Artist"
    _set_album(path, "Track Artist", None, "The Album")
    assert read_album(path) == ("Track Artist", "The Album")
    _set_album(path, None, "Album Artist", None)
    assert read_artist(path) == "Album Artist"
    _set_album(path, "  ", None, None)
    assert read_album(path) == (None, None)


def test_read_album_never_raises(song, tmp_path):
    assert read_album(song("mp3")) == (None, None)  # no tags at all
    assert read_album(tmp_path / "missing.flac") == (None, None)
    broken = song("flac")
    _truncated_flac(broken)
    assert read_album(broken) == (None, None)
    text = tmp_path / "notes.ogg"
    _text(text)
    assert read_album(text) == (None, None)


# --- the genres a file holds, read as learning reads them ------------------------------------------


def _set_raw_genres(path: Path, values: list[str]) -> None:
    """Store these genre values exactly, the format's own way, as a person's tagger left them."""
    from mutagen.id3 import ID3, TCON

    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if isinstance(f.tags, ID3):
        f.tags.setall("TCON", [TCON(encoding=3, text=values)])
        f.save(v2_version=4)
        return
    f.tags["\xa9gen" if path.suffix == ".m4a" else "GENRE"] = values
    f.save()


@pytest.mark.parametrize(
    ("fmt", "value", "proposed", "after"),
    [
        ("flac", "Swing; Jazz", ["Jazz"], ("Swing; Jazz",)),
        ("mp3", "Swing;Jazz", ["Jazz"], ("Swing;Jazz",)),
        ("m4a", "Swing, Jazz", ["Jazz"], ("Swing, Jazz",)),
        ("flac", "8", ["Jazz"], ("8",)),  # an ID3v1 genre number where no player translates it
        ("ogg", "(8)", ["Jazz", "Blues"], ("(8)", "Blues")),
        ("m4a", "(0)", ["Jazz", "Blues"], ("(0)", "Jazz")),
    ],
)
def test_merge_repeats_no_genre_a_persons_joined_or_numbered_value_names(song, fmt, value, proposed, after):
    path = song(fmt)
    _set_raw_genres(path, [value])
    change = write_genre(path, proposed, mode="merge", provenance=_record(*proposed))
    assert change.new == after and change.status == ("unchanged" if after == (value,) else "written")
    assert read_genre(path) == after  # the person's value exactly as they wrote it
    if change.written:
        assert read_provenance(path).genres == after[1:]  # only what genrify added
    assert write_genre(path, proposed, mode="keep", provenance=_record(*proposed)).status == "kept"


@pytest.mark.parametrize("fmt", ["opus", "mp3", "m4a"])
@pytest.mark.parametrize("placeholder", ["Other", "Unknown", ""])
def test_a_file_holding_only_a_placeholder_has_no_genre(song, fmt, placeholder):
    path = song(fmt)
    _set_raw_genres(path, [placeholder])
    dry = write_genre(path, ["Classical"], mode="keep", provenance=_record("Classical"), dry_run=True)
    assert dry.status == "written"
    assert write_genre(path, ["Classical", "Folk"], mode="merge",
                       provenance=_record("Classical", "Folk")).new == ("Classical", "Folk")
    assert read_provenance(path).genres == ("Classical", "Folk")
    # Beside a person's genre the placeholder is replaced, the genre kept.
    _set_raw_genres(path, [placeholder, "Rock"])
    assert write_genre(path, ["Jazz"], mode="merge", provenance=_record("Jazz")).new == ("Rock", "Jazz")
    _set_raw_genres(path, [placeholder, "Rock"])
    assert write_genre(path, ["Jazz"], mode="keep", provenance=_record("Jazz")).status == "kept"


@pytest.mark.parametrize("fmt", ["flac", "mp3", "m4a"])
@pytest.mark.parametrize("separator", [" | ", " & "])
def test_genrify_reads_back_a_value_it_joined_with_any_separator(song, fmt, separator):
    path = song(fmt)
    first = write_genre(path, ["Classical", "Jazz"], separator=separator, provenance=_record("Classical", "Jazz"))
    assert first.new == (f"Classical{separator}Jazz",)
    assert read_provenance(path).separator == separator
    # A later run without the separator knows the value for genrify's: not kept, nothing repeated.
    assert write_genre(path, ["Classical", "Jazz"], mode="keep", dry_run=True,
                       provenance=_record("Classical", "Jazz")).status == "written"
    merged = write_genre(path, ["Classical"], mode="merge", provenance=_record("Classical"))
    assert merged.new == ("Classical",) and read_provenance(path).genres == ("Classical",)
    assert read_provenance(path).separator is None
    # A person's genre merged with the separator: the joined value names genrify's genre too.
    _set_raw_genres(path, ["Swing"])
    write_genre(path, ["Classical"], mode="merge", separator=separator, provenance=_record("Classical"))
    assert read_genre(path) == (f"Swing{separator}Classical",)
    assert write_genre(path, ["Classical"], mode="merge", separator=separator,
                       provenance=_record("Classical")).status == "unchanged"
    # Without the separator the same genres go in as separate values: the person's Swing stays theirs.
    assert write_genre(path, ["Classical"], mode="merge", provenance=_record("Classical")).new == ("Swing", "Classical")
    assert read_provenance(path).genres == ("Classical",)
    assert write_genre(path, ["Classical"], mode="merge", provenance=_record("Classical")).status == "unchanged"


# --- ID3v1 beside ID3v2 --------------------------------------------------------------------------

_V1_BLOCK = (b"TAG" + b"Old title".ljust(30, b"\0") + b"V1 Artist".ljust(30, b"\0") + b"V1 Album".ljust(30, b"\0")
             + b"1999" + b"v1 comment".ljust(30, b"\0") + b"\x08")


@pytest.mark.parametrize("v23", [False, True])
def test_an_mp3s_id3v1_block_stays_byte_for_byte_and_adds_nothing_to_id3v2(song, v23):
    from mutagen.id3 import ID3, TIT2

    path = song("mp3")
    tag = ID3()
    tag.add(TIT2(encoding=3, text=["v2 title"]))
    tag.save(path, v1=0, v2_version=3 if v23 else 4)
    with open(path, "ab") as f:
        f.write(_V1_BLOCK)

    write_genre(path, ["Rock"], provenance=_record("Rock"))

    assert path.read_bytes()[-128:] == _V1_BLOCK
    v2 = ID3(path, load_v1=False)
    assert sorted(v2.keys()) == ["TCON", "TIT2", "TXXX:GENRIFY"] and v2["TIT2"].text == ["v2 title"]
    assert v2.version[:2] == ((2, 3) if v23 else (2, 4))
    assert read_genre(path) == ("Rock",)


def test_an_mp3_with_only_id3v1_gets_an_id3v2_tag_with_only_the_genre(song):
    from mutagen.id3 import ID3

    path = song("mp3")
    mutagen.File(path).delete()
    with open(path, "ab") as f:
        f.write(_V1_BLOCK)
    assert read_genre(path) == ("Jazz",)  # the v1 genre (8) is the file's genre, as mutagen and beets read it
    assert write_genre(path, ["Rock"], mode="keep", provenance=_record("Rock")).status == "kept"

    write_genre(path, ["Rock"], mode="merge", provenance=_record("Rock"))

    assert path.read_bytes()[-128:] == _V1_BLOCK
    assert sorted(ID3(path, load_v1=False).keys()) == ["TCON", "TXXX:GENRIFY"]
    assert read_genre(path) == ("Jazz", "Rock") and read_provenance(path).genres == ("Rock",)


def _append_chunk(path: Path, chunk_id: bytes, body: bytes) -> None:
    """Add a top-level chunk at the end of a wav (RIFF, little-endian) or aiff (FORM, big-endian) file."""
    import struct

    data = bytearray(path.read_bytes())
    order = "<" if data[:4] == b"RIFF" else ">"
    data += chunk_id + struct.pack(order + "I", len(body)) + body
    data[4:8] = struct.pack(order + "I", len(data) - 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["wav", "aiff"])
def test_a_chunk_that_ends_like_an_id3v1_block_adds_nothing_to_a_chunk_id3_tag(song, fmt):
    # wav and aiff keep ID3 in a chunk and have no ID3v1; mutagen's default still reads the
    # file's last 128 bytes as one.
    from mutagen.id3 import TIT2

    path = song(fmt)
    tagged = mutagen.File(path)
    tagged.add_tags()
    tagged.tags.add(TIT2(encoding=3, text=["A Title"]))
    tagged.save()
    _append_chunk(path, b"JUNK" if fmt == "wav" else b"APPL", _V1_BLOCK)
    assert read_genre(path) == ()  # not the "genre" byte 8 (Jazz) of that chunk
    assert write_genre(path, ["Rock"], mode="keep", provenance=_record("Rock")).status == "written"
    tagged = type(mutagen.File(path))(path, load_v1=False)
    assert sorted(tagged.tags.keys()) == ["TCON", "TIT2", "TXXX:GENRIFY"]
    assert path.read_bytes().count(_V1_BLOCK) == 1 and read_genre(path) == ("Rock",)
    assert read_artist(path) is None  # nor the "artist" of that chunk


def test_a_joined_v23_value_with_a_slash_in_a_genre_stays_genrifys(song):
    # ID3v2.3 readers split "/" too: "Jazz | Hip-Hop/Rap" reads back as "Jazz | Hip-Hop" and "Rap".
    path = song("mp3")
    write_genre(path, ["Jazz", "Hip-Hop/Rap"], separator=" | ", id3v23=True, provenance=_record("Jazz", "Hip-Hop/Rap"))
    assert read_genre(path) == ("Jazz | Hip-Hop", "Rap")
    # a later merge without the separator knows all of it for genrify's: no earlier guess is kept
    assert write_genre(path, ["Blues"], mode="merge", provenance=_record("Blues")).new == ("Blues",)
