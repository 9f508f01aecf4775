"""Format details of :mod:`genrify.collection.tags`: converting to ID3v2.3 without losing v2.4-only frames, a
wav file's RIFF INFO genre (``IGNR``) and an mp3's APEv2 genre."""

from __future__ import annotations

import shutil

import mutagen
import pytest
import soundfile as sf
from helpers import tone, write_wav_with_info_fields, write_wav_with_info_genre, write_with_av
from mediafile import MediaFile
from mutagen.id3 import ID3

from genrify.collection.tagpolicy import Provenance
from genrify.collection.tags import read_genre, read_provenance, write_genre

SR = 22050

# --- ID3v2.3 conversion ------------------------------------------------------------------------

# The six v2.4-only text frames a person sets most (Picard writes all six), with where each is
# read back from in the v2.3 tag.
PERSONS_FRAMES = {
    "TSOP": ("Beatles, The", "TSOP"),
    "TSOA": ("Abbey Road (Remastered)", "TSOA"),
    "TSST": ("Side Ünë", "TSST"),
    "TMOO": ("Mëlancholy", "TXXX:mood"),
    "TDRL": ("2019-09-27", "TXXX:RELEASETIME"),
    "TPRO": ("2019 Apple Corps Ltd.", "TXXX:PRODUCEDNOTICE"),
}


def v24_mp3(path, frames: dict[str, str]):
    """An mp3 whose ID3v2.4 tag holds these text frames, as a person's tagger left it."""
    from mutagen.id3 import Frames

    write_with_av(path, tone(1.0, SR), SR)
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    for frame_id, text in frames.items():
        f.tags.add(Frames[frame_id](encoding=3, text=[text]))
    f.save(v2_version=4)
    return path


def stored(path) -> ID3:
    """The ID3 frames exactly as stored (no translation to v2.4 on reading)."""
    return ID3(path, translate=False)


def test_id3v23_keeps_every_v24_only_frame_a_person_set(tmp_path):
    path = v24_mp3(tmp_path / "song.mp3", {k: v for k, (v, _) in PERSONS_FRAMES.items()})
    write_genre(path, ["Rock", "Pop"], id3v23=True)
    raw = stored(path)
    assert raw.version[:2] == (2, 3)
    for value, key in PERSONS_FRAMES.values():
        assert raw[key].text == [value], key
    # beets (through mediafile) reads the sort order from the kept frame.
    assert MediaFile(str(path)).artist_sort == "Beatles, The"
    assert read_genre(path) == ("Rock", "Pop")
    # Converting again (the tag is v2.3 now) neither loses nor repeats anything.
    write_genre(path, ["Jazz"], id3v23=True)
    again = stored(path)
    assert {k: again[k].text for _, k in PERSONS_FRAMES.values()} == {k: raw[k].text for _, k in PERSONS_FRAMES.values()}
    assert sorted(again.keys()) == sorted(raw.keys())


def test_an_existing_v23_tag_keeps_the_sort_frames_picard_wrote(tmp_path):
    """Picard writes TSOP, TSOA, TSOT and TSST into v2.3 tags; genrify's v2.3 rewrite keeps them."""
    path = v24_mp3(tmp_path / "song.mp3", {"TSOP": "Cure, The", "TSOT": "Love Cats"})
    f = mutagen.File(path)
    f.tags.update_to_v23()
    f.tags.add(mutagen.id3.TSOP(encoding=1, text=["Cure, The"]))  # as Picard's compatid3 adds it back
    f.tags.add(mutagen.id3.TSOT(encoding=1, text=["Love Cats"]))
    f.save(v2_version=3)
    assert stored(path)["TSOP"].text == ["Cure, The"]
    write_genre(path, ["Pop"])  # no --id3v23: the tag stays v2.3
    raw = stored(path)
    assert raw.version[:2] == (2, 3) and raw["TSOP"].text == ["Cure, The"] and raw["TSOT"].text == ["Love Cats"]


