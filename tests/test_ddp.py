"""Distributed training (torchrun + DistributedDataParallel) on the CPU with gloo, two processes."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from genrify.learn import ddp

from genrify.errors import ParameterError
from genrify.learn.data import Batches, ChunkDataset
from genrify.models import modelfile
from genrify.models.normalization import Normalization
from genrify.store.store import FeatureStore

DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


@pytest.fixture
def no_dist_env(monkeypatch):
    for name in DIST_VARS:
        monkeypatch.delenv(name, raising=False)


def _torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores; also silences torchrun's note about it
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def test_batches_shard_an_epoch_between_ranks(small_store):
    with FeatureStore.open(small_store) as store:
        paths = [t.path for t in store.tracks()]
        norm = Normalization.fit(store, paths)
        dataset = ChunkDataset(store, paths, ["classical", "hiphop", "metal"], norm)
        dataset.set_epoch(3)
        whole = Batches(dataset, 5, shuffle=True, seed=1).slices()
        for world in (2, 3):
            ranks = [Batches(dataset, 5, shuffle=True, seed=1, rank=r, world_size=world) for r in range(world)]
            parts = [b.slices() for b in ranks]
            assert len({len(p) for p in parts}) == 1, "every rank takes as many steps"
            assert all(len(b) == len(p) for b, p in zip(ranks, parts, strict=True))
            # rank r takes batches r, r + N, ...: together every batch of the single-process epoch
            seen = [tuple(s) for p in parts for s in p]
            assert set(seen) == {tuple(s) for s in whole}
            assert len(seen) - len(whole) < world  # at most N - 1 batches repeated to even the count
            exact = [Batches(dataset, 5, shuffle=True, seed=1, rank=r, world_size=world, even=False).slices()
                     for r in range(world)]
            assert sorted(tuple(s) for p in exact for s in p) == sorted(tuple(s) for s in whole)
        x, y, _t = next(iter(Batches(dataset, 5, shuffle=True, seed=1, rank=1, world_size=2)))
        x1, y1, _ = dataset.batch(whole[1])  # the same chunks, augmentation and all, as batch 1 alone
        assert torch.equal(x, x1) and torch.equal(y, y1)
    with pytest.raises(ParameterError):
        Batches(dataset, 5, shuffle=False, rank=2, world_size=2)


def test_without_torchrun_nothing_is_distributed(no_dist_env, monkeypatch):
    assert ddp.init_from_env() is None and ddp.is_main() and ddp.world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ddp.init_from_env() is None
    monkeypatch.setenv("RANK", "1")
    assert not ddp.is_main()


def test_incomplete_torchrun_variables_are_a_clear_error(no_dist_env, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ParameterError, match="RANK is not"):
        ddp.init_from_env()
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ParameterError, match="MASTER_ADDR is not"):
        ddp.init_from_env()
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ParameterError, match="outside"):
        ddp.init_from_env()


TRAIN_SCRIPT = """
import json, os, sys
from genrify.learn import ddp
from genrify.learn.config import Augment, TrainConfig
from genrify.learn.training import train
from genrify.models import modelfile

store, out, results = sys.argv[1], sys.argv[2], sys.argv[3]
config = TrainConfig(epochs=2, batch_size=16, patience=5, device="cpu",
                     augment=Augment(time_masks=1, freq_masks=1, pitch_shift=2, mixup=0.2))
epochs = []
result = train(store, config, on_epoch=lambda e: epochs.append(e.epoch))
run = result.runs[0]
# one file per rank: two ranks printing at once could interleave their lines
with open(os.path.join(results, f"rank{os.environ['RANK']}.json"), "w") as fh:
    json.dump({
    "main": ddp.is_main(),
    "valid": [h.valid_loss for h in run.history],
    "train": [h.train_loss for h in run.history],
    "chunks": [h.chunks_per_second > 0 for h in run.history],
    "song_accuracy": run.evaluation.song_accuracy,
    "callbacks": epochs,
    "checksum": float(sum(p.detach().double().sum() for p in result.model.network.parameters())),
    "info": result.model.info.get("distributed"),
}, fh)
if ddp.is_main():
    modelfile.save(result.model, out)
"""


def test_two_cpu_ranks_train_one_model(small_store, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(TRAIN_SCRIPT))
    out = tmp_path / "out" / "m.safetensors"
    reports = tmp_path / "ranks"
    reports.mkdir()
    done = _torchrun(str(script), str(small_store), str(out), str(reports))
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(f.read_text()) for f in sorted(reports.glob("rank*.json"))]
    assert len(results) == 2 and sorted(r["main"] for r in results) == [False, True]
    a, b = results
    # one model: the ranks agree on every figure and every weight, so early stopping agrees too
    assert a["valid"] == b["valid"] and a["train"] == b["train"] and a["checksum"] == b["checksum"]
    assert a["song_accuracy"] == b["song_accuracy"] and all(a["chunks"])
    assert len(a["valid"]) == 2 and all(np.isfinite(a["valid"]))
    main, other = (a, b) if a["main"] else (b, a)
    assert main["callbacks"] == [1, 2] and other["callbacks"] == [], "progress is reported by rank 0 only"
    assert main["info"] == {"world_size": 2, "backend": "gloo", "chunks_per_step": 32}
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.safetensors"], "one file, no temporaries"
    model = modelfile.load(out)
    assert model.genres == ["classical", "hiphop", "metal"] and model.info["distributed"]["world_size"] == 2
    assert abs(sum(float(p.detach().double().sum()) for p in model.network.parameters()) - main["checksum"]) < 1e-6


def _cli_wired() -> bool:
    from genrify import cli

    return "is_main" in inspect.getsource(cli.train)


@pytest.mark.skipif(not _cli_wired(), reason="needs the CLI wiring (genrify train checking ddp.is_main())")
def test_torchrun_genrify_train_writes_one_model_and_report(small_store, tmp_path):
    out = tmp_path / "out" / "m.safetensors"
    done = _torchrun("-m", "genrify", "train", str(small_store), "--out", str(out), "--epochs", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("song accuracy") == 1, "rank 0 alone prints the summary"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.safetensors", "m.safetensors.report"]
    assert modelfile.load(out).info["distributed"]["world_size"] == 2
    report = json.loads((out.parent / "m.safetensors.report" / "report.json").read_text())
    assert report["summary"]["runs"] == 1
