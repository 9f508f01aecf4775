"""Does ONNX Runtime, torch.compile or TorchScript freezing make the musicnn taggers faster on the CPU?

Times the pretrained ``MSD_musicnn`` network on the same input patches, per batch size (1, 8, 16,
32 patches) and torch thread count (2, 1), in these variants:

* ``eager``         ``network(x)`` under ``torch.inference_mode()`` (what ``Tagger.run`` does): the reference;
* ``jit-freeze``    ``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``;
* ``channels-last`` eager with the conv weights in ``torch.channels_last``;
* ``no-mkldnn``     eager with ``torch.backends.mkldnn.flags(enabled=False)`` (only with ``--all``);
* ``compile``       ``torch.compile(network)`` (inductor; needs a C compiler); its compile time is
                    reported on its own line, and it is compiled for 2 threads only unless ``--all``
                    (inductor bakes the thread count into its kernels, so each count is a new compile);
* ``onnxruntime``   ``torch.onnx.export`` (TorchScript exporter, dynamic batch axis) run by
                    ``onnxruntime.InferenceSession`` on ``CPUExecutionProvider`` with
                    ``intra_op_num_threads`` = the torch thread count.

Every variant is timed in the same run as eager, round-robin (one call of each in turn, in a rotating
order, so that other load on the machine hits them alike), after a warm-up; the figure is the median
of the repeats, in ms per patch (wall, and the process's CPU time). The ratio is variant / eager at
the same batch and thread count (below 1 = faster). ``d_tag`` and ``d_pen`` are the max abs
differences from eager's ``taggram`` and ``penultimate`` at that batch size (the bar is 1e-4).

Then the two taggers on one batch (2 threads unless said otherwise): ``MSD_musicnn`` then
``MTT_musicnn``; both in one module (one ``forward`` calling both); that module frozen by TorchScript;
and the two run at once in two Python threads with 1 torch thread each.

    .venv/bin/python benchmarks/bench_runtime.py           # ~3 minutes on a quiet 2-core machine (5 min under load)
    .venv/bin/python benchmarks/bench_runtime.py --quick   # batch 8, 2 threads, no torch.compile: ~30 s
    .venv/bin/python benchmarks/bench_runtime.py --all     # + no-mkldnn, torch.compile at 1 thread too

Input: the patches of ``examples/vibe-ace.ogg`` (6 patches), tiled to the batch size; random
log-compressed gamma noise where the file or its decoder is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genrify.classify.musicnn_tags import preprocess_file
from genrify.models.musicnn import load_tagger
from genrify.models.taggers import PATCH_FRAMES

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "vibe-ace.ogg"
TOLERANCE = 1e-4

Outputs = tuple[np.ndarray, np.ndarray]  # (taggram, penultimate)


class TwoOutputs(nn.Module):
    """The network with a tuple (taggram, penultimate) for output: what tracing and ONNX export need."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(x)
        return out["taggram"], out["penultimate"]


class BothTaggers(nn.Module):
    """Two taggers in one module: one call gives both taggrams and both embeddings."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = TwoOutputs(first), TwoOutputs(second)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (*self.first(x), *self.second(x))


def input_patches(n: int) -> tuple[np.ndarray, str]:
    """``n`` float32 patches (n, 187, 96): the example song's, tiled, or log-compressed noise."""
    try:
        song = preprocess_file(EXAMPLE)
        source = f"{EXAMPLE.name} ({len(song)} patches, tiled)"
    except Exception as exc:  # noqa: BLE001 - a missing file or decoder: fall back to noise
        song = np.log10(1 + 10000 * np.random.default_rng(0).gamma(0.5, 1e-4, size=(6, PATCH_FRAMES, 96)))
        source = f"gamma noise ({type(exc).__name__} reading {EXAMPLE.name})"
    reps = -(-n // len(song))
    return np.ascontiguousarray(np.tile(song, (reps, 1, 1))[:n], dtype=np.float32), source


def numpy_outputs(out: object) -> Outputs:
    if isinstance(out, dict):
        out = (out["taggram"], out["penultimate"])
    taggram, penultimate = out[0], out[1]
    as_np = lambda v: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return as_np(taggram), as_np(penultimate)


# --- the variants ----------------------------------------------------------------------------------


def eager(network: nn.Module) -> Callable[[torch.Tensor], object]:
    def call(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return network(x)

    return call


def no_mkldnn(network: nn.Module) -> Callable[[torch.Tensor], object]:
    def call(x: torch.Tensor) -> object:
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
            return network(x)

    return call


def channels_last(network: nn.Module) -> Callable[[torch.Tensor], object]:
    net = copy.deepcopy(network).to(memory_format=torch.channels_last)

    def call(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return net(x)

    return call


def jit_freeze(network: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], object]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(TwoOutputs(network).eval(), example, check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))

    def call(x: torch.Tensor) -> object:
        with torch.no_grad():
            return frozen(x)

    return call


def onnx_session(network: nn.Module, example: torch.Tensor, folder: Path) -> Callable[[int], Callable]:
    """Export once; returns a factory of runners for a thread count."""
    import onnxruntime as ort

    path = folder / "musicnn.onnx"
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stderr(open(os.devnull, "w")):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TwoOutputs(network).eval(), (example,), str(path), input_names=["x"],
            output_names=["taggram", "penultimate"], dynamic_axes={"x": {0: "batch"}},
            opset_version=17, dynamo=False,
        )

    def runner(threads: int) -> Callable[[torch.Tensor], object]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def call(x: torch.Tensor) -> object:
            return session.run(None, {"x": x.numpy()})

        return call

    return runner