@pytest.mark.parametrize(("frame_id", "value", "v23_frames", "txxx"), [
    ("TDRC", "2001", {"TYER": "2001"}, None),
    ("TDRC", "2001-02-03", {"TYER": "2001", "TDAT": "0302"}, None),
    ("TDRC", "2001-02-03T10:20", {"TYER": "2001", "TDAT": "0302", "TIME": "1020"}, None),
    ("TDRC", "2001-02", {"TYER": "2001"}, "RECORDINGTIME"),  # v2.3 has no month without a day
    ("TDRC", "2001-02-03T10:20:30", {"TYER": "2001", "TDAT": "0302", "TIME": "1020"}, "RECORDINGTIME"),
    ("TDOR", "1969", {"TORY": "1969"}, None),
    ("TDOR", "1969-09-26", {"TORY": "1969"}, "ORIGRELEASETIME"),  # TORY is a year
    ("TDEN", "2020-01-02T03:04:05", {}, "ENCODINGTIME"),
    ("TDTG", "2021-05-06T07:08:09", {}, "TAGGINGTIME"),
])
def test_id3v23_keeps_the_whole_date_where_v23_frames_cannot_hold_it(tmp_path, frame_id, value, v23_frames, txxx):
    path = v24_mp3(tmp_path / "song.mp3", {frame_id: value})
    write_genre(path, ["Rock"], id3v23=True)
    raw = stored(path)
    assert raw.version[:2] == (2, 3) and frame_id not in raw
    assert {k: str(raw[k]) for k in v23_frames} == v23_frames
    extra = [frame.desc for frame in raw.getall("TXXX") if frame.desc != "GENRIFY"]
    assert extra == ([txxx] if txxx else [])
    if txxx:
        assert raw["TXXX:" + txxx].text == [value]


def test_id3v23_keeps_a_persons_own_txxx_beside_the_moved_frame(tmp_path):
    from mutagen.id3 import TXXX

    path = v24_mp3(tmp_path / "song.mp3", {"TMOO": "Calm"})
    f = mutagen.File(path)
    f.tags.add(TXXX(encoding=3, desc="mood", text=["Dreamy"]))
    f.save(v2_version=4)
    write_genre(path, ["Rock"], id3v23=True)
    assert stored(path)["TXXX:mood"].text == ["Dreamy/Calm"]  # v2.3 joins several values with "/"


def test_id3v23_keeps_the_volume_adjustment(tmp_path):
    """A guard: mutagen's conversion keeps RVA2 (its key carries a description), and so must genrify's."""
    from mutagen.id3 import RVA2

    path = v24_mp3(tmp_path / "song.mp3", {})
    f = mutagen.File(path)
    f.tags.add(RVA2(desc="track", channel=1, gain=-3.5, peak=0.875))
    f.save(v2_version=4)
    write_genre(path, ["Rock"], id3v23=True)
    raw = stored(path)
    assert raw.version[:2] == (2, 3) and raw["RVA2:track"].gain == pytest.approx(-3.5)


# --- a wav file's RIFF INFO genre --------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["info-before-audio", "info-after-audio"])
def info_wav(request, tmp_path):
    """A wav whose only genre is ``Polka`` in its RIFF INFO chunk (a person's, set in another program)."""
    return write_wav_with_info_genre(tmp_path / "song.wav", tone(1.0, SR), SR, "Polka", after_audio=request.param)


def _record(*genres: str) -> Provenance:
    return Provenance(genres=genres, model="test-model", version="0.0.0", probabilities={g: 0.5 for g in genres})


def test_read_genre_sees_the_riff_info_genre(info_wav):
    assert mutagen.File(info_wav).tags is None  # no ID3 tag at all
    assert read_genre(info_wav) == ("Polka",)


def test_keep_mode_keeps_the_riff_info_genre(info_wav):
    before = info_wav.read_bytes()
    change = write_genre(info_wav, ["Jazz"], mode="keep", provenance=_record("Jazz"))
    assert change.status == "kept" and change.old == ("Polka",) and not change.notes
    assert info_wav.read_bytes() == before


def test_merge_mode_puts_the_riff_info_genre_first_and_a_second_run_changes_nothing(info_wav):
    change = write_genre(info_wav, ["Jazz"], mode="merge", provenance=_record("Jazz"))
    assert change.status == "written" and change.new == ("Polka", "Jazz") and not change.notes
    assert read_genre(info_wav) == ("Polka", "Jazz") and read_provenance(info_wav).genres == ("Jazz",)
    assert mutagen.File(info_wav).tags["TCON"].text == ["Polka", "Jazz"]
    with sf.SoundFile(info_wav) as f:
        assert f.genre == "Polka"  # the INFO chunk is as it was
    again = write_genre(info_wav, ["Jazz"], mode="merge", provenance=_record("Jazz"))
    assert again.status == "unchanged"


