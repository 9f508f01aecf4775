"""The built-in genre model: the taggers' genre tags and the genre head learned from real music."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tone
from typer.testing import CliRunner

from genrify.cli import app
from genrify.errors import ModelFileError, ParameterError
from genrify.models.builtin import (
    ALIASES,
    EMBEDDING,
    GENRE_TAGS,
    GENRES,
    HEAD_PATH,
    GenreHead,
    combine,
    keep_unlearned_mass,
    load_builtin,
    resolve_genres,
    tag_scores,
)
from genrify.classify.predict import classify
from genrify.models.musicnn import load_tagger

runner = CliRunner()
GTZAN = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


@pytest.fixture(scope="module")
def taggers():
    return {n: load_tagger(n) for n in ("MSD_musicnn", "MTT_musicnn")}


def test_one_vocabulary_with_reggae_and_disco_and_every_gtzan_genre():
    assert {"reggae", "disco"} <= set(GENRES) and len(GENRES) == len(set(GENRES)) == 17
    assert [g for _, g in resolve_genres(GTZAN)] == [
        "blues", "classical", "country", "disco", "hip-hop", "jazz", "metal", "pop", "reggae", "rock"]
    assert resolve_genres(["Rock", "hiphop", "Hip Hop"][:2]) == [("Rock", "rock"), ("hiphop", "hip-hop")]
    assert resolve_genres(["dub"]) == [("dub", "reggae")]
    with pytest.raises(ParameterError, match="knows no genre 'polka'.*rock"):
        resolve_genres(["polka"])
    with pytest.raises(ParameterError, match="twice"):
        resolve_genres(["soul", "rnb"])
    assert all(target in GENRES for target in ALIASES.values())


def test_tag_scores_are_each_taggers_best_tag_averaged(taggers):
    rng = np.random.default_rng(0)
    grams = {n: rng.uniform(0, 1, size=(3, 50)) for n in taggers}
    tags = {n: t.tags for n, t in taggers.items()}
    expected = np.zeros((3, len(GENRE_TAGS)))
    for j, genre in enumerate(GENRE_TAGS):
        for name, names in GENRE_TAGS[genre].items():
            expected[:, j] += grams[name][:, [tags[name].index(t) for t in names]].max(axis=1) / len(GENRE_TAGS[genre])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tag_scores(grams, tags), expected, rtol=1e-6)
    as_torch = tag_scores({n: torch.from_numpy(g).float() for n, g in grams.items()}, tags)
    np.testing.assert_allclose(as_torch.numpy(), expected, rtol=1e-5)


def test_the_network_adds_the_heads_evidence_to_the_tags(builtin, taggers):
    """The torch network computes exactly :func:`combine` of the taggers' outputs (the reference)."""
    patches = torch.from_numpy(np.random.default_rng(1).uniform(0, 3, size=(2, 96, 187)).astype(np.float32))
    runs = {n: t.run(patches.transpose(1, 2).numpy(), features=True) for n, t in taggers.items()}
    head = GenreHead.load()
    expected = combine(tag_scores({n: r["taggram"] for n, r in runs.items()}, {n: t.tags for n, t in taggers.items()}),
                       head.evidence(runs[EMBEDDING[0]][EMBEDDING[1]]), head)
    with torch.inference_mode():
        got = torch.softmax(builtin.network(patches), dim=1).numpy()
    want = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-4)  # float32 against float64 (and ONNX Runtime)
    # Without the head, reggae and disco keep an even share: only the head can name them.
    tags_only = load_builtin(head=False)
    with torch.inference_mode():
        p = torch.softmax(tags_only.network(patches), dim=1).numpy()
    assert np.allclose(p[:, GENRES.index("reggae")], p[:, GENRES.index("disco")])


def test_restricting_genres_renormalises_the_same_logits(builtin):
    patches = torch.rand(1, 96, 187) * 3
    few = load_builtin(["jazz", "reggae", "hiphop"])
    with torch.inference_mode():
        full = torch.softmax(builtin.network(patches), dim=1)[0].numpy()
        part = torch.softmax(few.network(patches), dim=1)[0].numpy()
    idx = [GENRES.index(g) for g in ("jazz", "reggae", "hip-hop")]
    np.testing.assert_allclose(part, full[idx] / full[idx].sum(), atol=1e-5)
    assert few.genres == ["jazz", "reggae", "hiphop"]


