"""The TensorFlow-to-PyTorch weight port of the musicnn taggers (used by ``convert_musicnn.py``).

musicnn 0.1.0's checkpoints name their variables by TensorFlow scope (``conv2d_3/kernel``,
``batch_normalization_4/moving_mean``) in TensorFlow's layouts; :func:`convert_tf_variables` turns
them into the state dict of :class:`genrify.models.musicnn.MusiCNN` or :class:`~genrify.models.musicnn.VGG`.
Only the conversion script and its tests need it: genrify itself loads the converted
``.safetensors`` files and never sees a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from genrify.errors import ParameterError
from genrify.models.musicnn import ARCHITECTURES


def conv2d_weight(kernel: np.ndarray) -> np.ndarray:
    """A TensorFlow 2-D convolution kernel ``[kh, kw, in, out]`` in torch's layout ``[out, in, kh, kw]``."""
    return kernel.transpose(3, 2, 0, 1)


def batch_norm_state(variables: Mapping[str, np.ndarray], tf_name: str, prefix: str) -> dict[str, np.ndarray]:
    """The four tensors of the torch batch norm ``prefix`` from the TensorFlow scope ``tf_name``."""
    return {
        f"{prefix}.weight": variables[f"{tf_name}/gamma"],
        f"{prefix}.bias": variables[f"{tf_name}/beta"],
        f"{prefix}.running_mean": variables[f"{tf_name}/moving_mean"],
        f"{prefix}.running_var": variables[f"{tf_name}/moving_variance"],
    }


def tf_variable_map(architecture: str) -> dict[str, str]:
    """For each layer prefix of the torch module, the TensorFlow variable scope it comes from."""
    if architecture == "musicnn":
        convs = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2", "midend.0", "midend.1", "midend.2"]
        layers = {"input_bn": "batch_normalization"}
        for i, prefix in enumerate(convs):
            layers[f"{prefix}.conv"] = "conv2d" if i == 0 else f"conv2d_{i}"
            layers[f"{prefix}.bn"] = f"batch_normalization_{i + 1}"
        layers |= {"pool_bn": "batch_normalization_9", "dense": "dense", "dense_bn": "batch_normalization_10", "output": "dense_1"}
        return layers
    if architecture == "vgg":
        layers = {"input_bn": "batch_normalization", "output": "dense"}
        for i in range(5):
            layers[f"convs.{i}"] = f"{i + 1}CNN"
            layers[f"bns.{i}"] = f"batch_normalization_{i + 1}"
        return layers
    raise ParameterError(f"unknown musicnn architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")


def convert_tf_variables(architecture: str, variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A TensorFlow checkpoint's variables (name -> array, TF layout) as this port's float32 state dict.

    Raises
    ------
    ParameterError
        Unknown architecture, or a variable missing or left over.
    """
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()
    try:
        for prefix, scope in tf_variable_map(architecture).items():
            if scope.startswith("batch_normalization"):
                state |= batch_norm_state(variables, scope, prefix)
                used |= {f"{scope}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")}
                continue
            kernel, bias = variables[f"{scope}/kernel"], variables[f"{scope}/bias"]
            used |= {f"{scope}/kernel", f"{scope}/bias"}
            if kernel.ndim == 2:
                weight = kernel.T  # dense: TF [in, out] -> torch [out, in]
            elif prefix.startswith("midend."):
                # The original's [7, features, 1, out] conv spans every feature: a Conv1d over time.
                weight = kernel[:, :, 0, :].transpose(2, 1, 0)
            else:
                weight = conv2d_weight(kernel)
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weight, bias
    except KeyError as exc:
        raise ParameterError(f"{architecture}: the checkpoint lacks variable {exc.args[0]}") from None
    unused = sorted(set(variables) - used)
    if unused:
        raise ParameterError(f"{architecture}: unexpected checkpoint variables {', '.join(unused)}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