def test_replace_mode_writes_id3_and_says_the_riff_info_genre_stays(info_wav):
    dry = write_genre(info_wav, ["Jazz"], mode="replace", provenance=_record("Jazz"), dry_run=True)
    assert dry.status == "written" and len(dry.notes) == 1 and "would stay" in dry.notes[0]
    change = write_genre(info_wav, ["Jazz"], mode="replace", provenance=_record("Jazz"))
    (note,) = change.notes
    assert str(info_wav) in note and "RIFF INFO genre 'Polka' stays" in note
    assert change.old == ("Polka",) and change.new == ("Jazz",) == read_genre(info_wav)
    with sf.SoundFile(info_wav) as f:
        assert f.genre == "Polka"
    # The ID3 genre is read first from now on: a second run is unchanged, with no warning.
    again = write_genre(info_wav, ["Jazz"], mode="replace", provenance=_record("Jazz"))
    assert again.status == "unchanged" and not again.notes


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_the_riff_info_genre_genrify_answers_too_goes_into_id3(info_wav, mode):
    # The INFO genre is no ID3 genre: beets and other ID3 readers see none until it is written.
    change = write_genre(info_wav, ["Polka"], mode=mode, provenance=_record("Polka"))
    assert change.status == "written" and change.new == ("Polka",)
    assert mutagen.File(info_wav).tags["TCON"].text == ["Polka"]
    assert read_provenance(info_wav).genres == ()  # the person's genre (from INFO) stays theirs
    assert write_genre(info_wav, ["Polka"], mode=mode, provenance=_record("Polka")).status == "unchanged"


def test_an_id3_genre_is_read_before_the_riff_info_one(info_wav):
    write_genre(info_wav, ["Jazz"])
    assert read_genre(info_wav) == ("Jazz",)


def test_a_wav_without_info_chunk_has_no_genre(tmp_path):
    path = tmp_path / "plain.wav"
    sf.write(path, tone(0.5, SR), SR)
    assert read_genre(path) == ()
    assert write_genre(path, ["Jazz"], mode="keep").status == "written"


@pytest.mark.parametrize(("raw", "genre"), [
    ("Électronique".encode("cp1252") + b"\x00", "Électronique"),  # Windows, older editors
    ("Électronique".encode("utf-8") + b"\x00", "Électronique"),  # libsndfile, Audacity
    (b"Musique du monde\x00\x00", "Musique du monde"),
])
def test_a_riff_info_genre_in_either_encoding_reads_whole_and_merges_whole(tmp_path, raw, genre):
    fields = [(b"INAM", b"Titre\x00"), (b"IGNR", raw)]
    path = write_wav_with_info_fields(tmp_path / "song.wav", tone(0.5, SR), SR, fields)
    assert read_genre(path) == (genre,)
    change = write_genre(path, ["Jazz"], mode="merge", provenance=_record("Jazz"))
    assert change.new == (genre, "Jazz") and mutagen.File(path).tags["TCON"].text == [genre, "Jazz"]


@pytest.mark.parametrize("raw", [
    b"Electr\x81nique\x00",  # a byte neither UTF-8 nor Windows-1252 can read
    "Electr\ufffdnique".encode("utf-8"),  # what another reader already garbled
    b"Rock\x07\x00",  # a control character: not a genre
    b"\x00",
])
def test_a_riff_info_genre_that_is_not_clean_text_is_never_copied(tmp_path, raw):
    path = write_wav_with_info_fields(tmp_path / "song.wav", tone(0.5, SR), SR, [(b"IGNR", raw)])
    assert read_genre(path) == ()
    change = write_genre(path, ["Jazz"], mode="merge", provenance=_record("Jazz"))
    assert change.new == ("Jazz",) and mutagen.File(path).tags["TCON"].text == ["Jazz"]