def test_a_head_moves_the_genres_it_learned_and_leaves_the_others_their_prior():
    dim = 200
    weight = np.zeros((dim, 3))
    weight[0, 0], weight[0, 1] = 1.0, -1.0  # the first input dimension speaks for reggae, against rock
    head = GenreHead(genres=["reggae", "rock", "jazz"], priors=[None, "rock", "jazz"], mean=np.zeros(dim),
                     std=np.ones(dim), weight=weight, bias=np.zeros(3), prior_logit=np.zeros(3),
                     learned=["reggae", "rock"], prior_weight=1.0, cap=2.0, temperature=1.0)
    assert head.problem() is None
    x = np.zeros((2, dim))
    x[0, 0], x[1, 0] = 10.0, -10.0
    evidence = head.evidence(x)
    # Bounded at the cap however far the input goes; jazz, not learned, gets none.
    assert evidence[0, 0] == pytest.approx(2.0 * np.tanh(5.0)) and evidence[0, 1] == pytest.approx(-2.0 * np.tanh(5.0))
    assert np.all(evidence[:, 2] == 0)
    scores = np.full((2, len(GENRE_TAGS)), 1.0 / len(GENRE_TAGS))
    logits = combine(scores, evidence, head)
    assert logits.shape == (2, 3)
    # Jazz keeps its tag prior; reggae (no tags) starts from an even share, moved by the evidence.
    assert np.allclose(logits[:, 2], np.log(1.0 / len(GENRE_TAGS)))
    assert logits[0, 0] > logits[0, 2] > logits[0, 1] and logits[1, 1] > logits[1, 2] > logits[1, 0]
    # Without a head, the tags alone answer over the 17 genres.
    assert combine(scores, None, None).shape == (2, len(GENRES))