# --- timing ----------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def compare(
    variants: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, budget_s: float
) -> dict[str, dict[str, float]]:
    """Round-robin median wall and CPU seconds per call of each variant, and its difference from eager."""
    first: dict[str, float] = {}
    outputs: dict[str, Outputs] = {}
    for name, fn in variants.items():  # warm-up: oneDNN primitives, allocator, (re)compilation
        first[name], _, out = timed(lambda fn=fn: fn(x))
        outputs[name] = numpy_outputs(out)
        if x.shape[0] < 16:
            timed(lambda fn=fn: fn(x))
    estimate = timed(lambda: variants["eager"](x))[0]
    repeats = int(min(15, max(3, budget_s / (estimate * len(variants)))))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, cpu, _ = timed(lambda name=name: variants[name](x))
            samples[name].append((wall, cpu))
    ref = outputs["eager"]
    result = {}
    for name, runs in samples.items():
        out = outputs[name]
        result[name] = {
            "wall": statistics.median(w for w, _ in runs), "cpu": statistics.median(c for _, c in runs),
            "first": first[name], "repeats": repeats,
            "d_tag": float(np.abs(out[0] - ref[0]).max()), "d_pen": float(np.abs(out[1] - ref[1]).max()),
        }
    return result


def row(name: str, batch: int, threads: int, fig: dict[str, float], eager_wall: float, note: str = "") -> str:
    ok = "ok" if max(fig["d_tag"], fig["d_pen"]) <= TOLERANCE else "DIFFERS"
    return (f"{name:<14} {batch:>5} {threads:>7} {1000 * fig['wall'] / batch:9.2f} {1000 * fig['cpu'] / batch:9.2f} "
            f"{fig['wall'] / eager_wall:6.2f} {fig['d_tag']:9.1e} {fig['d_pen']:9.1e} {ok:>7} {fig['repeats']:>3}  {note}")


