"""The pretrained taggers on ONNX Runtime: the same answers as PyTorch, about twice as fast on a CPU.

``benchmarks/bench_runtime.py`` measured ``MSD_musicnn`` on batches of 8-16 patches on a 2-core
machine: ONNX Runtime took 0.42-0.45 of eager PyTorch's time (0.53-0.59 on one thread), with the
taggram within 4e-7 and the embedding within 3e-6 of PyTorch's; ``torch.compile``, TorchScript
freezing and channels-last gained under 15 % or nothing. So the built-in model runs its taggers'
graphs (``genrify/models/pretrained/<name>.onnx``, exported from the same weights by
``scripts/convert_musicnn.py``; a graph of standard operators, no code) on ONNX Runtime's CPU
provider wherever ``onnxruntime`` imports, and on PyTorch otherwise and on a GPU.

A graph gives a tagger's ``taggram`` and ``penultimate`` outputs, which is what the built-in model
reads (``tests/test_builtin.py`` checks the tags against PyTorch on a song). Running a graph needs
numpy and ONNX Runtime only: this module imports torch only to export a graph, or to hand torch
tensors back to a caller that passed some in.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrify.core.devices import compute_threads

if TYPE_CHECKING:
    import torch

#: Where the graphs ship: beside the taggers' weights (``genrify.models.taggers.PRETRAINED_DIR``;
#: not imported from there: the taggers use this module, and the layout rules forbid an import
#: back, even inside a function).
GRAPHS_DIR = Path(__file__).resolve().parent / "pretrained"
#: The outputs each exported graph gives, in order.
OUTPUTS = ("taggram", "penultimate")
#: The graphs' input patches, ``(frames, bands)``: musicnn's 187 frames of 96 mel bands
#: (``genrify.models.taggers.PATCH_FRAMES`` and ``MUSICNN_PARAMS.n_mels``, repeated here for the
#: same reason; ``tests/test_builtin_numpy.py`` checks that they agree).
PATCH_SHAPE = (187, 96)


#: The one input and output of a trained genre network's graph (stored in its model file by
#: :mod:`genrify.models.modelfile`): dB segments ``(n, n_mels, frames)`` in, logits ``(n, genres)`` out.
GENRE_INPUT = "x"
GENRE_OUTPUT = "logits"
#: The opset graphs are exported at: old enough for every ONNX Runtime genrify allows (>= 1.17).
OPSET = 17


def onnxruntime() -> Any:
    """``onnxruntime``, imported with its telemetry switched off.

    ONNX Runtime 1.29 and later report usage to Microsoft from the Python package unless
    ``ORT_DISABLE_TELEMETRY`` is set before the import (and leave a ``.ses`` session file in the
    temporary folder). genrify promises a user's machine that it sends nothing anywhere, so every
    import of the runtime goes through here; a user's own setting of the variable is kept.

    Raises
    ------
    ImportError
        ONNX Runtime is not installed.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    return ort


def make_session(model: str | Path | bytes, threads: int) -> Any:
    """An ONNX Runtime session on the CPU provider for a graph (a file, or its bytes).

    One thread count per session, as many as PyTorch would be allowed (:func:`compute_threads`);
    one operator at a time (``ORT_SEQUENTIAL``): genrify's graphs are chains, and parallel
    operators would only fight the intra-op threads for the cores.
    """
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: warnings are about graph rewrites
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class _Sessions:
    """A graph's sessions, made on first use, one per thread count (thread-safe)."""

    def __init__(self, model: str | Path | bytes) -> None:
        self.model = model
        self._made: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get(self, threads: int) -> Any:
        with self._lock:
            if threads not in self._made:
                self._made[threads] = make_session(self.model, threads)
            return self._made[threads]


def runtime_available() -> bool:
    """Whether ONNX Runtime imports here."""
    try:
        onnxruntime()
    except ImportError:
        return False
    return True


def graph_path(name: str) -> Path:
    """Where a tagger's packaged ONNX graph lives."""
    return GRAPHS_DIR / f"{name}.onnx"


def available(name: str) -> bool:
    """Whether ``name`` can run on ONNX Runtime here (the runtime imports and the graph is packaged)."""
    return runtime_available() and graph_path(name).is_file()


