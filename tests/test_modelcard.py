"""Model cards: every kind of model says what it is, its genres, what it learned from, its figures
(read from what it carries, never written down elsewhere) and its licence."""

from __future__ import annotations

import copy

import pytest
from helpers import untrained_model

from genrify.models.builtin import HEAD_PATH, GenreHead
from genrify.models.modelcard import ModelCard, model_card


@pytest.fixture(scope="module")
def head() -> GenreHead:
    return GenreHead.load()


def test_the_built_in_card_says_what_it_is_from_its_heads_report(head):
    card = model_card(None)
    report = head.info["report"]
    assert card.kind == "built-in" and card.genres == list(head.genres)
    assert card.what.startswith("the pretrained musicnn taggers (MSD_musicnn, MTT_musicnn) and a genre head learned from "
                                f"{head.info['songs']} GTZAN excerpts")
    figures = dict(card.figures)
    assert figures["cross-validated top-1"].startswith(f"{100 * report['cv_top1']:.0f}% of {report['songs']} excerpts")
    assert figures["cross-validated macro recall"].startswith(f"{100 * report['cv_macro_recall']:.0f}%")
    assert card.headline == f"{100 * report['cv_top1']:.0f}% top-1, cross-validated"
    assert "ISC" in card.licence and "GTZAN" in card.licence and "NOTICE" in card.licence
    assert "GTZAN" in card.learned_from
    # The genres its head never heard are named as such.
    unheard = [g for g in head.genres if g not in report["learned"]]
    assert unheard and any(all(g in n for g in unheard) for n in card.notes)
    text = "\n".join(card.lines())
    assert "unknown" not in text and "not recorded" not in text
    assert model_card(HEAD_PATH).figures == card.figures  # the packaged head's file: the same card


def test_figures_follow_the_report_not_a_copy_of_it(head):
    meta = {"genres": list(head.genres), "architecture": "genrify-musicnn", "head": True,
            "info": copy.deepcopy(head.info)}
    meta["info"]["report"]["cv_top1"] = 0.5
    assert dict(model_card(meta).figures)["cross-validated top-1"].startswith("50%")


def test_a_learned_heads_card_names_its_library_and_cross_validated_figures(head):
    info = copy.deepcopy(head.info)
    info.pop("trained_on")
    info["learned_from"] = {"labels": "folders", "inputs": ["/home/me/Music"], "songs": 120, "min_songs": 5,
                            "dropped": {"polka": 2}}
    info["report"].update(songs=120, artists=40)
    card = model_card({"genres": ["rock", "jazz"], "architecture": "genrify-musicnn", "head": True, "info": info},
                      name="mine.safetensors")
    assert card.kind == "learned" and card.name == "mine.safetensors"
    assert card.learned_from == "120 songs by 40 artists of your library, by their genre folders (Music)"
    assert "genrify learn" in card.what and "cross-validated top-1" in dict(card.figures)
    assert any("polka" in n and "fewer than 5" in n for n in card.notes)
    # Songs with no artist tag, lying loose, each count as an artist: the card says how many.
    info["learned_from"]["artists_from"] = {"tags": 80, "folders": 0, "none": 30}
    card = model_card({"genres": ["rock", "jazz"], "architecture": "genrify-musicnn", "head": True, "info": info})
    assert card.learned_from.endswith("(Music); 30 songs with no artist, each counted as an artist")


def test_a_card_says_when_no_answer_was_flagged_unsure(head):
    from genrify.learn.learner import LearnReport

    info = copy.deepcopy(head.info)
    info["report"]["unsure"].update(flagged=0.0, flagged_top1=0.0, kept_top1=0.92)
    figures = dict(model_card({"genres": list(head.genres), "architecture": "genrify-musicnn", "head": True,
                               "info": info}).figures)
    assert figures["flagged unsure"] == "none of the answers (right 92% of the time)"

    def unsure_line() -> str:
        fields = {k: v for k, v in info["report"].items() if k in LearnReport.__dataclass_fields__}
        return next(x for x in LearnReport(**fields).lines() if x.startswith("unsure:"))

    # A rule that flagged none of the cross-validated answers, and no rule at all: neither says "right 0%".
    u = info["report"]["unsure"]
    assert unsure_line() == (f"unsure: top probability under {u['threshold']:.2f} or top two within {u['margin']:.2f}; "
                             "it flagged none of the cross-validated answers (right 92% of the time)")
    # Only the part of a rule that was chosen is said: never "under 0.00".
    u.update(threshold=0.0, margin=0.11)
    assert unsure_line().startswith("unsure: top two within 0.11; ") and "0.00" not in unsure_line()
    u.update(threshold=0.4, margin=0.0)
    assert unsure_line().startswith("unsure: top probability under 0.40; ") and "0.00" not in unsure_line()
    # Every answer flagged: there are no others to say a share right of.
    u.update(flagged=1.0, flagged_top1=0.32)
    assert unsure_line().endswith("flagged 100% of the cross-validated answers (right 32% of the time)")
    figures = dict(model_card({"genres": list(head.genres), "architecture": "genrify-musicnn", "head": True,
                               "info": info}).figures)
    assert figures["flagged unsure"] == "100% of the answers (right 32% of the time)"
    u.update(threshold=0.0, margin=0.0)
    assert unsure_line().startswith("unsure: no rule (") and unsure_line().endswith("right 92% of the time)")


