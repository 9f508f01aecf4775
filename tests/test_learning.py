"""The promise that matters: a model trained with the defaults learns genres it can tell apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrify.audio.synth import GENRES, SynthSpec, write_dataset
from genrify.learn.config import TrainConfig
from genrify.learn.training import train
from genrify.store.extract import extract


# Slow: 2 to 6.5 minutes on 2 cores (6.5 on an AMD EPYC), most of the default suite's budget on its
# own; `pytest -m slow` runs it. The default suite's learning checks are the transfer head's
# (tests/test_embeddings.py, `genrify demo` in tests/test_cli_train.py).
@pytest.mark.slow
def test_seed_cnn_learns_ten_synthetic_genres(tmp_path: Path):
    # 10 genres x 30 songs of 30 s, as `genrify synth --genres 10 --per-genre 30` makes them.
    write_dataset(tmp_path / "music", SynthSpec(genres=GENRES, per_genre=30, seconds=30.0, seed=1, fmt="wav"), jobs=2)
    extract(tmp_path / "music", tmp_path / "store", jobs=2)
    result = train(tmp_path / "store", TrainConfig())  # the defaults: seed-cnn, the seed's optimiser
    run = result.runs[0]
    assert len(run.split.test) == 40  # 4 songs of each genre, none of them heard in training
    assert run.evaluation.song_accuracy >= 0.9, run.evaluation.summary()
    # chance is 10 %: the chunk level, without the song's other chunks to help, is well above it too
    assert run.evaluation.chunk_accuracy >= 0.7


def test_a_head_whose_genres_the_built_in_model_does_not_all_know_says_nothing_flags_other_genres():
    import numpy as np

    from genrify.learn.learning import other_genre_notes
    from genrify.models.builtin import GenreHead

    dim = 200
    head = GenreHead(genres=["Shoegaze", "Jazz"], priors=[None, "jazz"], mean=np.zeros(dim), std=np.ones(dim),
                     weight=np.zeros((dim, 2)), bias=np.zeros(2), prior_logit=np.zeros(2), learned=["Shoegaze", "Jazz"],
                     prior_weight=1.0, cap=2.0, temperature=1.0, info={"learned_from": {}})
    (note,) = other_genre_notes(head, None, [], [], others=True)  # type: ignore[arg-type]
    assert note == ("it answers only in its 2 genres, and nothing flags a song of another (left out, or one nobody "
                    "tagged) since the built-in model does not know Shoegaze: such a song gets one of its genres; try "
                    "a dry run first")
    assert other_genre_notes(head, None, [], [], others=False) == []  # type: ignore[arg-type]