class TaggerGraph:
    """A tagger's graph on ONNX Runtime's CPU provider: patches ``(n, 187, 96)`` in, outputs by name out.

    Sessions are made on first use, one per thread count, so that the runtime uses as many threads
    as PyTorch is allowed (one while decoding workers share the cores, all of them otherwise).
    """

    def __init__(self, name: str, path: Path | None = None) -> None:
        self.name = name
        self.path = path or graph_path(name)
        self._sessions = _Sessions(self.path)

    def _session(self, threads: int) -> Any:
        return self._sessions.get(threads)

    def run(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's outputs (``taggram`` ``(n, 50)``, ``penultimate`` ``(n, 200)``) for patches
        ``(n, 187, 96)``, as float32 numpy arrays; needs no torch."""
        x = np.ascontiguousarray(patches, dtype=np.float32)
        values = self._session(compute_threads()).run(list(OUTPUTS), {"x": x})
        return dict(zip(OUTPUTS, values, strict=True))

    def __call__(self, patches: np.ndarray | torch.Tensor) -> dict[str, Any]:
        """:meth:`run`, giving back the kind of array it is given: numpy arrays for a numpy array,
        torch tensors (on the CPU) for a tensor, as the taggers' torch networks do."""
        if isinstance(patches, np.ndarray):
            return self.run(patches)
        import torch  # a tensor came in, so torch is loaded already

        out = self.run(patches.detach().cpu().numpy())
        return {key: torch.from_numpy(value) for key, value in out.items()}

    def __getstate__(self) -> dict[str, Any]:  # sessions do not pickle; they are remade where used
        return {"name": self.name, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["path"])  # type: ignore[misc]


@functools.cache
def tagger_graph(name: str) -> TaggerGraph:
    """The packaged tagger ``name``'s graph, one per process: every user of a tagger (the built-in
    model, ``genrify tags``, the music check) shares its sessions instead of making its own."""
    return TaggerGraph(name)


def export(network: torch.nn.Module, path: str | Path) -> Path:
    """Export a tagger network's ``taggram`` and ``penultimate`` to an ONNX graph (needs ``onnx``).

    Used by ``scripts/convert_musicnn.py``; genrify itself only reads the graphs.
    """
    import warnings

    import torch

    from genrify.core.fsutil import atomic_path

    class _Outputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(x)
            return tuple(out[k] for k in OUTPUTS)

    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Outputs(network).eval(), (torch.zeros(2, *PATCH_SHAPE),), str(tmp), input_names=["x"],
            output_names=list(OUTPUTS), dynamic_axes={"x": {0: "batch"}}, opset_version=OPSET, dynamo=False,
        )
    return path


class OnnxGenreGraph:
    """A trained genre network's graph on ONNX Runtime's CPU provider: dB segments
    ``(n, n_mels, frames)`` in, logits ``(n, genres)`` out, in numpy; needs no torch.

    The graph comes as bytes (it lives inside a model file, not beside it). Sessions are made on
    first use, one per thread count, as :class:`TaggerGraph`'s.
    """

    def __init__(self, graph: bytes, *, source: str = "graph") -> None:
        self.graph = graph
        self.source = source  #: where the graph came from, for messages
        self._sessions = _Sessions(graph)

    def _session(self, threads: int) -> Any:
        return self._sessions.get(threads)

    def logits(self, segments: np.ndarray) -> np.ndarray:
        """The network's logits for ``segments`` ``(n, n_mels, frames)`` (float32, dB), as float32."""
        x = np.ascontiguousarray(segments, dtype=np.float32)
        (out,) = self._session(compute_threads()).run([GENRE_OUTPUT], {GENRE_INPUT: x})
        return np.asarray(out, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:  # sessions do not pickle; they are remade where used
        return {"graph": self.graph, "source": self.source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["graph"], source=state["source"])  # type: ignore[misc]


def export_genre_network(network: torch.nn.Module, n_mels: int, frames: int) -> bytes:
    """A genre network (dB segments in, logits out; its normalisation inside) as ONNX graph bytes.

    The network is exported in eval mode (dropout off, batch norm on its running statistics) with
    the TorchScript exporter (``dynamo=False``: no ``onnxscript``, and the graph of plain operators
    that ONNX Runtime 1.17 runs), a dynamic batch and fixed segment shape, at :data:`OPSET`.

    Raises
    ------
    ImportError
        The ``onnx`` package is missing (the exporter needs it; ``pip install onnx``).
    """
    import io
    import warnings

    import onnx  # noqa: F401 - the exporter needs it; fail here with a plain ImportError
    import torch

    was_training = network.training
    network.eval()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shapes taken as constants
            torch.onnx.export(
                network, (torch.zeros(2, n_mels, frames),), buffer, input_names=[GENRE_INPUT],
                output_names=[GENRE_OUTPUT], dynamic_axes={GENRE_INPUT: {0: "batch"}, GENRE_OUTPUT: {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )
    finally:
        network.train(was_training)
    return buffer.getvalue()