@pytest.mark.parametrize(("list_size", "genres"), [
    (0xFFFFFFF0, ("Polka",)),  # the last chunk, its size past the end of the file: read as far as it goes
    (2, ()),  # too small to be a list: the walk stops at the garbage after it
    (None, ("Polka",)),
])
def test_a_damaged_riff_info_chunk_costs_nothing_and_raises_nothing(tmp_path, list_size, genres):
    fields = [(b"ISFT", b"x" * 10_000), (b"IGNR", b"Polka\x00")]
    path = write_wav_with_info_fields(tmp_path / "song.wav", tone(0.5, SR), SR, fields, list_size=list_size)
    assert read_genre(path) == genres
    # A hostile sub-chunk size inside the list ends the search there.
    raw = bytearray(path.read_bytes())
    at = raw.index(b"ISFT") + 4
    raw[at : at + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(raw))
    assert read_genre(path) == ()


# --- an mp3's APEv2 genre (foobar2000, Winamp, Mp3tag) ---------------------------------------------


@pytest.fixture
def ape_mp3(tmp_path):
    """An mp3 without ID3 whose only genre is ``Bebop`` in an APEv2 tag, as foobar2000 leaves one."""
    from mutagen.apev2 import APEv2

    path = tmp_path / "foobar.mp3"
    write_with_av(path, tone(1.0, SR), SR)
    mutagen.File(path).delete()  # whatever ID3 the encoder wrote: the APE tag alone
    ape = APEv2()
    ape["Artist"], ape["Genre"] = "Someone", "Bebop"
    ape.save(path)
    return path


def test_an_ape_genre_is_a_persons_genre_in_every_mode(ape_mp3, tmp_path):
    from mutagen.apev2 import APEv2

    assert read_genre(ape_mp3) == ("Bebop",)
    kept = write_genre(ape_mp3, ["Jazz"], mode="keep", provenance=_record("Jazz"))
    assert kept.status == "kept" and mutagen.File(ape_mp3).tags is None
    merged = tmp_path / "merged.mp3"
    shutil.copy(ape_mp3, merged)
    assert write_genre(merged, ["Jazz"], mode="merge", provenance=_record("Jazz")).new == ("Bebop", "Jazz")
    assert read_provenance(merged).genres == ("Jazz",)
    replaced = write_genre(ape_mp3, ["Jazz"], mode="replace", provenance=_record("Jazz"))
    (note,) = replaced.notes
    assert "its APEv2 genre 'Bebop' stays in the file" in note and read_genre(ape_mp3) == ("Jazz",)
    for path in (ape_mp3, merged):  # the APE tag itself is never touched
        assert str(APEv2(path)["Genre"]) == "Bebop" and str(APEv2(path)["Artist"]) == "Someone"


def test_a_damaged_ape_tag_is_no_genre_and_never_stops_a_write(ape_mp3):
    # A footer whose size points anywhere: mutagen raises ValueError, which must not escape.
    data = bytearray(ape_mp3.read_bytes())
    footer = data.rfind(b"APETAGEX")
    data[footer + 12 : footer + 16] = (8).to_bytes(4, "little")  # the tag's size, under its own footer's
    ape_mp3.write_bytes(bytes(data))
    assert read_genre(ape_mp3) in ((), ("Bebop",))
    assert write_genre(ape_mp3, ["Jazz"], mode="merge", provenance=_record("Jazz")).status == "written"


@pytest.mark.parametrize("id3", ["Other", "v1 Pop"])
def test_an_ape_genre_beside_a_placeholder_or_an_id3v1_number_is_the_persons(ape_mp3, id3):
    # foobar2000 writes APEv2 with an ID3v1 block (its genre byte a lossy copy); "Other" names no genre.
    if id3 == "Other":
        from mutagen.id3 import ID3, TCON

        tag = ID3()
        tag.add(TCON(encoding=3, text=["Other"]))
        tag.save(ape_mp3)
    else:
        with open(ape_mp3, "ab") as f:  # after the APE tag, as foobar2000 leaves them
            f.write(b"TAG" + b"T".ljust(30, b"\0") + b"A".ljust(30, b"\0") + b"B".ljust(30, b"\0") + b"1999"
                    + b"c".ljust(30, b"\0") + bytes([13]))
    assert read_genre(ape_mp3) == ("Bebop",)
    assert write_genre(ape_mp3, ["Jazz"], mode="keep", provenance=_record("Jazz")).status == "kept"
    assert write_genre(ape_mp3, ["Jazz"], mode="merge", provenance=_record("Jazz")).new == ("Bebop", "Jazz")