HEADER = (f"{'variant':<14} {'batch':>5} {'threads':>7} {'ms/patch':>9} {'cpu ms/p':>9} {'ratio':>6} "
          f"{'d_tag':>9} {'d_pen':>9} {'<=1e-4':>7} {'n':>3}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 threads, no torch.compile (~30 s)")
    parser.add_argument("--all", action="store_true", help="add no-mkldnn, and torch.compile at 1 thread too")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timed calls per batch and thread count")
    args = parser.parse_args(argv)

    batches = (8,) if args.quick else (1, 8, 16, 32)
    thread_counts = (2,) if args.quick else (2, 1)
    budget = args.budget or (2.5 if args.quick else 4.0)
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    print(f"musicnn runtimes: torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load_start:.1f} at start")

    msd = load_tagger("MSD_musicnn").network
    data, source = input_patches(max(batches))
    print(f"input: {source}; model MSD_musicnn; figures are medians of n round-robin calls after warm-up\n")
    example = torch.from_numpy(data[:2])

    skipped: list[str] = []
    ort_runner = None
    tmp = tempfile.TemporaryDirectory()
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        skipped.append("onnxruntime: skipped, `onnxruntime`/`onnx` not installed (.venv/bin/pip install onnxruntime onnx)")
    else:
        try:
            t0 = time.perf_counter()
            ort_runner = onnx_session(msd, example, Path(tmp.name))
            print(f"onnx export: {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # noqa: BLE001 - report and go on
            skipped.append(f"onnxruntime: skipped, export failed ({type(exc).__name__}: {str(exc)[:200]})")
    compile_threads: tuple[int, ...] = ()
    if args.quick or args.no_compile:
        skipped.append("compile: skipped (--quick / --no-compile); a cold compile takes ~45 s here")
    elif not hasattr(torch, "compile"):
        skipped.append("compile: skipped, this torch has no torch.compile")
    else:
        compile_threads = thread_counts if args.all else (2,)
        if not args.all:
            skipped.append("compile: timed at 2 threads only (--all for 1 thread: inductor bakes the thread count in)")
    try:
        t0 = time.perf_counter()
        freeze_msd = jit_freeze(msd, example)
        print(f"jit trace+freeze: {time.perf_counter() - t0:.1f} s")
    except Exception as exc:  # noqa: BLE001
        freeze_msd = None
        skipped.append(f"jit-freeze: skipped, tracing failed ({type(exc).__name__}: {exc})")
    for line in skipped:
        print(line)
    print()
    print(HEADER)

    best: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        variants: dict[str, Callable[[torch.Tensor], object]] = {"eager": eager(msd)}
        if freeze_msd is not None:
            variants["jit-freeze"] = freeze_msd
        variants["channels-last"] = channels_last(msd)
        if args.all:
            variants["no-mkldnn"] = no_mkldnn(msd)
        if ort_runner is not None:
            variants["onnxruntime"] = ort_runner(threads)
        compile_note = ""
        if threads in compile_threads:
            try:
                import torch._dynamo as dynamo
                import torch._inductor.config as inductor_config

                dynamo.reset()
                inductor_config.cpp.threads = threads  # also keys the FX graph cache by thread count
                compiled = torch.compile(msd, dynamic=True)  # one graph for every batch > 1
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled(torch.from_numpy(data[:8]))
                compile_note = f"first call (compile) {time.perf_counter() - t0:.1f} s"
                variants["compile"] = eager(compiled)
            except Exception as exc:  # noqa: BLE001 - no compiler, unsupported op...
                print(f"compile: skipped at {threads} threads ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        for batch in batches:
            x = torch.from_numpy(data[:batch])
            figures = compare(variants, x, budget)
            ref = figures["eager"]["wall"]
            for name, fig in figures.items():
                note = ""
                if name == "compile":
                    note = compile_note if batch == batches[0] else ""
                    if fig["first"] > 2 * max(fig["wall"], 0.05):
                        note = (note + "; " if note else "") + f"recompiled at this batch: {fig['first']:.1f} s"
                print(row(name, batch, threads, fig, ref, note))
                if max(fig["d_tag"], fig["d_pen"]) <= TOLERANCE:
                    best.setdefault((threads, batch), []).append((name, fig["wall"] / ref))
            print()

    # --- two taggers on one batch ---------------------------------------------------------------------
    batch = 8 if args.quick else 16
    torch.set_num_threads(2)
    mtt = load_tagger("MTT_musicnn").network
    both = BothTaggers(msd, mtt).eval()
    x = torch.from_numpy(data[:batch])

    def sequential(x: torch.Tensor) -> object:
        with torch.inference_mode():
            a, b = msd(x), mtt(x)
        return (a["taggram"], a["penultimate"], b["taggram"], b["penultimate"])

    def one_module(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return both(x)

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen_both = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(both, example, check_trace=False)))

    def one_module_frozen(x: torch.Tensor) -> object:
        with torch.no_grad():
            return frozen_both(x)

    pool = ThreadPoolExecutor(2)

    def _one_thread(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        torch.set_num_threads(1)
        with torch.inference_mode():
            return net(x)

    def concurrent(x: torch.Tensor) -> object:
        fa, fb = pool.submit(_one_thread, msd, x), pool.submit(_one_thread, mtt, x)
        a, b = fa.result(), fb.result()
        torch.set_num_threads(2)
        return (a["taggram"], a["penultimate"], b["taggram"], b["penultimate"])

    pair = {"eager": sequential, "one-module": one_module, "one-module-jit": one_module_frozen, "2x1-threads": concurrent}
    # compare() checks outputs 0 and 1 (MSD); check MTT's (2 and 3) here.
    mtt_diffs = {}
    ref_out = [v.numpy() for v in sequential(x)]
    for name, fn in pair.items():
        out = [np.asarray(v) for v in fn(x)]
        mtt_diffs[name] = max(float(np.abs(out[i] - ref_out[i]).max()) for i in (2, 3))
    figures = compare(pair, x, budget)
    print(f"MSD_musicnn + MTT_musicnn on one batch of {batch} (ms per patch for both; 'eager' = MSD then MTT, 2 threads;"
          " d_tag/d_pen are MSD's, MTT's largest difference in the note)")
    print(HEADER)
    ref = figures["eager"]["wall"]
    for name, fig in figures.items():
        threads = 1 if name == "2x1-threads" else 2
        print(row(name, batch, threads, fig, ref, f"MTT max diff {mtt_diffs[name]:.1e}"))
    pool.shutdown()
    tmp.cleanup()

    # --- summary --------------------------------------------------------------------------------------
    print()
    for threads, b in sorted(best):
        if threads == 2 and b in (8, 16):
            name, ratio = min(best[(threads, b)], key=lambda t: t[1])
            print(f"fastest within {TOLERANCE:g} at batch {b}, {threads} threads: {name} ({ratio:.2f} x eager)")
    load_end = os.getloadavg()[0]
    print(f"total {time.perf_counter() - start:.0f} s; load average {load_end:.1f} at the end", end="")
    if max(load_start, load_end) > (os.cpu_count() or 1) - 0.5:
        print(": other work shared the cores, so wall times are inflated and noisy (the ratios, measured "
              "round-robin, hold better; the 1-thread CPU times are the steadiest figures)")
    else:
        print()


if __name__ == "__main__":
    main()
