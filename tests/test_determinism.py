"""One seed, one machine, one model: training twice gives bit-identical weights, another seed does not.

What a seed trains must not change by accident. On one machine, with one thread count, two runs with
the same seed must give the same weights to the bit (parameters and buffers: batch-norm statistics
too); a run with another seed must give other weights, so that the test can fail. Float results
depend on the thread count (and on the CPU's kernels), so the runs here use one thread: the
fingerprint printed on failure (and with ``-s``) can then be compared with another commit's on the
same machine to see whether a change altered what a seed learns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import torch

from genrify.learn.config import Augment, TrainConfig
from genrify.learn.training import train

# Every random draw of a run: initial weights, split, batch order, offsets, pitch shifts, masks,
# mixup, dropout. Two epochs: the second epoch's shuffles and augmentation are drawn too.
AUGMENT = Augment(time_masks=1, freq_masks=1, pitch_shift=2, mixup=0.2)
ARCHS = {"seed-cnn": "sgd", "short-res": "adam"}  # as benchmarks/compare_archs.py trains them


def _config(arch: str, seed: int) -> TrainConfig:
    return TrainConfig(
        arch=arch, optimizer=ARCHS[arch], epochs=2, batch_size=16, patience=2, augment=AUGMENT, seed=seed, device="cpu"
    )


def _weights(store, arch: str, seed: int) -> dict[str, torch.Tensor]:
    result = train(store, _config(arch, seed))
    return {k: v.detach().clone() for k, v in result.model.network.state_dict().items()}


def _fingerprint(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Float sums depend on how many threads share them: fix it for these runs, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_one_seed_trains_the_same_weights_and_another_seed_does_not(small_store, one_thread, arch):
    first = _weights(small_store, arch, seed=3)
    again = _weights(small_store, arch, seed=3)
    other = _weights(small_store, arch, seed=4)

    print(f"{arch} seed 3 on 1 thread, torch {torch.__version__}: {_fingerprint(first)}")
    assert first.keys() == again.keys() == other.keys()
    changed = [k for k in first if not torch.equal(first[k], again[k])]
    assert not changed, f"{arch}: the same seed trained other weights in {changed[:5]} ({_fingerprint(first)} vs {_fingerprint(again)})"
    assert _fingerprint(first) == _fingerprint(again)
    # Another seed draws other initial weights (and another split): the test can tell runs apart.
    assert any(not torch.equal(first[k], other[k]) for k in first), f"{arch}: seeds 3 and 4 trained the same weights"
    assert _fingerprint(first) != _fingerprint(other)