def test_unlearned_genres_keep_their_priors_mass_but_for_the_mobility():
    rng = np.random.default_rng(3)
    prior = rng.normal(size=(4, 6))
    evidence = np.zeros((4, 6))
    evidence[:, :3] = rng.normal(scale=3.0, size=(4, 3))  # three learned genres, three not
    unlearned = np.array([False, False, False, True, True, True])

    def softmax(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    q, p = softmax(prior), softmax(prior + evidence)
    for mobility in (0.0, 0.25, 1.0):
        out = softmax(keep_unlearned_mass(prior + evidence, prior, unlearned, mobility))
        want = q[:, 3:].sum(axis=1) + mobility * (p[:, 3:].sum(axis=1) - q[:, 3:].sum(axis=1))
        np.testing.assert_allclose(out[:, 3:].sum(axis=1), want, atol=1e-12)
        # Each side shares its mass as prior and evidence together say.
        np.testing.assert_allclose(out[:, 3:] / out[:, 3:].sum(axis=1, keepdims=True),
                                   p[:, 3:] / p[:, 3:].sum(axis=1, keepdims=True), atol=1e-12)
        np.testing.assert_allclose(out[:, :3] / out[:, :3].sum(axis=1, keepdims=True),
                                   p[:, :3] / p[:, :3].sum(axis=1, keepdims=True), atol=1e-12)
        as_torch = keep_unlearned_mass(torch.from_numpy(prior + evidence), torch.from_numpy(prior),
                                       torch.from_numpy(unlearned), mobility)
        np.testing.assert_allclose(softmax(as_torch.numpy()), out, atol=1e-9)
    np.testing.assert_array_equal(keep_unlearned_mass(prior + evidence, prior, np.zeros(6, bool), 0.0), prior + evidence)
    # A mask per row answers each row as its own mask does.
    rows = np.repeat(unlearned[None, :], 4, axis=0)
    rows[1] = [False, True, False, True, True, False]
    got = keep_unlearned_mass(prior + evidence, prior, rows, 0.0)
    np.testing.assert_allclose(got[1], keep_unlearned_mass((prior + evidence)[1:2], prior[1:2], rows[1], 0.0)[0])


def test_the_packaged_head_is_the_learners_and_says_what_it_learned_from():
    head = GenreHead.load()
    assert head.genres == list(GENRES) and sorted(head.learned) == sorted(g if g != "hiphop" else "hip-hop" for g in GTZAN)
    assert 0.05 <= head.temperature <= 20 and 0 < head.threshold < 1 and 0 <= head.margin < 1
    assert "GTZAN" in head.info["trained_on"] and "train_builtin_head.py" in head.info["made_by"]
    report = head.info["report"]
    assert report["songs"] == 294 and 0 < report["cv_top1"] <= 1 and report["settings"]["margin"] == head.margin
    # Its evidence may move only part of what the tags give the seven genres GTZAN lacks.
    assert report["settings"]["mobility"] == head.mobility < 1 and report["held_out"]["kept"] > 0


def test_a_damaged_head_file_is_refused(tmp_path):
    head = GenreHead.load()
    path = head.save(tmp_path / "head.safetensors")
    assert GenreHead.load(path).genres == head.genres
    head.bias = head.bias[:-1]  # no longer fits its genres
    head.save(tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError, match="inconsistent"):
        GenreHead.load(tmp_path / "bad.safetensors")
    (tmp_path / "text.safetensors").write_text("not a head")
    with pytest.raises(ModelFileError, match="not a readable genre head"):
        GenreHead.load(tmp_path / "text.safetensors")
    with pytest.raises(ModelFileError, match="missing"):
        GenreHead.load(tmp_path / "absent.safetensors")
    assert HEAD_PATH.is_file()
    # load_builtin takes a head file's path as it takes the head (what genrify learn writes)
    assert load_builtin(head=path).genres == load_builtin(head=head.load(path)).genres == list(head.genres)
    with pytest.raises(ModelFileError, match="inconsistent"):
        load_builtin(head=str(tmp_path / "bad.safetensors"))


def test_a_clip_shorter_than_one_patch_is_repeated_answered_and_flagged(builtin, tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(8.0, sr=22050), 22050)
    p = classify(song, builtin)
    assert p.genre in GENRES and p.probabilities.sum() == pytest.approx(1.0) and p.segments == 2 and not p.short
    short = tmp_path / "short.wav"
    sf.write(short, tone(1.0, sr=22050), 22050)
    q = classify(short, builtin)
    assert q.segments == 1 and q.short and q.low_confidence


def test_cli_without_a_model_answers_among_gtzans_ten(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(4.0, sr=22050), 22050)
    result = runner.invoke(app, ["classify", str(song), "--no-cache", "--format", "json", "--genres", ",".join(GTZAN)])
    assert result.exit_code == 0, result.output
    (obj,) = json.loads(result.stdout[result.stdout.index("[") :])
    assert set(obj["probabilities"]) == set(GTZAN) and isinstance(obj["low_confidence"], bool)
    bad = runner.invoke(app, ["classify", str(song), "--no-cache", "--genres", "polka"])
    assert bad.exit_code == 2 and "--genres: the built-in model knows no genre 'polka'" in bad.output  # a usage error


def test_tags_command_shows_both_taggers_and_takes_short_clips(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, tone(4.0, sr=22050), 22050)
    short = tmp_path / "short.wav"
    sf.write(short, tone(1.5, sr=22050), 22050)  # shorter than one 2.98 s patch: refused before
    result = runner.invoke(app, ["tags", str(song), str(short), "--format", "json"])
    assert result.exit_code == 0, result.output
    whole, brief = json.loads(result.stdout[result.stdout.index("[") :])
    assert len(whole["MSD_musicnn"]) == 50 and len(whole["MTT_musicnn"]) == 50 and not whole["short"]
    assert "rock" in whole["MSD_musicnn"] and "classical" in whole["MTT_musicnn"]
    assert brief["short"] and brief["segments"] == 1 and len(brief["MSD_musicnn"]) == 50


def test_the_shipped_examples_and_their_answers(builtin):
    """Four real CC BY / public-domain excerpts of 15-20 s, attributed, answered sensibly."""
    files = sorted(EXAMPLES.glob("*.ogg"))
    assert [f.name for f in files] == ["hungarian-dance-5.ogg", "lets-go-fishin.ogg", "sugar-plum-fairy.ogg", "vibe-ace.ogg"]
    readme = (EXAMPLES / "README.md").read_text()
    for needle in ("Kevin MacLeod", "Karissa Hobbs", "Brahms", "CC BY 3.0", "Public Domain"):
        assert needle in readme
    answers = {}
    for f in files:
        assert 15 <= sf.info(f).duration <= 20
        answers[f.stem] = [g for g, _ in classify(f, builtin).top(3)]
    assert answers["hungarian-dance-5"][0] == "classical"
    assert "classical" in answers["sugar-plum-fairy"][:2]
    assert answers["vibe-ace"][0] == "jazz"
    assert {"pop", "folk", "country"} & set(answers["lets-go-fishin"])


def test_a_song_of_none_of_the_genres_asked_for_is_flagged_not_renamed(builtin):
    """Brahms asked "rock or metal?" gets one of them at a high share of the two, but the model's
    belief over all its genres lies elsewhere: the answer is flagged unsure, ``other genre``."""
    from genrify.classify.outputs import to_csv
    from genrify.classify.predict import Prediction

    brahms = EXAMPLES / "hungarian-dance-5.ogg"
    full = classify(brahms, builtin)
    wrong = classify(brahms, load_builtin(["rock", "metal"]))
    columns = [GENRES.index("rock"), GENRES.index("metal")]
    assert wrong.genre in ("rock", "metal") and wrong.confidence > 0.5  # the share among the two alone
    assert wrong.asked_share == pytest.approx(np.mean(full.segment_probabilities[:, columns].sum(axis=1)), abs=1e-5)
    assert wrong.asked_share < 0.5 and wrong.other_genre and wrong.low_confidence
    assert wrong.unsure_reason == "other genre"
    right = classify(brahms, load_builtin(["classical", "jazz"]))
    assert right.genre == "classical" and right.asked_share > 0.5 and right.unsure_reason is None
    assert full.asked_share is None and "other" not in str(full.unsure_reason)
    # The torch network (a GPU's route; here on the CPU) gives the same share.
    from genrify.audio.segments import song_segments

    model = load_builtin(["rock", "metal"])
    song = song_segments(str(brahms), model.params, model.chunk_frames)
    from genrify.classify.predict import predict_segments

    model.network.to("cpu")
    on_torch = predict_segments(song, model, device=torch.device("cpu"))
    assert on_torch.asked_share == pytest.approx(predict_segments(song, model).asked_share, abs=1e-4)
    assert on_torch.unsure_reason == "other genre"
    # The share travels with the answer: JSON (and the results cache), CSV.
    again = Prediction.from_dict(json.loads(json.dumps(wrong.to_dict())))
    assert again.asked_share == pytest.approx(wrong.asked_share, abs=1e-6) and again.unsure_reason == "other genre"
    header, row = to_csv([wrong]).splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert float(cells["asked_share"]) == pytest.approx(wrong.asked_share, abs=1e-6)
    assert cells["unsure_reason"] == "other genre"


def _learned_head(genres: list[str], **info) -> GenreHead:
    """A head as `genrify learn` writes one (its weights zero: the tags answer), of these genres."""
    dim, k = 200, len(genres)
    return GenreHead(genres=genres, priors=[g if g in GENRE_TAGS else None for g in genres], mean=np.zeros(dim),
                     std=np.ones(dim), weight=np.zeros((dim, k)), bias=np.zeros(k), prior_logit=np.zeros(k),
                     learned=list(genres), prior_weight=1.0, cap=2.0, temperature=1.0,
                     info={"learned_from": {"labels": "tags"}, **info})


def test_a_learned_head_flags_a_song_of_a_genre_the_library_never_taught():
    """A library that taught only Metal and Hip-Hop: Brahms gets one of the two, but the packaged
    head's belief in them is small, so the answer is flagged ``other genre``, as with ``--genres``."""
    brahms = EXAMPLES / "hungarian-dance-5.ogg"
    never = load_builtin(head=_learned_head(["Metal", "Hip Hop"]))
    assert never.reference is not None and never.restricted
    wrong = classify(brahms, never)
    packaged = classify(brahms, load_builtin(["metal", "hip-hop"]))
    assert wrong.genre in ("Metal", "Hip Hop") and wrong.unsure_reason == "other genre"
    assert wrong.asked_share == pytest.approx(packaged.asked_share, abs=1e-5)
    # The torch network (a GPU's route; here on the CPU) gives the same share.
    from genrify.audio.segments import song_segments
    from genrify.classify.predict import predict_segments

    song = song_segments(str(brahms), never.params, never.chunk_frames)
    never.network.to("cpu")
    on_torch = predict_segments(song, never, device=torch.device("cpu"))
    assert on_torch.asked_share == pytest.approx(wrong.asked_share, abs=1e-4) and on_torch.other_genre
    taught = classify(brahms, load_builtin(head=_learned_head(["Classical", "Jazz"])))
    assert taught.genre == "Classical" and taught.asked_share > 0.5 and taught.unsure_reason is None
    # What a genre means is the head's own record (its genre map's), before its name.
    mine = load_builtin(head=_learned_head(["Klassik", "Jazz"], builtin_genres={"Klassik": "classical"}))
    assert mine.reference is not None and not classify(brahms, mine).other_genre
    # A genre the packaged head does not know ("Shoegaze"), or every genre it knows: no share, no flag.
    assert load_builtin(head=_learned_head(["Shoegaze", "Jazz"])).reference is None
    assert load_builtin(head=_learned_head(list(GENRES))).reference is None
    assert load_builtin().reference is None  # the packaged head itself


def test_a_runs_summary_counts_answers_of_other_genres_apart_and_expects_nothing_of_them(tmp_path):
    from genrify.classify.modelref import ModelRef
    from genrify.classify.service import classify_library
    from genrify.classify.tagging import TagPlan
    from genrify.collection.tagpolicy import TagPolicy
    from genrify.core.runner import LocalRunner

    from genrify.classify.tagging import FileSink, TagListener

    path = _learned_head(["Metal", "Hip Hop"]).save(tmp_path / "never.safetensors")
    tagger = TagListener(TagPolicy(), FileSink(), model="never", dry_run=True)  # left alone: no file is read
    run = classify_library([EXAMPLES], ModelRef.file(path), runner=LocalRunner(1), listeners=[tagger])
    other = [p for p in run.predictions if p.other_genre]
    assert f"({len(other)} of other genres)" in tagger.report.line
    assert other and run.summary.other_genre == len(other)  # Brahms at least is none of the two
    assert sum(run.summary.genres.values()) == len(run.predictions) - len(other)
    assert f" · {len(other)} of other genres" in run.summary.line
    kept = [p.confidence for p in run.predictions if not p.other_genre]
    assert run.summary.expected_accuracy == (pytest.approx(np.mean(kept)) if kept else None)
    # Written anyway (--tag-unsure), its chance of being right is its share among the two times
    # the share of belief those two hold.
    flagged = other[0]
    plan = TagPlan(flagged, tuple(flagged.top(2)), True, flagged.confidence, TagPolicy(skip_unsure=False), "m")
    assert plan.chance_right == pytest.approx(flagged.confidence * flagged.asked_share)


def test_the_share_from_a_songs_cached_embedding_is_the_share_classify_gives():
    # learn --suggest judges songs from their embeddings, classify from their audio: the same share.
    from genrify.learn.embedcache import embed_songs
    from genrify.learn.learner import other_genre_shares

    brahms = EXAMPLES / "hungarian-dance-5.ogg"
    head = _learned_head(["Metal", "Hip Hop"])
    (embedding,) = embed_songs([str(brahms)], jobs=1)
    (share,) = other_genre_shares(head, [embedding])
    assert share == pytest.approx(classify(brahms, load_builtin(head=head)).asked_share, abs=1e-4)
    assert other_genre_shares(_learned_head(["Shoegaze", "Jazz"]), [embedding]) is None


def test_answers_cached_before_the_other_genre_flag_are_not_reused_for_a_head_that_flags(tmp_path):
    from genrify.classify.modelref import ModelRef
    from genrify.classify.results import file_digest

    flags = _learned_head(["Metal", "Hip Hop"]).save(tmp_path / "flags.safetensors")
    none = _learned_head(["Shoegaze", "Jazz"]).save(tmp_path / "none.safetensors")
    assert ModelRef.file(flags).cache_key == file_digest(flags) + ":other-genre"
    assert ModelRef.file(none).cache_key == file_digest(none)  # the key earlier versions wrote


def test_songs_of_none_of_the_genres_asked_for_are_not_sorted_into_their_folders(tmp_path):
    from genrify.classify.placing import confident

    sorted_to = tmp_path / "sorted"
    result = runner.invoke(app, ["classify", str(EXAMPLES), "--no-cache", "--genres", "rock,metal", "--organize",
                                 str(sorted_to), "--dry-run", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "would place 0 files" in said and "4 of other genres not placed" in said
    answer = classify(EXAMPLES / "hungarian-dance-5.ogg", load_builtin(["rock", "metal"]))
    assert answer.other_genre and confident([answer]) == []
    assert confident([classify(EXAMPLES / "hungarian-dance-5.ogg", load_builtin(["classical", "jazz"]))])


def test_tags_on_onnx_runtime_equal_pytorchs(taggers, tmp_path):
    from genrify.models import onnx
    from genrify.classify.musicnn_tags import tag_song
    from genrify.models.taggers import MUSICNN_PARAMS, PATCH_FRAMES, PRETRAINED_DIR
    from genrify.audio.segments import song_segments

    assert onnx.GRAPHS_DIR == PRETRAINED_DIR and all(onnx.available(n) for n in taggers)
    song = tmp_path / "song.wav"
    sf.write(song, tone(12.0, sr=22050), 22050)
    fast, _ = tag_song(list(taggers.values()), song)
    batch = song_segments(song, MUSICNN_PARAMS, PATCH_FRAMES).segments.transpose(0, 2, 1)
    for name, tagger in taggers.items():
        reference = tagger.run(batch, features=False)["taggram"]
        np.testing.assert_allclose(fast[name].taggram, reference, atol=1e-5)
