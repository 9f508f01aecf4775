from __future__ import annotations

import pytest
import torch

from genrify.audio.features import FeatureParams
from genrify.errors import ParameterError
from genrify.models import (
    CHUNKS,
    EMBEDDINGS,
    GenreNetwork,
    architecture,
    architectures,
    build,
    register,
)


@pytest.mark.parametrize(
    "name, options", [("seed-cnn", {}), ("short-res", {}), ("short-res", {"freq_pool": "flatten"}), ("timbre-temporal", {})]
)
def test_architectures_map_chunks_to_logits(name, options):
    net = build(name, n_mels=128, n_genres=7, **options).eval()
    x = torch.randn(3, 128, 128)
    assert net(x).shape == (3, 7)
    assert net.embed(x).shape[0] == 3
    # Short chunks (a 0.5 s clip padded) and other band counts work too.
    assert build(name, n_mels=96, n_genres=2, **options).eval()(torch.randn(2, 96, 64)).shape == (2, 2)


def test_registry_lists_and_refuses():
    assert {"seed-cnn", "short-res", "timbre-temporal"} <= set(architectures())
    with pytest.raises(ParameterError, match="freq_pool"):
        build("short-res", n_mels=128, n_genres=2, freq_pool="mean")
    with pytest.raises(ParameterError, match="unknown architecture 'vgg-99'"):
        build("vgg-99", n_mels=128, n_genres=2)
    with pytest.raises(ParameterError, match="seed-cnn"):
        build("seed-cnn", n_mels=128, n_genres=2, colour="red")


def test_seed_cnn_is_the_seeds_shape():
    net = build("seed-cnn", n_mels=128, n_genres=4)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv1d)]
    dense = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 3 and convs[0].in_channels == 128  # mel bands are the channels
    assert len(dense) == 3 and dense[-1].out_features == 4  # two hidden dense layers and the output
    assert dense[0].in_features == 2 * convs[-1].out_channels  # global max and mean pooling, concatenated


def test_genre_network_normalises_float16_time_major_views():
    body = build("seed-cnn", n_mels=8, n_genres=3).eval()
    mean, std = torch.linspace(-50, -10, 8), torch.full((8,), 5.0)
    net = GenreNetwork(body, mean, std).eval()
    raw = torch.randn(2, 16, 8) * 5 + mean  # time-major, in dB
    as_stored = raw.half().transpose(1, 2)
    expected = body(((raw.half().float() - mean) / std).transpose(1, 2))
    torch.testing.assert_close(net(as_stored), expected)
    assert "mean" not in net.state_dict()  # kept apart in the model file


def test_entries_declare_their_input_and_trainer():
    for name in ("seed-cnn", "short-res", "timbre-temporal"):
        entry = architecture(name)
        assert not entry.reads_audio and entry.params is None and entry.trainer == CHUNKS  # a store's chunks
    transfer = architecture("musicnn-transfer")
    # audio at the tagger's own parameters, a head on cached embeddings
    assert transfer.reads_audio and transfer.params.sample_rate == 16000 and transfer.params.n_mels == 96
    assert transfer.trainer == EMBEDDINGS and transfer.chunk_frames == 187
    with pytest.raises(ParameterError, match="unknown architecture 'vgg-99'"):
        architecture("vgg-99")
    with pytest.raises(ParameterError, match="unknown trainer 'magic'"):
        register("odd", trainer="magic")


def test_a_registered_architecture_is_built_with_its_declarations():
    from genrify.models import unregister

    own = FeatureParams(sample_rate=8000, n_mels=16)
    try:
        register("tiny-test", params=own, chunk_frames=32)(lambda *, n_mels, n_genres: torch.nn.Linear(n_mels, n_genres))
        assert "tiny-test" in architectures() and architecture("tiny-test").params == own
        assert build("tiny-test", n_mels=16, n_genres=3).out_features == 3
    finally:
        unregister("tiny-test")
