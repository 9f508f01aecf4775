from __future__ import annotations

import json

import pytest
import torch

from genrify.audio.features import FeatureParams
from genrify.audio.synth import SynthSpec, write_dataset
from genrify.errors import ParameterError, SplitError, TrainingError
from genrify.learn.config import Augment, TrainConfig
from genrify.learn.evaluation import evaluate_model, write_report
from genrify.learn.training import System, train
from genrify.models import modelfile
from genrify.store.extract import extract

FAST = TrainConfig(epochs=2, batch_size=16, patience=2, augment=Augment(time_masks=1, freq_masks=1, pitch_shift=2, mixup=0.2))


def test_system_uses_the_seeds_optimiser_and_decay():
    net = torch.nn.Linear(4, 2)
    system = System(net, TrainConfig())
    opt = system.optimizer
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["initial_lr"] == 1e-3
    for _ in range(1000):
        system.step(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    assert system.scheduler.get_last_lr()[0] == pytest.approx(1e-3 / (1 + 1e-5 * 1000))


def _batches(n: int, seed: int, *, flip: bool = False) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Two separable classes as a plain list of (x, y, track) batches: any loader will do."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 3 * (y[:, None].float() * 2 - 1)
    if flip:
        y = 1 - y
    return [(x[i : i + 16], y[i : i + 16], torch.arange(i, min(i + 16, n))) for i in range(0, n, 16)]


def test_fit_takes_any_loaders_stops_early_and_keeps_the_best_weights():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    system = System(net, TrainConfig(optimizer="adam", lr=0.05, epochs=40, patience=3))
    epochs = []
    # validation labels are the opposite of training's: the better it learns, the worse it validates
    history, best_epoch, best_loss = system.fit(_batches(64, 1), _batches(32, 2, flip=True), on_epoch=epochs.append)
    assert [e.epoch for e in epochs] == list(range(1, len(history) + 1))
    assert len(history) == best_epoch + 3 < 40, "stops after `patience` epochs without a better validation loss"
    assert best_loss == min(h.valid_loss for h in history) == history[best_epoch - 1].valid_loss
    assert system.validate(_batches(32, 2, flip=True))[0] == pytest.approx(best_loss), "the best weights are back"
    assert all(h.chunks_per_second > 0 for h in history)


def test_fit_refuses_a_diverging_run():
    net = torch.nn.Linear(4, 2)
    bad = [(torch.full((4, 4), float("nan")), torch.zeros(4, dtype=torch.long), torch.arange(4))]
    with pytest.raises(TrainingError, match="training diverged"):
        System(net, TrainConfig()).fit(bad, _batches(8, 0))
    with pytest.raises(TrainingError, match="validation loss nan"):
        System(torch.nn.Linear(4, 2), TrainConfig()).fit(_batches(8, 0), bad)


def test_train_save_load_and_evaluate(small_store, tmp_path):
    result = train(small_store, FAST, runs=2)
    assert len(result.runs) == 2 and all(1 <= len(r.history) <= 2 for r in result.runs)
    summary = result.summary()
    assert summary["runs"] == 2 and 0.0 <= summary["song_accuracy_mean"] <= 1.0
    model_path = modelfile.save(result.model, tmp_path / "m.safetensors")
    model = modelfile.load(model_path, params=FeatureParams())
    assert model.genres == ["classical", "hiphop", "metal"] and model.architecture == "seed-cnn"
    x = torch.randn(2, 128, 128) * 10 - 30
    torch.testing.assert_close(model.network(x), result.model.network.eval()(x))
    # the model remembers its test songs: evaluating on the same store reproduces the kept run
    kept = result.runs[result.model.info["kept_run"]].evaluation
    again = evaluate_model(model_path, small_store)
    assert again.selection == "the model's test songs" and again.songs == len(kept.paths)
    assert again.evaluation.song_accuracy == pytest.approx(kept.song_accuracy)
    report = write_report(model_path, genres=model.genres, summary=summary, runs=model.info["runs"])
    data = json.loads((report / "report.json").read_text())
    assert {"song_accuracy_mean", "song_accuracy_std", "chunk_accuracy_mean"} <= set(data["summary"])
    assert len(data["runs"]) == 2 and data["runs"][0]["history"]
    assert (report / "curves.png").stat().st_size > 10_000 and (report / "confusion.png").stat().st_size > 10_000


def test_training_is_deterministic_for_a_seed(small_store):
    a = train(small_store, FAST)
    b = train(small_store, FAST)
    assert [h.train_loss for h in a.runs[0].history] == [h.train_loss for h in b.runs[0].history]
    for p, q in zip(a.model.network.parameters(), b.model.network.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_genre_with_too_few_songs(tmp_path):
    write_dataset(tmp_path / "music", SynthSpec(genres=("jazz", "pop"), per_genre=2, seconds=2.0, seed=0, fmt="wav"))
    extract(tmp_path / "music", tmp_path / "store", jobs=1)
    with pytest.raises(SplitError, match="each genre needs at least 3 songs"):
        train(tmp_path / "store", FAST)


def test_a_split_that_cannot_be_made_is_refused_before_any_embedding(small_store, monkeypatch):
    # The synthetic store has no artist tags: an artist split is refused before the transfer
    # trainer embeds every song (minutes on a real library), not after.
    def embeds(*args, **kwargs):
        raise AssertionError("embedded before the split was checked")

    monkeypatch.setattr("genrify.learn.training.ensure_embeddings", embeds)
    with pytest.raises(SplitError, match="--group-by artist: none of the 18 songs has an artist tag"):
        train(small_store, TrainConfig(arch="musicnn-transfer", group_by="artist"))


def test_bad_settings():
    with pytest.raises(ParameterError, match="unknown optimiser 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ParameterError):
        TrainConfig(epochs=0)


@pytest.mark.parametrize(
    ("settings", "field", "said"),
    [
        ({"arch": "foo"}, "arch", "arch must be one of .*seed-cnn.*not 'foo'"),
        ({"group_by": "foo"}, "group_by", "group_by must be one of auto, artist, song, not 'foo'"),
        ({"valid": 0.9, "test": 0.9}, "valid", "valid and test must each be between 0 and 1"),
        ({"valid": 0.0}, "valid", "valid and test"),
        ({"optimizer": "rmsprop"}, "optimizer", "optimizer must be one of sgd, adam, adamw"),
        ({"batch_size": 0}, "batch_size", "batch_size must be at least 1, not 0"),
        ({"hop_frames": 0}, "hop_frames", "hop_frames must be positive"),
        ({"lr": float("inf")}, "lr", "lr must be positive and finite, not inf"),
        ({"lr": float("nan")}, "lr", "lr must be positive and finite, not nan"),
        # NaN passed `chunk_frames < 16` (every comparison with NaN is False).
        ({"chunk_frames": float("nan")}, "chunk_frames", "chunk_frames must be at least 16 and finite, not nan"),
        ({"chunk_frames": float("inf")}, "chunk_frames", "chunk_frames must be at least 16 and finite, not inf"),
        ({"chunk_frames": 8}, "chunk_frames", "chunk_frames must be at least 16 and finite, not 8"),
        ({"valid": float("nan")}, "valid", "valid and test must each be between 0 and 1"),
    ],
)
def test_every_setting_is_checked_when_the_config_is_made(settings, field, said):
    # group_by "foo" was taken for "auto" and an unknown arch failed only once training began.
    with pytest.raises(ParameterError, match=said) as caught:
        TrainConfig(**settings)
    assert caught.value.field == field


def test_the_groupings_are_the_splits():
    from typing import get_args

    from genrify.learn.config import GROUPINGS
    from genrify.learn.splits import GroupBy

    assert GROUPINGS == get_args(GroupBy)


def test_trains_parameters_section_holds_parameters_only():
    import inspect

    doc = inspect.cleandoc(train.__doc__ or "")
    section = doc.split("Parameters\n----------\n", 1)[1].split("\nRaises\n", 1)[0].split("\nNotes\n", 1)[0]
    names = set(inspect.signature(train).parameters)
    # numpydoc: an unindented line in Parameters is a parameter's name; prose belongs in Notes.
    entries = [line for line in section.splitlines() if line.strip() and not line.startswith(" ")]
    for entry in entries:
        assert {n.strip() for n in entry.split(",")} <= names, entry
    assert "torchrun" in doc.split("\nNotes\n-----\n", 1)[1]


def test_the_spread_over_runs_is_the_samples_and_one_run_has_none():
    from types import SimpleNamespace

    from genrify.learn.training import summarize

    def run(accuracy: float) -> SimpleNamespace:
        figures = {"song_accuracy": accuracy, "chunk_accuracy": accuracy, "vote_accuracy": accuracy, "macro_f1": accuracy}
        return SimpleNamespace(evaluation=SimpleNamespace(summary=lambda: figures))

    two = summarize([run(0.269), run(0.125)])
    assert two["song_accuracy_mean"] == pytest.approx(0.197)
    assert two["song_accuracy_std"] == pytest.approx(0.10182, abs=1e-4)  # ddof=1; the population's would be 0.072
    assert summarize([run(0.5)])["song_accuracy_std"] == 0.0
