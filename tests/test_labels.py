"""Labels from a library's own tags (written by mutagen and by mediafile) and from genre folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from helpers import write_with_av
from mediafile import MediaFile
from mutagen.id3 import ID3, TCON, TPE1, TPE2
from mutagen.mp4 import MP4

from genrify.collection import tags
from genrify.collection.genremap import GenreMap
from genrify.collection.tagpolicy import Provenance, id3v1_names, tag_values
from genrify.errors import LabelError, LibraryError, exit_code
from genrify.learn.labels import read_labels


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    """One tiny untagged file per format (tag reading never decodes the audio)."""
    root = tmp_path_factory.mktemp("templates")
    rng = np.random.default_rng(0)
    data = (0.1 * rng.standard_normal(4410)).astype(np.float32)
    out = {}
    for ext in ("wav", "flac", "ogg"):
        out[ext] = root / f"t.{ext}"
        sf.write(out[ext], data, 22050)
    for ext in ("mp3", "m4a"):
        out[ext] = root / f"t.{ext}"
        write_with_av(out[ext], data, 22050)
    return out


def copy(templates: dict[str, Path], dest: Path, ext: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(templates[ext], dest)
    return dest


def id3(path: Path, genres: list[str], *, v23: bool = False, artist: str | None = None,
        album_artist: str | None = None) -> Path:
    f = mutagen.File(str(path))  # the container decides where the ID3 tag goes (mp3, wav)
    if f.tags is None:
        f.add_tags()
    f.tags.add(TCON(encoding=3, text=genres))
    if artist:
        f.tags.add(TPE1(encoding=3, text=[artist]))
    if album_artist:
        f.tags.add(TPE2(encoding=3, text=[album_artist]))
    f.save(v2_version=3 if v23 else 4, v23_sep="/")
    return path


def vorbis(path: Path, genres: list[str], **fields: str) -> Path:
    f = mutagen.File(str(path))
    f["GENRE"] = genres
    for key, value in fields.items():
        f[key] = [value]
    f.save()
    return path


def mp4(path: Path, genres: list[str]) -> Path:
    f = MP4(str(path))
    f["\xa9gen"] = genres
    f.save()
    return path


def with_mediafile(path: Path, genres: list[str], *, id3v23: bool = False) -> Path:
    f = MediaFile(str(path), id3v23=id3v23)
    f.genres = genres
    f.save()
    return path


def genres_of(labels, path: Path) -> tuple[str, ...]:
    return next(s.genres for s in labels.songs if s.path == str(path))


# --- tags written by mutagen --------------------------------------------------------------------


def test_multi_values_of_every_format_written_by_mutagen(tmp_path, templates):
    lib = tmp_path / "lib"
    files = {
        "v24": id3(copy(templates, lib / "a.mp3", "mp3"), ["Rock", "Jazz"]),
        "v23": id3(copy(templates, lib / "b.mp3", "mp3"), ["Rock", "Jazz"], v23=True),
        "wav": id3(copy(templates, lib / "c.wav", "wav"), ["Rock", "Jazz"]),
        "flac": vorbis(copy(templates, lib / "d.flac", "flac"), ["Rock", "Jazz"]),
        "ogg": vorbis(copy(templates, lib / "e.ogg", "ogg"), ["Rock", "Jazz"]),
        "m4a": mp4(copy(templates, lib / "f.m4a", "m4a"), ["Rock", "Jazz"]),
    }
    # mutagen stores v2.3's two values as one "/"-joined value; genrify's reader splits it.
    assert ID3(str(files["v23"]))["TCON"].text == ["Rock/Jazz"]
    labels = read_labels([lib], min_songs=1)
    assert labels.files_read == 6 and not labels.unreadable and not labels.untagged
    for name, path in files.items():
        assert genres_of(labels, path) == ("Rock", "Jazz"), name
    assert labels.counts() == {"Jazz": 6, "Rock": 6}


def test_tags_written_by_mediafile_as_beets_writes_them(tmp_path, templates):
    lib = tmp_path / "lib"
    files = [
        with_mediafile(copy(templates, lib / "a.mp3", "mp3"), ["Hip-Hop", "Soul"]),
        with_mediafile(copy(templates, lib / "b.mp3", "mp3"), ["Hip-Hop", "Soul"], id3v23=True),
        with_mediafile(copy(templates, lib / "c.flac", "flac"), ["Hip-Hop", "Soul"]),
        with_mediafile(copy(templates, lib / "d.ogg", "ogg"), ["Hip-Hop", "Soul"]),
        with_mediafile(copy(templates, lib / "e.m4a", "m4a"), ["Hip-Hop", "Soul"]),
    ]
    labels = read_labels([lib], min_songs=1)
    for path in files:
        assert set(genres_of(labels, path)) == {"Hip-Hop", "Soul"}, path.name


def test_id3v1_numbers_become_names_in_every_format(tmp_path, templates):
    lib = tmp_path / "lib"
    a = id3(copy(templates, lib / "a.mp3", "mp3"), ["(17)"])
    b = id3(copy(templates, lib / "b.mp3", "mp3"), ["8"], v23=True)
    c = vorbis(copy(templates, lib / "c.flac", "flac"), ["17"])
    d = mp4(copy(templates, lib / "d.m4a", "m4a"), ["(8)"])
    labels = read_labels([lib], min_songs=1)
    assert [genres_of(labels, p) for p in (a, b, c, d)] == [("Rock",), ("Jazz",), ("Rock",), ("Jazz",)]
    assert id3v1_names("(17)(8)") == ["Rock", "Jazz"] and id3v1_names("Rock") == ["Rock"]


def test_other_unknown_and_empty_values_are_no_genres(tmp_path, templates):
    lib = tmp_path / "lib"
    id3(copy(templates, lib / "a.mp3", "mp3"), ["Other"])
    id3(copy(templates, lib / "b.mp3", "mp3"), ["(12)", "unknown"])  # 12: ID3v1's "Other"
    vorbis(copy(templates, lib / "c.flac", "flac"), ["  ", "Unknown"])
    keep = [vorbis(copy(templates, lib / f"k{i}.flac", "flac"), ["Jazz", "Other"]) for i in range(2)]
    keep.append(vorbis(copy(templates, lib / "r.flac", "flac"), ["Rock"]))
    labels = read_labels([lib], min_songs=1)
    assert sorted(Path(p).name for p in labels.untagged) == ["a.mp3", "b.mp3", "c.flac"]
    assert genres_of(labels, keep[0]) == ("Jazz",)
    assert labels.ignored == {} and labels.refused == []  # placeholders are no one's genre, not refused ones


def test_joined_values_in_one_field_are_split(tmp_path, templates):
    assert tag_values(["Rock; Pop", "Jazz,Blues", "Soul/R&B"]) == ["Rock", "Pop", "Jazz", "Blues", "Soul/R&B"]


def test_genres_genrify_wrote_are_never_labels(tmp_path, templates):
    lib = tmp_path / "lib"
    ours = copy(templates, lib / "ours.flac", "flac")
    tags.write_genre(ours, ["Jazz"], provenance=Provenance(("Jazz",), "genrify-musicnn", "0.1.0"))
    mixed = copy(templates, lib / "mixed.mp3", "mp3")
    tags.write_genre(mixed, ["Rock"])  # a person's Rock ...
    tags.write_genre(mixed, ["Jazz"], mode="merge", provenance=Provenance(("Jazz",), "genrify-musicnn", "0.1.0"))
    assert tags.read_genre(mixed) == ("Rock", "Jazz")  # ... and genrify's Jazz beside it
    vorbis(copy(templates, lib / "jazz.flac", "flac"), ["Jazz"])
    labels = read_labels([lib], min_songs=1)
    assert genres_of(labels, mixed) == ("Rock",)
    assert str(ours) in labels.untagged and labels.ours == 1
    assert labels.counts() == {"Jazz": 1, "Rock": 1}


def test_spellings_of_one_genre_count_as_one_through_the_genre_map(tmp_path, templates):
    lib = tmp_path / "lib"
    for i, spelling in enumerate(["Hip Hop", "hip-hop", "HIPHOP", "Rap", "Hip-Hop"]):
        vorbis(copy(templates, lib / f"h{i}.flac", "flac"), [spelling])
    for i in range(5):
        vorbis(copy(templates, lib / f"j{i}.flac", "flac"), ["jazz"])
    labels = read_labels([lib])
    assert labels.counts() == {"Hip-Hop": 5, "Jazz": 5}
    # A map of the user's own: aliases and a whitelist.
    mine = GenreMap.from_dict({"genres": {"Urban": ["hip hop", "rap"], "Jazz": []}, "options": {"whitelist": True}})
    vorbis(copy(templates, lib / "x.flac", "flac"), ["Polka"])
    labels = read_labels([lib], genre_map=mine, min_songs=1)
    assert labels.genres == ["Jazz", "Urban"] and labels.ignored == {"Polka": 1}
    # A person's genre the whitelist refuses is still theirs: not a song without a genre to suggest.
    assert [Path(p).name for p in labels.refused] == ["x.flac"] and labels.untagged == []


def test_a_compilations_songs_are_grouped_by_their_own_artists(tmp_path, templates):
    lib = tmp_path / "lib" / "Hits of 1999"
    first = id3(copy(templates, lib / "1.mp3", "mp3"), ["Pop"], artist="Britney Spears", album_artist="Various Artists")
    second = id3(copy(templates, lib / "2.mp3", "mp3"), ["Pop"], artist="Cher", album_artist="VA")
    third = vorbis(copy(templates, lib / "3.flac", "flac"), ["Rock"], artist="Freddie Mercury", albumartist="Queen")
    lone = id3(copy(templates, lib / "4.mp3", "mp3"), ["Rock"], album_artist="Various Artists")
    labels = read_labels([tmp_path / "lib"], min_songs=1)
    group = {s.path: s.group for s in labels.songs}
    assert group[str(first)] == "artist:britney spears" and group[str(second)] == "artist:cher"
    assert group[str(third)] == "artist:queen"  # an album artist that is one artist still groups
    assert group[str(lone)] == f"folder:{lib}"  # no artist of its own: its folder


def test_a_genre_with_too_few_songs_is_left_out_and_reported(tmp_path, templates):
    lib = tmp_path / "lib"
    for i in range(5):
        vorbis(copy(templates, lib / f"r{i}.flac", "flac"), ["Rock"])
        vorbis(copy(templates, lib / f"j{i}.flac", "flac"), ["Jazz"])
    vorbis(copy(templates, lib / "p0.flac", "flac"), ["Polka", "Rock"])
    vorbis(copy(templates, lib / "p1.flac", "flac"), ["Polka"])
    labels = read_labels([lib])
    assert labels.genres == ["Rock", "Jazz"] and labels.dropped == {"Polka": 2}
    assert genres_of(labels, lib / "p0.flac") == ("Rock",)
    assert str(lib / "p1.flac") not in {s.path for s in labels.songs}


def test_artist_groups_album_artist_then_artist_then_folder(tmp_path, templates):
    lib = tmp_path / "lib"
    a = id3(copy(templates, lib / "x" / "a.mp3", "mp3"), ["Rock"], artist="Solo", album_artist="Band")
    b = id3(copy(templates, lib / "x" / "b.mp3", "mp3"), ["Rock"], artist="Band")
    c = vorbis(copy(templates, lib / "y" / "c.flac", "flac"), ["Jazz"], ARTIST="Other Band")
    d = vorbis(copy(templates, lib / "y" / "d.flac", "flac"), ["Jazz"])
    labels = read_labels([lib], min_songs=1)
    group = {Path(s.path).name: s.group for s in labels.songs}
    assert group["a.mp3"] == group["b.mp3"] != group["c.flac"]
    assert group["d.flac"] == f"folder:{d.parent}"
    assert a and b and c


def test_folders_mode_takes_the_top_folder_under_the_root(tmp_path, templates):
    lib = tmp_path / "music"
    for i in range(2):
        copy(templates, lib / "jazz" / "Miles" / f"{i}.flac", "flac")
        copy(templates, lib / "hiphop" / f"{i}.mp3", "mp3")
    id3(copy(templates, lib / "hiphop" / "tagged.mp3", "mp3"), ["Polka"])  # tags do not count here
    copy(templates, lib / "loose.flac", "flac")
    labels = read_labels([lib], source="folders", min_songs=1)
    assert labels.counts() == {"Hip-Hop": 3, "Jazz": 2}
    assert labels.untagged == [str(lib / "loose.flac")]


def test_folders_named_after_the_songs_artists_are_refused_as_genres(tmp_path, templates):
    # ~/Music laid out Artist/Album/: the top folders are artists, whatever --labels folders says.
    lib = tmp_path / "music"
    for artist in ("Bob Marley", "John Lee Hooker", "JS Bach"):
        for i in range(3):
            vorbis(copy(templates, lib / artist / "Album" / f"{i}.flac", "flac"), [], ARTIST=artist)
    with pytest.raises(LabelError, match=r"the top folders name the songs' artists, not genres: 9 of the 9 songs "
                                         r"lie in a folder named after their artist \(such as 'Bob Marley'\)"):
        read_labels([lib], source="folders", min_songs=1)
    # Genre folders holding the same artists' songs are genre folders.
    genres = tmp_path / "genres"
    for artist, genre in (("Bob Marley", "reggae"), ("JS Bach", "classical")):
        shutil.move(lib / artist, genres / genre / artist)
    assert read_labels([genres], source="folders", min_songs=1).counts() == {"Classical": 3, "Reggae": 3}


def test_no_genre_at_all_is_one_line_naming_folders_mode(tmp_path, templates):
    lib = tmp_path / "lib"
    for i in range(3):
        copy(templates, lib / f"{i}.flac", "flac")
    with pytest.raises(LabelError) as info:
        read_labels([lib])
    message = str(info.value)
    assert "read 3 file(s)" in message and "none has a genre" in message and "--labels folders" in message
    assert "\n" not in message and exit_code(info.value) == 1


def test_one_genre_only_is_a_clear_error(tmp_path, templates):
    lib = tmp_path / "lib"
    for i in range(6):
        vorbis(copy(templates, lib / f"{i}.flac", "flac"), ["Jazz"])
    vorbis(copy(templates, lib / "r.flac", "flac"), ["Rock"])
    with pytest.raises(LabelError, match=r"only one genre to learn: Jazz \(6 songs\).*Rock \(1\)"):
        read_labels([lib])
    # Files whose genres could not be read may hold the genre missing: the error says so.
    (lib / "r.flac").unlink()
    (lib / "x.flac").write_bytes(b"not audio at all" * 40)
    with pytest.raises(LabelError, match=r"only one genre to learn: Jazz.*; 1 file\(s\) could not be read, such as "
                                         r".*x\.flac \("):
        read_labels([lib])


def test_unreadable_files_are_counted_and_the_run_goes_on(tmp_path, templates):
    lib = tmp_path / "lib"
    for i in range(2):
        vorbis(copy(templates, lib / f"j{i}.flac", "flac"), ["Jazz"])
        vorbis(copy(templates, lib / f"r{i}.flac", "flac"), ["Rock"])
    (lib / "broken.mp3").write_bytes(b"\x00not audio" * 50)
    (lib / "gone.flac").symlink_to(lib / "nowhere.flac")
    outside = tmp_path / "elsewhere"
    vorbis(copy(templates, outside / "x.flac", "flac"), ["Jazz"])
    (lib / "linked").symlink_to(outside)  # a link to a folder, not followed without follow_links
    labels = read_labels([lib, tmp_path / "missing"], min_songs=1)
    reasons = dict(labels.unreadable)
    assert str(lib / "broken.mp3") in reasons and str(tmp_path / "missing") in reasons
    # Links are passed over, as classify counts them, never unreadable or dropped in silence.
    assert sorted(Path(p).name for p, _ in labels.passed_over) == ["gone.flac", "linked"]
    assert str(lib / "gone.flac") not in reasons
    assert labels.files_read == 4 and len(labels.songs) == 4
    assert len(read_labels([lib], min_songs=1, follow_links=True).songs) == 5


def test_nothing_to_read_is_a_library_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LibraryError, match="no audio files"):
        read_labels([tmp_path / "empty"])


def test_a_song_without_artist_tags_directly_in_the_folder_given_is_an_artist_of_its_own(tmp_path, templates):
    lib = tmp_path / "lib"
    a = vorbis(copy(templates, lib / "a.flac", "flac"), ["Jazz"])
    b = vorbis(copy(templates, lib / "b.flac", "flac"), ["Rock"])
    labels = read_labels([lib], min_songs=1)
    assert {s.group for s in labels.songs} == {f"song:{a}", f"song:{b}"}
    # Genre folders laid out flat (GTZAN's layout): the genre folder says nothing about the artist either.
    music = tmp_path / "music"
    copy(templates, music / "jazz" / "1.flac", "flac")
    copy(templates, music / "rock" / "Band" / "2.flac", "flac")
    labels = read_labels([music], source="folders", min_songs=1)
    assert sorted(s.group.split(":")[0] for s in labels.songs) == ["folder", "song"]


def test_labels_from_a_databases_values_with_one_genre_only_is_one_line():
    # beets' genres: values, not files; too few genres is the same one-line error as for files.
    from genrify.learn.labels import labels_from_values

    entries = [(f"/m/{i}.flac", ["Rock"], f"artist:a{i}") for i in range(8)]
    with pytest.raises(LabelError, match=r"only one genre to learn: Rock \(8 songs\)"):
        labels_from_values(entries, source="the 8 beets item(s) with a file")
