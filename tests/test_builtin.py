"""The built-in genre model made from the pretrained taggers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from genrify.cli import app
from genrify.errors import ParameterError
from genrify.models.builtin import ALIASES, GENRE_TAGS, GENRES, load_builtin, resolve_genres
from genrify.models.musicnn import load_tagger
from genrify.predict import classify

from conftest import tone

runner = CliRunner()


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


def test_genre_names_and_aliases():
    assert resolve_genres(["Rock", "hiphop", "disco"]) == [("Rock", "rock"), ("hiphop", "hip-hop"), ("disco", "dance")]
    with pytest.raises(ParameterError, match="knows no genre 'reggae'.*rock"):
        resolve_genres(["reggae"])
    with pytest.raises(ParameterError, match="twice"):
        resolve_genres(["soul", "rnb"])
    assert all(target in GENRE_TAGS for target in ALIASES.values())


def test_scores_are_the_taggers_tags_combined(builtin):
    """Per patch: each tagger's largest tag probability per genre, averaged over the taggers that know it."""
    rng = np.random.default_rng(0)
    patches = torch.from_numpy(rng.uniform(0, 3, size=(2, 96, 187)).astype(np.float32))
    with torch.inference_mode():
        probs = torch.exp(builtin.network(patches)).numpy()
    expected = np.zeros((2, len(GENRES)))
    for name in ("MSD_musicnn", "MTT_musicnn"):
        tagger = load_tagger(name)
        taggram = tagger.run(patches.transpose(1, 2).numpy(), features=False)["taggram"]
        for j, genre in enumerate(GENRES):
            tags = GENRE_TAGS[genre].get(name, ())
            if tags:
                expected[:, j] += taggram[:, [tagger.tags.index(t) for t in tags]].max(axis=1) / len(GENRE_TAGS[genre])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_restricting_genres_renormalises_the_same_scores(builtin):
    patches = torch.rand(1, 96, 187) * 3
    few = load_builtin(["jazz", "metal", "hiphop"])
    with torch.inference_mode():
        full = torch.exp(builtin.network(patches))[0].numpy()
        part = torch.exp(few.network(patches))[0].numpy()
    idx = [GENRES.index(g) for g in ("jazz", "metal", "hip-hop")]
    np.testing.assert_allclose(part, full[idx] / full[idx].sum(), atol=1e-5)
    assert few.genres == ["jazz", "metal", "hiphop"]


def test_classify_a_song_with_no_model_and_a_short_clip_is_flagged(builtin, tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(8.0, sr=22050), 22050)
    p = classify(song, builtin)
    assert p.genre in GENRES and p.probabilities.sum() == pytest.approx(1.0) and p.segments == 2
    short = tmp_path / "short.wav"
    sf.write(short, tone(1.0, sr=22050), 22050)  # shorter than one 3 s patch: padded, answered
    assert classify(short, builtin).segments == 1


def test_cli_without_a_model_and_with_genres(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(4.0, sr=22050), 22050)
    result = runner.invoke(app, ["classify", str(song), "--no-cache", "--format", "json", "--genres", "jazz,rock,disco"])
    assert result.exit_code == 0, result.output
    (obj,) = json.loads(result.stdout[result.stdout.index("[") :])
    assert set(obj["probabilities"]) == {"jazz", "rock", "disco"} and isinstance(obj["low_confidence"], bool)
    bad = runner.invoke(app, ["classify", str(song), "--no-cache", "--genres", "reggae"])
    assert bad.exit_code == 1 and "knows no genre 'reggae'" in bad.output


def test_tags_command_shows_both_taggers(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(4.0, sr=22050), 22050)
    result = runner.invoke(app, ["tags", str(song), "--format", "json"])
    assert result.exit_code == 0, result.output
    (obj,) = json.loads(result.stdout[result.stdout.index("[") :])
    assert len(obj["MSD_musicnn"]) == 50 and len(obj["MTT_musicnn"]) == 50
    assert "rock" in obj["MSD_musicnn"] and "classical" in obj["MTT_musicnn"]