def test_a_trained_models_card_shows_its_test_figures():
    model = untrained_model(["blues", "metal"])
    bare = model_card(model, name="bare")
    assert bare.kind == "trained" and bare.what.startswith("a seed-cnn network") and bare.figures == []
    assert "figures: none recorded" in bare.lines() and "no training report" in bare.notes[0]
    model.info = {"summary": {"runs": 3, "song_accuracy_mean": 0.712, "song_accuracy_std": 0.031,
                              "chunk_accuracy_mean": 0.6, "chunk_accuracy_std": 0.02},
                  "store": "/srv/private/gtzan-store", "kept_run": 0,
                  "runs": [{"split": {"method": "random", "train": 70, "valid": 15, "test": 15}}]}
    card = model_card(model, name="genres")
    assert card.figures[0] == ("test song accuracy", "71% ± 3% over 3 runs, on songs held out of training")
    assert card.headline == "71% test song accuracy"
    assert card.learned_from == "70 training, 15 validation and 15 test songs; from the feature store 'gtzan-store'"
    assert "/srv/private" not in str(card.to_dict())  # a server shows no paths
    model.info["distributed"] = {"world_size": 2, "backend": "gloo", "chunks_per_step": 64}
    assert model_card(model, name="genres").learned_from.endswith("; under torchrun on 2 processes (64 chunks a step)")


def test_the_card_as_data_and_as_text():
    card = ModelCard("m", "trained", "a model", ["a", "b"], "songs", [("x", "1%")], "ISC", ["careful"], "1%")
    assert card.to_dict() == {"name": "m", "kind": "trained", "what": "a model", "genres": ["a", "b"],
                              "learned_from": "songs", "figures": [{"label": "x", "value": "1%"}],
                              "licence": "ISC", "notes": ["careful"], "headline": "1%"}
    assert card.lines() == ["m: a model", "genres (2): a, b", "learned from: songs", "x: 1%", "licence: ISC",
                            "note: careful"]


def test_a_card_says_which_run_the_file_holds_and_its_own_figure():
    model = untrained_model(["blues", "metal"])
    run = lambda song, chunk: {"split": {"method": "random", "train": 8, "valid": 2, "test": 4},
                               "song_accuracy": song, "chunk_accuracy": chunk}
    # The file holds run 1 (25%); the mean over both runs (38%) is not that model's figure.
    model.info = {"summary": {"runs": 2, "song_accuracy_mean": 0.375, "song_accuracy_std": 0.125,
                              "chunk_accuracy_mean": 0.4, "chunk_accuracy_std": 0.1},
                  "kept_run": 0, "runs": [run(0.25, 0.3), run(0.5, 0.5)]}
    card = model_card(model, name="genres")
    assert card.figures[:3] == [
        ("run this file holds", "run 1 of 2, the one with the lowest validation loss"),
        ("test song accuracy", "25% for the run this file holds; 38% ± 12% mean over 2 runs; on songs held out of training"),
        ("test segment accuracy", "30% for the run this file holds; 40% ± 10% mean over 2 runs; on songs held out of training"),
    ]
    assert card.headline == "25% test song accuracy"  # the held run's, not the mean's 38%
    model.info = {**model.info, "kept_run": 1}
    held = model_card(model).figures
    assert held[0][1].startswith("run 2 of 2") and held[1][1].startswith("50% for the run this file holds")


def test_a_learned_card_says_whether_songs_of_other_genres_are_flagged(head):
    info = copy.deepcopy(head.info)
    info["learned_from"] = {"labels": "tags", "songs": 40}

    def notes(genres: list[str]) -> str:
        return " ".join(model_card({"genres": genres, "architecture": "genrify-musicnn", "head": True,
                                    "info": info}).notes)

    assert "flagged unsure (other genre) where the built-in model finds it of none of them" in notes(["Jazz", "Metal"])
    assert "nothing flags it (the built-in model does not know Shoegaze)" in notes(["Jazz", "Shoegaze"])
    every = notes(["rock", "pop", "electronic", "dance", "hip-hop", "jazz", "blues", "classical", "country", "folk",
                   "metal", "punk", "soul/rnb", "funk", "ambient", "reggae", "disco"])
    assert "other genre" not in every and "nothing flags" not in every  # no genre of the 17 outside it
