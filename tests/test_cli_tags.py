"""`genrify classify --write-tags` with tag modes, provenance, genre maps, albums and --since."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from helpers import song, write_wav_with_info_genre, write_with_av
from typer.testing import CliRunner

from genrify.cli import app
from genrify.collection.genremap import GenreMap
from genrify.collection.tags import read_genre, read_provenance, write_genre

runner = CliRunner()


def classify(*args: str | Path):
    return runner.invoke(app, ["classify", *map(str, args), "--no-cache"])


@pytest.fixture
def album(small_store, tmp_path) -> list[Path]:
    """Six metal songs and one classical song in one folder (one album by folder)."""
    folder = tmp_path / "album"
    folder.mkdir()
    songs = sorted((small_store.parent / "music" / "metal").iterdir())
    songs.append(sorted((small_store.parent / "music" / "classical").iterdir())[0])
    for track in songs:
        shutil.copyfile(track, folder / track.name)
    return sorted(folder.iterdir())


def tag(folder: Path, model_file: Path, *extra: str):
    result = classify(folder, "--model", model_file, "--write-tags", "--tag-unsure", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_keep_leaves_a_persons_genre_merge_puts_it_first_replace_replaces_it(album, model_file):
    person = album[0]
    write_genre(person, ["Doom Jazz"])  # no provenance: a person's genre
    result = tag(album[0].parent, model_file)
    assert "kept 1 (set by a person)" in result.output and f"written {len(album) - 1}," in result.output
    assert read_genre(person) == ("Doom Jazz",) and read_provenance(person) is None
    ours = {p: read_genre(p) for p in album[1:]}
    assert all(len(g) == 1 for g in ours.values()) and all(read_provenance(p).genres == ours[p] for p in album[1:])

    merged = tag(album[0].parent, model_file, "--tag-mode", "merge")
    genres = read_genre(person)
    assert genres[0] == "Doom Jazz" and len(genres) == 2 and read_provenance(person).genres == genres[1:]
    assert f"written 1, unchanged {len(album) - 1}" in merged.output
    # Again: nothing piles up, nothing is rewritten.
    mtime = person.stat().st_mtime_ns
    again = tag(album[0].parent, model_file, "--tag-mode", "merge")
    assert read_genre(person) == genres and person.stat().st_mtime_ns == mtime
    assert f"written 0, unchanged {len(album)}" in again.output

    tag(album[0].parent, model_file, "--tag-mode", "replace")
    assert read_genre(person) == genres[1:]


def test_a_later_run_updates_only_the_genres_genrify_wrote(album, model_file):
    tag(album[0].parent, model_file)
    edited = album[1]
    write_genre(edited, ["Stoner Rock"])  # a person edits genrify's genre: it is theirs now
    result = tag(album[0].parent, model_file, "--tag-genres", "2", "--min-probability", "0")
    assert read_genre(edited) == ("Stoner Rock",) and "kept 1" in result.output
    assert all(len(read_genre(p)) == 2 for p in album if p != edited)


def test_the_dry_run_shows_before_and_after_and_changes_nothing(album, model_file):
    write_genre(album[0], ["Doom Jazz"])
    result = tag(album[0].parent, model_file, "--tag-mode", "merge", "--dry-run")
    assert "would tag" in result.output and "Doom Jazz -> Doom Jazz; " in result.output.replace("\n", " ")
    assert result.output.count("(none) ->") == len(album) - 1
    assert read_genre(album[0]) == ("Doom Jazz",) and all(read_genre(p) == () for p in album[1:])


def test_a_genre_map_spells_whitelists_and_adds_parents(album, model_file, tmp_path):
    mapping = tmp_path / "map.toml"
    mapping.write_text('[genres]\n"Heavy Music" = ["metal"]\n"Orchestral" = ["classical"]\n"Beats" = ["hiphop"]\n'
                       '[parents]\n"Heavy Music" = ["Loud"]\n"Orchestral" = ["Loud"]\n"Beats" = ["Loud"]\n')
    tag(album[0].parent, model_file, "--genre-map", mapping, "--parent-genres")
    assert all(read_genre(p)[1:] == ("Loud",) and read_genre(p)[0] in {"Heavy Music", "Orchestral", "Beats"}
               for p in album)
    only = tmp_path / "only.toml"
    only.write_text('[options]\nwhitelist = true\n[genres]\n"Polka" = []\n')
    fresh = [p for p in album if p != album[0]]
    for p in fresh:
        write_genre(p, ["x"])  # a person's genre ...
    result = tag(album[0].parent, model_file, "--genre-map", only, "--tag-mode", "replace")
    # ... stays: no genre the model answers passes the whitelist, so no file is touched.
    said = " ".join(result.output.split())
    assert f"{len(album)} unsure or below confidence" in said
    assert f"({len(album)} outside the genre map's whitelist)" in said  # said apart: not all are unsure
    assert all(read_genre(p) == ("x",) for p in fresh)


def test_a_bad_genre_map_is_one_line_naming_the_file(album, model_file, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[genres\n")
    result = classify(album[0].parent, "--model", model_file, "--write-tags", "--genre-map", bad)
    assert result.exit_code == 1 and str(bad) in result.output
    assert all(read_genre(p) == () for p in album)


def test_album_mode_gives_the_tracks_of_a_folder_one_genre(album, model_file):
    tag(album[0].parent, model_file)
    assert len({read_genre(p) for p in album}) > 1  # track by track, the answers differ
    result = tag(album[0].parent, model_file, "--album-mode")
    assert " · 1 album · " in result.output.replace("\n", " ")
    genres = {read_genre(p) for p in album}
    assert len(genres) == 1 and len(next(iter(genres))) == 1


def test_id3v23_joins_genres_with_a_slash(model_file, tmp_path):
    from mutagen.id3 import ID3

    folder = tmp_path / "mp3s"
    folder.mkdir()
    for i in range(2):
        write_with_av(folder / f"song{i}.mp3", song(4.0, index=i), 22050)
    tag(folder, model_file, "--id3v23", "--tag-genres", "2", "--min-probability", "0")
    for path in folder.iterdir():
        id3 = ID3(path)
        assert id3.version[:2] == (2, 3)
        (value,) = id3["TCON"].text
        assert value.count("/") == 1 and tuple(value.split("/")) == read_genre(path)


def test_since_skips_files_not_modified_since_then(album, model_file):
    later = (datetime.now() + timedelta(days=1)).date().isoformat()
    result = classify(album[0].parent, "--model", model_file, "--since", later)
    assert result.exit_code == 0, result.output
    assert f"0 classified (0 from cache), 0 failed, {len(album)} not modified since then skipped" in result.output
    earlier = (datetime.now() - timedelta(days=1)).date().isoformat()
    result = classify(album[0].parent, "--model", model_file, "--since", earlier)
    assert f"{len(album)} classified" in result.output and "skipped" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--write-tags", "--tag-mode", "overwrite"], "--tag-mode: unknown mode 'overwrite'"),
    (["--write-tags", "--track-genre-above", "0.5"], "--track-genre-above goes with --album-mode"),
    (["--write-tags", "--album-mode", "--track-genre-above", "0.5"], "needs --tag-genres 2 or more"),
    (["--write-tags", "--min-probability", "2"], "--min-probability must be between 0 and 1"),
    (["--since", "last week"], "--since 'last week': not a date"),
    (["--album-mode", "--tag-mode", "merge"], "--tag-mode, --album-mode: only with --write-tags"),
])
def test_bad_tag_options_are_usage_errors(album, model_file, args, message):
    result = classify(album[0].parent, "--model", model_file, *args)
    assert result.exit_code == 2 and message in result.output


def test_the_default_map_spells_every_genre_the_models_answer():
    from genrify.audio.synth import GENRES
    from genrify.classify.modelref import ModelRef

    names = GenreMap.default()
    assert names.name("hiphop") == names.name("hip-hop") == "Hip-Hop"
    assert all(g in names for g in [*ModelRef.builtin().genres, *GENRES])  # listed, not only title-cased


def test_a_second_run_reads_every_answer_from_the_cache_and_rewrites_nothing(album, model_file, tmp_path):
    cache = tmp_path / "cache.sqlite"

    def run():
        result = runner.invoke(app, ["classify", str(album[0].parent), "--model", str(model_file), "--write-tags",
                                     "--tag-unsure", "--cache-file", str(cache)])
        assert result.exit_code == 0, result.output
        return result.output

    first = run()
    assert "(0 from cache)" in first and f"written {len(album)}," in first
    mtimes = [p.stat().st_mtime_ns for p in album]
    # The tagged files changed on disk, but their answers were stored again under the new times.
    second = run()
    assert f"({len(album)} from cache)" in second and f"written 0, unchanged {len(album)}," in second
    assert [p.stat().st_mtime_ns for p in album] == mtimes


def test_since_with_album_mode_takes_every_track_of_a_changed_folder(album, model_file, tmp_path, monkeypatch):
    from genrify.classify import service
    from genrify.classify.modelref import ModelRef
    from genrify.classify.service import classify_library
    from genrify.core.runner import LocalRunner

    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(album[0], other / "x.wav")
    changed = str(album[0])
    # Only one file changed since then (a file's ctime cannot be set back, so this is simulated).
    monkeypatch.setattr(service, "_modified_since", lambda path, since: path == changed)
    paths = [album[0].parent, other]
    one = classify_library(paths, ModelRef.file(model_file), runner=LocalRunner(1), since=0.0)
    assert [p.path for p in one.predictions] == [changed] and one.summary.skipped == len(album)
    whole = classify_library(paths, ModelRef.file(model_file), runner=LocalRunner(1), since=0.0,
                             since_whole_folders=True)
    assert sorted(p.path for p in whole.predictions) == sorted(map(str, album)) and whole.summary.skipped == 1


def test_id3v23_keeps_the_v24_only_frames_a_person_set(model_file, tmp_path):
    import mutagen
    from mutagen.id3 import ID3, TDRL, TMOO, TPRO, TSOA, TSOP, TSST

    folder = tmp_path / "mp3s"
    folder.mkdir()
    path = folder / "song.mp3"
    write_with_av(path, song(4.0), 22050)
    frames = [TSOP(encoding=3, text=["Beatles, The"]), TSOA(encoding=3, text=["Abbey Road"]),
              TMOO(encoding=3, text=["Mëlancholy"]), TDRL(encoding=3, text=["2019-09-27"]),
              TSST(encoding=3, text=["Side One"]), TPRO(encoding=3, text=["2019 Apple Corps"])]
    f = mutagen.File(path)
    for frame in frames:
        f.tags.add(frame)
    f.save(v2_version=4)
    tag(folder, model_file, "--id3v23")
    raw = ID3(path, translate=False)  # the frames exactly as stored
    assert raw.version[:2] == (2, 3) and read_genre(path)
    read_back = {key: raw[key].text for key in ("TSOP", "TSOA", "TXXX:mood", "TXXX:RELEASETIME", "TSST",
                                                "TXXX:PRODUCEDNOTICE")}
    assert read_back == {"TSOP": ["Beatles, The"], "TSOA": ["Abbey Road"], "TXXX:mood": ["Mëlancholy"],
                         "TXXX:RELEASETIME": ["2019-09-27"], "TSST": ["Side One"],
                         "TXXX:PRODUCEDNOTICE": ["2019 Apple Corps"]}


def test_a_wavs_riff_info_genre_is_a_persons_genre(model_file, tmp_path):
    import soundfile as sf

    folder = tmp_path / "wavs"
    folder.mkdir()
    person = write_wav_with_info_genre(folder / "polka.wav", song(4.0), 22050, "Polka")
    plain = folder / "plain.wav"
    sf.write(plain, song(4.0, index=1), 22050)
    kept = tag(folder, model_file)
    assert "kept 1 (set by a person)" in kept.output and "written 1," in kept.output
    assert read_genre(person) == ("Polka",) and read_genre(plain)
    replaced = tag(folder, model_file, "--tag-mode", "replace")
    assert "RIFF INFO genre 'Polka' stays" in " ".join(replaced.output.split())
    assert read_genre(person) != ("Polka",)
    with sf.SoundFile(person) as f:
        assert f.genre == "Polka"


def _wma(path: Path, seconds: float = 4.0, sr: int = 44100) -> Path:
    """A Windows Media Audio file (ASF): a format genrify classifies but writes no genre tag into."""
    import av

    try:
        container = av.open(str(path), "w", format="asf")
        stream = container.add_stream("wmav2", rate=sr)
    except Exception as exc:  # noqa: BLE001 - an ffmpeg build without the encoder
        pytest.skip(f"no wmav2 encoder ({exc})")
    with container:
        stream.layout, stream.bit_rate = "mono", 64000
        t = np.arange(int(seconds * sr)) / sr
        tone_ = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
        for start in range(0, tone_.size, 2048):
            frame = av.AudioFrame.from_ndarray(tone_[None, start : start + 2048].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_files_in_formats_without_genre_tags_are_counted_apart_not_as_failures(model_file, tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    _wma(folder / "a.wma")
    _wma(folder / "b.wma")
    result = runner.invoke(app, ["classify", str(folder), "--model", str(model_file), "--write-tags", "--tag-unsure",
                                 "--no-cache", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "0 failed, 2 in formats without genre tags" in said
    assert "2 file(s) in formats without genre tags genrify writes left as they are (wma 2; -v lists them)" in said
    assert "tag not written" not in said
    verbose = runner.invoke(app, ["classify", str(folder), "--model", str(model_file), "--write-tags", "--tag-unsure",
                                  "--no-cache", "--jobs", "1", "-v"])
    assert " ".join(verbose.output.split()).count("no genre tag ") == 2
