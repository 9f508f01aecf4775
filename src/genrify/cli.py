"""The ``genrify`` command: a thin layer over the library API.

Every command validates through the library (one error type, :class:`~genrify.errors.GenrifyError`),
prints one clear line and exits 1 on bad input, shows a progress bar on long work (on stderr), and
ends with a short summary (on stdout). Heavy modules are imported inside the commands so that
``genrify --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from genrify import __version__
from genrify.collection.tagpolicy import TagPolicy
from genrify.core.extras import install_command
from genrify.learn.config import TRAIN_DEFAULTS
from genrify.defaults import (
    ARCHITECTURES,
    DEFAULT_MAX_SEGMENTS,
    DEFAULT_MIN_SONGS,
    HOP_LENGTH,
    MAX_DURATION,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
)
from genrify.errors import GenrifyError, ParameterError, UsageError, exit_code

if TYPE_CHECKING:
    from genrify.core.runner import Runner

#: ``--max-duration``'s default and help, the same for extract, classify and serve.
_MAX_DURATION = f"{MAX_DURATION / 3600:g}h"
_MAX_DURATION_HELP = ("Refuse a file holding more audio than this (e.g. 12h, 90m; a bare number is seconds), with "
                      "one line for that file: a tiny file can declare days of audio.")


#: The tag policy's defaults: ``classify``'s tag options take theirs from here (``genre_map``: none
#: given, the shipped map).
_POLICY: dict[str, Any] = {f.name: None if f.default is MISSING else f.default for f in fields(TagPolicy)}
#: The options named otherwise than their settings' fields (a field is otherwise ``--field-name``).
_OPTIONS = {"count": "--tag-genres", "mode": "--tag-mode", "separator": "--tag-separator", "skip_unsure": "--tag-unsure",
            "parents": "--parent-genres", "own_genre_above": "--track-genre-above", "hop_seconds": "--segment-hop"}


def _option(field: str) -> str:
    """The option that sets a settings field (:class:`~genrify.collection.tagpolicy.TagPolicy`,
    :class:`~genrify.classify.service.ClassifyOptions`)."""
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def _max_duration(text: str) -> float:
    """``--max-duration``'s seconds; a bad value is a usage error (exit 2) before any work."""
    from genrify.audio.decode import parse_duration
    from genrify.errors import ParameterError

    try:
        return parse_duration(text)
    except ParameterError as exc:
        _usage(f"--max-duration: {exc}")

app = typer.Typer(
    name="genrify",
    help="Sort music into genres with deep learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped at 100 columns in the source; markdown mode joins their lines into
    # paragraphs, so that help reads well at any terminal width.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"genrify {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print genrify's version and exit.")] = False,
) -> None:
    """Sort music into genres with deep learning."""


# soft_wrap: a long path stays on one line, so an error is one line whatever the terminal's width.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
# "a (..), b (..), or c (..)." from the architectures' one-line descriptions.
_ARCHS = [f"{name} ({about})" for name, about in ARCHITECTURES.items()]
_ARCH_HELP = ", ".join(_ARCHS[:-1]) + ", or " + _ARCHS[-1] + "."


def _user_errors(func: F) -> F:
    """Turn a GenrifyError into one red line on stderr and the exit status of its kind
    (:func:`genrify.errors.exit_code`: 2 for a bad option value, 1 for any other error)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _WARNED.clear()  # each command says each warning once (one process may run several: tests)
        try:
            return func(*args, **kwargs)
        except GenrifyError as exc:
            if isinstance(exc, ParameterError) and exc.field is not None and not isinstance(exc, UsageError):
                # A settings object refused a value an option gave it: a mistyped option (exit 2),
                # said in the option's name. The one place such an error becomes a usage error.
                exc = UsageError(exc.said_of(_option))
            # _say: a file name in the message is shown readably and never read as Rich markup.
            err.print(f"[bold red]error:[/] {_say(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def _needs(module: str, extra: str, what: str) -> None:
    """``what`` needs an optional package (the core install has no PyTorch, scipy or scikit-learn):
    where it is missing, one line naming the extra that installs it, exit 1, before any work.

    Raises
    ------
    DependencyError
        ``module`` cannot be imported.
    """
    import importlib

    from genrify.errors import DependencyError

    try:
        importlib.import_module(module)
    except ImportError:
        package = {"sklearn": "scikit-learn", "torch": "PyTorch"}.get(module, module)
        raise DependencyError(f"{what} needs {package}, which this install lacks: {install_command(extra)}") from None


def _progress(*, transient: bool = False) -> Any:
    """A progress bar on stderr; ``transient``: erased when done (and not shown where stderr is
    not a terminal, where it could not be erased)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class Bars(Progress):
        def stop(self) -> None:
            if self.tasks:
                return super().stop()
            # Nothing was shown (an error before any work): leave no empty line before the error.
            self.live.transient = True
            self.live.stop()
            return None

    return Bars(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=transient,
        disable=transient and not err.is_terminal,
    )


def _preparing_bars(progress: Any) -> Callable[[str, int, int], None]:
    """``on_prepare(what, done, total)`` for training: a progress bar per thing it prepares (embeddings)."""
    bars: dict[str, Any] = {}

    def on_prepare(what: str, done: int, total: int) -> None:
        if what not in bars:
            bars[what] = progress.add_task(what, total=total)
        progress.update(bars[what], completed=done, total=total)

    return on_prepare


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


@app.command()
@_user_errors
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write OUT/<genre>/<song> into.")],
    genres: Annotated[int, typer.Option(help="Number of genres (1-10), in the order blues, classical, country, disco, hiphop, jazz, metal, pop, reggae, rock.")] = 4,
    genre_names: Annotated[str | None, typer.Option("--genre-names", help="Comma-separated genre names instead of --genres.")] = None,
    per_genre: Annotated[int, typer.Option(help="Songs per genre.")] = 10,
    seconds: Annotated[float, typer.Option(help="Length of each song in seconds.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same songs.")] = 0,
    format: Annotated[str, typer.Option("--format", help="wav, flac, mp3, ogg, or mixed (cycles through them).")] = "wav",
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the files in Hz.")] = SAMPLE_RATE,
    channels: Annotated[int, typer.Option(help="1 (mono) or 2 (stereo).")] = 1,
    jobs: Annotated[int | None, typer.Option(help="Worker processes (default: every core).")] = None,
) -> None:
    """Write procedurally synthesised demo songs, one folder per genre.

    The songs have drums, bass, chords and a lead, with each genre's own tempo, rhythm, swing,
    harmony and timbre, randomised so that no single simple feature separates the genres. They are
    for demos, tests and benchmarks; no real music is needed.
    """
    import time

    _needs("scipy", "train", "genrify synth")  # the synthesiser's filters and FFT
    from genrify.audio.synth import SynthSpec, resolve_genres, song_paths, write_dataset
    from genrify.core.runner import default_jobs

    names = resolve_genres([g.strip() for g in genre_names.split(",") if g.strip()] if genre_names else genres)
    spec = SynthSpec(
        genres=names, per_genre=per_genre, seconds=seconds, seed=seed, fmt=format,
        sample_rate=sample_rate, channels=channels,
    )
    existing = sum(1 for path, _g, _i in song_paths(out_dir, spec) if path.exists())
    total = len(names) * per_genre
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("synthesising", total=total - existing)
        paths = write_dataset(out_dir, spec, jobs=jobs or default_jobs(), on_progress=lambda _p: progress.advance(task))
    wall = time.perf_counter() - started
    out.print(
        f"Wrote {len(paths)} songs ({len(names)} genres x {per_genre}, {seconds:g} s each, {format}) "
        f"to {out_dir} in {wall:.1f} s" + (f"; {existing} were already there" if existing else ""),
        highlight=False,
    )


@contextlib.contextmanager
def _runner(scheduler: str | None, jobs: int | None, *, in_process: bool | None = None) -> Iterator[Runner]:
    """The runner of ``--scheduler``/``--jobs``: a Dask cluster (closed after the run where this
    command started it), or this machine's process pool."""
    from genrify.core.runner import LocalRunner

    if not scheduler:
        yield LocalRunner(jobs, in_process=in_process)
        return
    from genrify.core.distributed import DaskRunner, connect

    with connect(scheduler, n_workers=jobs) as client:
        yield DaskRunner(client)


def _log_to_stderr() -> None:
    """``-v``: genrify's log records (the decoders' notes among them) on stderr, above the progress bar."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("genrify")
    logger.setLevel(logging.DEBUG)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err, show_time=False, show_path=False, markup=False))


@app.command()
@_user_errors
def extract(
    music_dir: Annotated[Path, typer.Argument(help="Library root laid out as MUSIC_DIR/<genre>/<files>.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Feature store folder (created if missing).")],
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes (default: every core).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo every track, even unchanged ones.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Read every stored array whole and redo the damaged ones (NaN where music was); slow on a big store.")] = False,
    sample_rate: Annotated[int | None, typer.Option(help=f"Resample to this rate (default {SAMPLE_RATE}, or the store's).")] = None,
    n_mels: Annotated[int | None, typer.Option(help=f"Mel bands (default {N_MELS}, or the store's).")] = None,
    n_fft: Annotated[int | None, typer.Option(help=f"FFT size (default {N_FFT}, or the store's).")] = None,
    hop_length: Annotated[int | None, typer.Option(help=f"Hop between frames (default {HOP_LENGTH}, or the store's).")] = None,
    show_failed: Annotated[int, typer.Option(help="List at most this many failed files.")] = 20,
    scheduler: Annotated[str | None, typer.Option(help="Extract on a Dask cluster: tcp://HOST:8786 (a running scheduler), a scheduler's JSON file, or 'local' (start a cluster of worker processes on this machine: one per core, or --jobs). Needs Dask (the dask extra).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every path passed over, and show the decoders' notes.")] = False,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Follow symbolic links to folders outside MUSIC_DIR (never one back into it or to a folder above).")] = False,
    max_duration: Annotated[str, typer.Option(help=_MAX_DURATION_HELP)] = _MAX_DURATION,
) -> None:
    """Compute the log-mel features of every song into a feature store.

    Runs on every core, skips songs already stored and unchanged (so an interrupted run resumes
    where it stopped), redoes changed ones and ones whose stored features were deleted, cut short or
    found damaged by `genrify inspect --check` (--verify reads every array to find them itself),
    and lists files that could not be read without stopping.
    """
    from rich.markup import escape

    from genrify.audio.features import FeatureParams
    from genrify.collection.library import display_path, scan
    from genrify.store.extract import extract as run_extract
    from genrify.store.store import FeatureStore

    longest = _max_duration(max_duration)
    if verbose:
        _log_to_stderr()

    def shown(text: str) -> str:  # any file name, readable on one line, never taken for markup
        return escape(display_path(text))

    overrides = {
        k: v
        for k, v in {"sample_rate": sample_rate, "n_mels": n_mels, "n_fft": n_fft, "hop_length": hop_length}.items()
        if v is not None
    }
    params = FeatureParams(**overrides) if overrides else None
    library = scan(music_dir, follow_links=follow_links)
    FeatureStore.create(store, params).close()  # a store made with other parameters fails here, before any work
    counts = library.counts()
    err.print(
        f"{len(library.tracks)} tracks in {len(counts)} genre{'s' if len(counts) != 1 else ''}: "
        + ", ".join(f"{shown(g)} {n}" for g, n in counts.items()),
        highlight=False,
    )
    if len(counts) == 1:  # a folder above the genre folders (MUSIC_DIR/gtzan/<genre>/): said before the work
        (only,) = counts
        _warn(f"one genre folder only ({only}): training needs two or more; if {only} holds the genre folders, "
              f"extract {Path(music_dir) / only} instead")
    # Workers even with --jobs 1: a decoder crash must cost one file, not the run.
    with _runner(scheduler, jobs, in_process=False) as runner, _progress() as progress:
        task = progress.add_task("extracting", total=None)
        summary = run_extract(
            music_dir,
            store,
            params=params,
            runner=runner,
            force=force,
            verify=verify,
            library=library,
            max_duration=longest,
            on_start=lambda n: progress.update(task, total=n),
            on_result=lambda _r: progress.advance(task),
        )
    if summary.done:
        out.print(
            f"[bold]Extracted {summary.done} tracks[/] ({_hours(summary.audio_seconds)} of audio) in "
            f"{summary.wall_seconds:.1f} s, {summary.realtime_factor:.0f}x real time",
            highlight=False,
        )
    else:
        out.print(f"[bold]Nothing new to extract[/] ({summary.wall_seconds:.1f} s)", highlight=False)
    out.print(
        f"unchanged {summary.unchanged} · failed {len(summary.failed)} · flagged {len(summary.flagged)}"
        f" · removed {summary.removed} · stored {summary.stored} of {summary.total} · store {shown(summary.store)}",
        highlight=False,
    )
    problems = library.problems  # broken or looping links, unreadable folders: never silently
    if problems or summary.repaired:
        out.print(
            f"passed over {len(problems)} (broken links, link loops, links to folders, unreadable folders)"
            f" · repaired {len(summary.repaired)} (stored features missing or damaged, redone)",
            highlight=False,
        )
    if verbose:
        for path, reason in problems:
            out.print(f"  [yellow]passed over[/] {shown(path)}: {shown(reason)}", highlight=False)
        for path, reason in summary.repaired:
            out.print(f"  [yellow]repaired[/] {shown(path)}: {reason}", highlight=False)
    elif problems:
        out.print("  (`genrify extract -v` lists them)", highlight=False)
    for path, flags in summary.flagged[:show_failed]:
        out.print(f"  [yellow]flagged[/] {shown(path)}: {', '.join(flags)}", highlight=False, soft_wrap=True)
    for path, reason in summary.failed[:show_failed]:
        out.print(f"  [red]failed[/] {shown(path)}: {shown(reason)}", highlight=False, soft_wrap=True)
    if len(summary.failed) > show_failed:
        out.print(f"  ... and {len(summary.failed) - show_failed} more failed (`genrify inspect {store} --failed`)")
    if summary.stored == 0:
        err.print(f"[bold red]error:[/] {music_dir}: none of its {summary.total} tracks could be extracted", highlight=False)
        raise typer.Exit(1)


@app.command()
@_user_errors
def inspect(
    store: Annotated[Path, typer.Argument(help="Feature store folder.")],
    failed: Annotated[bool, typer.Option("--failed", help="List every failed track with its reason.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Read every stored array whole and verify it (shape, finite values); exit 1 if any is bad.")] = False,
) -> None:
    """Show what a feature store holds: parameters, tracks per genre, failures, damaged arrays.

    Every run checks that each stored array exists and has the size its track needs (cheap);
    --check also reads every array whole and records what it finds in the store's manifest, so
    that `genrify extract` redoes the tracks found damaged.
    """
    from rich.markup import escape
    from rich.table import Table

    from genrify.collection.library import display_path
    from genrify.errors import StoreError
    from genrify.store.store import FeatureStore

    def shown(text: str) -> str:  # any file name, readable on one line, never taken for markup
        return escape(display_path(text))

    redo = f"`genrify extract MUSIC_DIR --store {shown(str(store))}` redoes them"
    with FeatureStore.open(store) as fs:
        done = fs.tracks()
        bad = fs.tracks(status="failed")
        damaged = fs.damaged(done, full=check)
        if check:
            # Values overwritten in place pass extract's quick check: record them for it to redo.
            try:
                fs.record_damaged(damaged, replace=True)
            except StoreError:  # a read-only store: extract must then read every array itself
                redo = f"`genrify extract MUSIC_DIR --store {shown(str(store))} --verify` redoes them"
        table = Table(title=shown(str(store)))
        table.add_column("genre")
        table.add_column("tracks", justify="right")
        table.add_column("artists", justify="right")
        table.add_column("hours", justify="right")
        for genre, n in fs.counts().items():
            rows = [t for t in done if t.genre == genre]
            artists = len({t.artist for t in rows if t.artist})
            table.add_row(shown(genre), str(n), str(artists), f"{sum(t.duration or 0 for t in rows) / 3600:.2f}")
        out.print(table)
        out.print(f"features: {fs.params.to_json()}", highlight=False)
        out.print(f"{len(done)} tracks stored, {len(bad)} failed", highlight=False)
        how = "read whole and verified" if check else "sizes checked; --check reads them whole"
        state = f"{len(damaged)} of {len(done)} missing or damaged" if damaged else f"all {len(done)} sound"
        out.print(f"arrays: {state} ({how})", highlight=False)
        for t, problem in damaged:
            out.print(f"  [red]damaged[/] {shown(t.path)}: {problem}", highlight=False, soft_wrap=True)
        if failed:
            for t in bad:
                out.print(f"  [red]failed[/] {shown(t.path)}: {shown(t.error or '')}", highlight=False, soft_wrap=True)
    if damaged:
        err.print(
            f"[bold red]error:[/] {shown(str(store))}: {len(damaged)} stored arrays are missing or damaged; {redo}",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command()
@_user_errors
def train(
    store: Annotated[Path, typer.Argument(help="Feature store made by `genrify extract`.")],
    model_file: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")],
    arch: Annotated[str, typer.Option(help=_ARCH_HELP)] = TRAIN_DEFAULTS.arch,
    epochs: Annotated[int, typer.Option(help="Most epochs per run (early stopping may end sooner).")] = TRAIN_DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Chunks per batch.")] = TRAIN_DEFAULTS.batch_size,
    runs: Annotated[int, typer.Option(help="Repeat split-train-evaluate this many times with seeds K, K+1, ...")] = 1,
    seed: Annotated[int, typer.Option(help="Seed K of the first run.")] = 0,
    split_file: Annotated[Path | None, typer.Option(help="Fixed splits: a folder with train_*/valid_*/test_*.txt, one of them, or a path<TAB>split file.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd (as in the student project genrify grew from: Nesterov momentum 0.9, inverse-time decay), adam or adamw.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = TRAIN_DEFAULTS.lr,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation loss.")] = TRAIN_DEFAULTS.patience,
    group_by: Annotated[str, typer.Option(help="Split by 'artist' (songs of an artist stay together), 'song', or 'auto' (artist where tags give one).")] = "auto",
    device: Annotated[str, typer.Option(help="auto (a CUDA GPU when there is one), cpu or cuda.")] = "auto",
) -> None:
    """Train a genre model on a feature store, evaluate it on held-out songs, save one model file.

    Songs (and artists, where known) are never split across train, validation and test. Writes
    the model and, beside it, MODEL.report/ with report.json, curves.png and confusion.png.
    """
    _needs("torch", "train", "genrify train")
    import dataclasses

    from rich.table import Table

    from genrify.learn.evaluation import write_report
    from genrify.learn.training import train as run_training
    from genrify.models import modelfile

    # Where the model and its report go is checked before any training: a run of hours must not
    # end by replacing a song, a store's manifest or another program's file (or by being refused).
    _model_destination(model_file, store, split_file)
    if runs < 1:
        _usage(f"--runs must be at least 1, not {runs}")
    # TrainConfig checks every setting as it is made: a bad --arch or --group-by is a usage error
    # (exit 2, naming the option) here, before any work.
    config = dataclasses.replace(
        TRAIN_DEFAULTS, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, optimizer=optimizer, lr=lr,
        patience=patience, group_by=group_by, device=device,
    )
    from genrify.learn import ddp

    progress = _progress()
    progress.disable = not ddp.is_main()  # under torchrun, rank 0 alone shows progress
    with progress:
        # The run's bar is added when the first run starts, not before: a store that cannot be
        # opened or split is then one error line, with no bar drawn above it.
        task = None
        current = {"run": 0}

        def on_run(r: int, split) -> None:
            nonlocal task
            current["run"] = r
            sizes = split.sizes()
            extra = f", {len(split.unmatched)} split-file entries not in the store" if split.unmatched else ""
            if split.alone:  # an untagged song cannot be kept with its artist's other songs
                extra += f" ({split.alone} without an artist tag, each on its own)"
            progress.console.print(
                f"run {r + 1}/{runs}: split by {split.method}: {sizes['train']} train, {sizes['valid']} validation,"
                f" {sizes['test']} test songs{extra}",
                highlight=False,
            )
            # The first run adds the bar; each later run starts it again, empty.
            if task is None:
                task = progress.add_task(f"run {r + 1}/{runs}", total=epochs)
            else:
                progress.reset(task, total=epochs, description=f"run {r + 1}/{runs}")

        def on_epoch(e) -> None:
            progress.update(
                task, advance=1,
                description=f"run {current['run'] + 1}/{runs} · epoch {e.epoch} · loss {e.train_loss:.3f} · "
                f"chunk acc {e.train_accuracy:.3f} · val loss {e.valid_loss:.3f} · val chunk acc {e.valid_accuracy:.3f}",
            )

        result = run_training(store, config, runs=runs, split_file=split_file, on_run=on_run, on_epoch=on_epoch,
                              on_prepare=_preparing_bars(progress), notify=lambda line: progress.console.print(line, highlight=False))
    if not ddp.is_main():  # under torchrun, rank 0 alone writes the model and the report
        return
    destination = _model_destination(model_file, store, split_file)  # again: something may have appeared meanwhile
    if destination.replaces:
        err.print(f"replacing model {_say(destination.path)}", highlight=False)
    summary = result.summary()
    from genrify.core.fsutil import deferred_signals

    # Ctrl-C waits for the model and its report together (a few seconds of plots): never a new
    # model beside the old one's report.
    with deferred_signals():
        modelfile.save(result.model, destination.path, warn=_warn)  # with its ONNX graph: classifies without torch
        report = write_report(model_file, genres=result.model.genres, summary=summary, runs=result.model.info["runs"],
                              extra={"config": config.to_dict(), "kept_run": result.model.info["kept_run"]})
    table = Table(title=f"{arch} on {store}")
    for column in ("run", "seed", "epochs", "best", "chunk acc", "song acc", "vote acc", "macro F1"):
        table.add_column(column, justify="right")
    for i, r in enumerate(result.runs):
        ev = r.evaluation
        table.add_row(str(i + 1), str(r.seed), str(len(r.history)), str(r.best_epoch), f"{ev.chunk_accuracy:.3f}",
                      f"{ev.song_accuracy:.3f}", f"{ev.vote_accuracy:.3f}", f"{ev.macro_f1:.3f}")
    out.print(table)
    several = len(result.runs) > 1  # one run measures no spread: no "± 0.000"

    def spread(key: str) -> str:
        return f" ± {summary[key + '_std']:.3f}" if several else ""

    out.print(
        f"[bold]song accuracy {summary['song_accuracy_mean']:.3f}{spread('song_accuracy')}[/]"
        f" · chunk accuracy {summary['chunk_accuracy_mean']:.3f}{spread('chunk_accuracy')}"
        + (f" over {len(result.runs)} runs (mean ± standard deviation)" if several else " over 1 run"),
        highlight=False,
    )
    out.print(f"model: {model_file} (run {result.model.info['kept_run'] + 1}, lowest validation loss) · report: {report}", highlight=False)


def _model_destination(model_file: Path, store: Path, split_file: Path | None) -> Any:
    """``train --out``: the :class:`genrify.models.modelfile.Destination`, or a usage error (exit 2)
    where writing the model or its report (``MODEL.report/`` beside the name given) would replace
    something that is not genrify's."""
    from genrify.learn.evaluation import check_report_destination
    from genrify.models.modelfile import check_destination

    try:
        destination = check_destination(model_file, store=store, inputs=[split_file] if split_file else [])
        check_report_destination(model_file)
        return destination
    except UsageError as exc:
        _usage(f"--out {exc}")


@app.command()
@_user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model file.")],
    store: Annotated[Path, typer.Argument(help="Feature store to evaluate on.")],
    split_file: Annotated[Path | None, typer.Option(help="Evaluate on the test list of these fixed splits.")] = None,
    all_tracks: Annotated[bool, typer.Option("--all", help="Evaluate on every track of the store (a separate, held-out store).")] = False,
) -> None:
    """Evaluate a model on a store: chunk and song accuracy, per-genre F1, confusion matrix.

    By default the model's own test songs (recorded at training) are used where the store has
    them; --split-file takes a test list; --all takes every track. Writes MODEL.report/evaluation/
    (the latest evaluation); the training report beside it stays.
    """
    _needs("torch", "train", "genrify evaluate")
    from rich.table import Table

    from genrify.learn.evaluation import check_report_destination, evaluate_model, evaluation_dir, write_report

    # Checked before any work: the report it rewrites must be genrify's, and MODEL.report/ above it
    # a folder (not a person's file, which would fail only at the end, nor a link to write through).
    check_report_destination(model, evaluation_dir(model))
    result = evaluate_model(model, store, split_file=split_file, all_tracks=all_tracks)
    ev = result.evaluation
    table = Table(title=f"{model.name} on {result.songs} songs ({result.selection})")
    for column in ("genre", "precision", "recall", "F1", "songs"):
        table.add_column(column, justify="right" if column != "genre" else "left")
    for genre, m in ev.per_genre.items():
        table.add_row(genre, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    out.print(table)
    if result.skipped:
        out.print(f"{result.skipped} tracks skipped (not in the store, or of genres the model does not know)", highlight=False)
    report = write_report(
        model, genres=ev.genres, summary=result.summary(), runs=[result.run_entry()],
        extra={"evaluation": {"store": str(store), "selection": result.selection}}, folder=evaluation_dir(model),
    )
    out.print(
        f"[bold]song accuracy {ev.song_accuracy:.3f}[/] · chunk accuracy {ev.chunk_accuracy:.3f} · "
        f"vote accuracy {ev.vote_accuracy:.3f} · macro F1 {ev.macro_f1:.3f} · report: {report}",
        highlight=False,
    )
    if result.heard:
        err.print(f"[yellow]warning:[/] {result.heard} of these {result.songs} songs are of the model's own store and "
                  "not among its test songs: it was trained or validated on them, so these figures overrate it "
                  "(without --all or --split-file, evaluate takes its test songs only)", highlight=False)


@app.command()
@_user_errors
def info(model: Annotated[Path | None, typer.Argument(help="Model file (made by genrify train or genrify learn); default: the built-in genre model.")] = None) -> None:
    """Show a model's card: what it is, its genres, what it learned from, its measured figures and
    its licence; for a model file, also its architecture, features and training settings.

    With no MODEL: the built-in genre model, the one `genrify classify` uses without --model.
    """
    from rich.table import Table

    from genrify.errors import ModelFileError
    from genrify.models.modelcard import model_card
    from genrify.models.modelfile import read_metadata

    if model is not None and model.is_dir():  # say what it is: "not found" would be untrue (a store, say)
        raise ModelFileError(f"{model}: a folder, not a model file")
    meta = read_metadata(model) if model is not None else None
    card = model_card(meta, name=model.name) if model is not None else model_card(None)
    first, *rest = card.lines()
    out.print(f"[bold]{_say(first)}[/]", highlight=False)
    for line in rest:
        out.print(_say(line), highlight=False)
    if meta is None:
        return
    # What the card leaves out: how the file is built and was trained.
    table = Table(title=_say(str(model)), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("architecture", _say(f"{meta['architecture']} {json.dumps(meta['architecture_config'])}"))
    table.add_row("features", ", ".join(f"{k}={v}" for k, v in meta["features"].items()))
    table.add_row("chunk", f"{meta['chunk_frames']} frames")
    config = meta.get("info", {}).get("config")
    if config:
        keys = ("optimizer", "lr", "batch_size", "epochs", "patience")
        settings = [f"{k}={config[k]}" for k in keys if k in config]
        kept, runs = meta["info"].get("kept_run"), meta["info"].get("runs") or []
        if isinstance(config.get("seed"), int) and isinstance(kept, int) and len(runs) > 1:
            # Run r trains with seed + r: the file holds the kept run's network.
            settings.append(f"seed={config['seed'] + kept} (run {kept + 1} of {len(runs)}, kept)")
        elif "seed" in config:
            settings.append(f"seed={config['seed']}")
        table.add_row("training", ", ".join(settings))
    table.add_row("genrify", _say(str(meta.get("genrify_version"))))
    out.print(table)
    learned = meta.get("info", {}).get("learned")
    if isinstance(learned, dict):  # a head made by `genrify learn`: its honest report, in full
        from genrify.learn.learning import report_lines

        source = meta.get("info", {}).get("learned_from") or {}
        for line in report_lines(learned, dropped=source.get("dropped"), min_songs=source.get("min_songs")):
            out.print(_say(line), highlight=False)


@app.command()
@_user_errors
def export(
    model: Annotated[Path, typer.Argument(help="Model file made by genrify train.")],
    check: Annotated[bool, typer.Option("--check", help="Write nothing: check the graph the file holds against its network.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Export again where the file already holds a graph.")] = False,
) -> None:
    """Store a model file's network as an ONNX graph inside it, so that it classifies without PyTorch.

    Files made by `genrify train` hold their graph already; this converts files made before. The
    network is loaded with PyTorch (from the file's weights, never its code), exported, and its
    answers on random segments checked against the network's (within 1e-4, else nothing is written);
    the file is then rewritten in place with the same weights and metadata, plus the graph.
    """
    from genrify.models import modelfile

    if check and force:
        raise UsageError("--check writes nothing and --force rewrites the graph: give one of them")
    done = modelfile.add_graph(model, force=force, check_only=check)
    shown = _say(str(model))
    if done.action == "kept":
        out.print(f"{shown}: holds its ONNX graph already; nothing written (--force exports it again)", highlight=False)
        return
    size = f"{done.size / 1e6:.1f} MB"
    if done.action == "checked":
        out.print(f"{shown}: its ONNX graph ({size}) answers as the network, within {done.difference:.1g}", highlight=False)
    else:
        out.print(f"{shown}: ONNX graph {done.action} ({size}, within {done.difference:.1g} of the network); "
                  "it classifies without PyTorch now", highlight=False)


@app.command()
@_user_errors
def learn(
    paths: Annotated[list[Path], typer.Argument(help="Your music: folders (searched recursively) and files.")],
    model_out: Annotated[Path, typer.Option("--out", "-o", help="The model file to write (.safetensors); classify --model, serve, tags and beets take it.")],
    labels: Annotated[str, typer.Option(help="Where the genres come from: tags (each file's genre tags; genrify's own guesses never count) or folders (the top folder, MUSIC_DIR/<genre>/...).")] = "tags",
    genre_map: Annotated[Path | None, typer.Option(help="A genre map (TOML): aliases, canonical spellings, a whitelist; default: genrify's.")] = None,
    min_songs: Annotated[int, typer.Option(help="Leave out genres with fewer songs than this.")] = DEFAULT_MIN_SONGS,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Decoding processes (default: one per core).")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse the embeddings of unchanged songs from earlier runs.")] = True,
    cache_file: Annotated[Path | None, typer.Option(help="The embedding cache (default ~/.cache/genrify/embeddings.sqlite).")] = None,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Follow symbolic links to folders outside the folders given.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the files that could not be read, and the learner's steps.")] = False,
    suggest: Annotated[int | None, typer.Option("--suggest", metavar="N", help="Then list the N songs without a genre whose genres would teach the model most (uncertain, and unlike each other), with its current guess: tag them, and learn again.")] = None,
    playlist: Annotated[Path | None, typer.Option(help="With --suggest: also write them as an M3U playlist (replaces only a playlist genrify wrote).")] = None,
) -> None:
    """Learn the genres of your library from the genres it already has, into a model file.

    Each song is embedded by the pretrained taggers on the segments classify samples (cached, so
    learning again embeds only new or changed songs); a genre head is fitted with settings chosen
    by an artist-grouped cross-check, whose figures are printed and stored in the model.
    """
    from rich.markup import escape

    from genrify.collection.genremap import GenreMap
    from genrify.collection.library import display_path, file_identity
    from genrify.learn.embedcache import default_cache_path, open_cache
    from genrify.learn.labels import SOURCES, check_min_songs
    from genrify.learn.learning import learn_library
    from genrify.learn.suggest import check_count

    if labels not in SOURCES:
        _usage(f"--labels: choose {' or '.join(SOURCES)}, not {labels!r}")
    check_min_songs(min_songs)
    if jobs is not None and jobs < 1:
        _usage(f"--jobs must be at least 1, not {jobs}")
    if suggest is not None:
        check_count(suggest)
    # The learner's cross-check and --suggest's clustering; classifying with the model file it writes
    # needs only the core.
    _needs("sklearn", "learn", "genrify learn")
    if playlist is not None:
        from genrify.learn.suggest import check_playlist

        if suggest is None:
            _usage("--playlist goes with --suggest N")
        check_playlist(playlist)  # before an hour of work, not after it
    if cache_file is not None and not cache:
        _usage("--cache-file cannot be used with --no-cache (which keeps no cache at all)")
    mapping = GenreMap.load(genre_map) if genre_map is not None else None
    cache_path = (cache_file or default_cache_path()) if cache else None
    cache_id = file_identity(cache_path) if cache_path is not None else None
    if cache_id is not None and cache_id in {file_identity(p) for p in [*paths, model_out]}:
        _usage(f"--cache-file {display_path(cache_path)}: is one of the inputs (or the model); choose another name")

    def warn(line: str) -> None:
        err.print(f"[yellow]warning:[/] {_say(line)}", highlight=False)

    with open_cache(cache_path, enabled=cache_path is not None, notify=warn) as store, _progress() as progress:
        tasks: dict[str, Any] = {}

        def show(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        def step(line: str) -> None:
            if verbose:
                progress.console.print(f"[dim]{_say(line)}[/]", highlight=False)

        summary = learn_library(paths, model_out, labels=labels, genre_map=mapping, min_songs=min_songs,
                                cache=store, jobs=jobs, follow_links=follow_links, progress=show, notify=step)
        suggested = None
        if suggest is not None and summary.labels.untagged:
            from genrify.learn.suggest import suggest_from_model

            # The untagged songs are embedded once, into the same cache: learning again after
            # tagging some of them embeds nothing new for them (a retagged file changes, though).
            suggested = suggest_from_model(model_out, summary.labels.untagged, suggest, cache=store, jobs=jobs,
                                           progress=lambda done, total: show("embedding songs without a genre", done, total))
    bad = summary.unreadable
    for path, reason in bad if verbose else []:
        err.print(f"[yellow]unreadable[/] {escape(_shown_path(path))}: {escape(reason)}", highlight=False)
    if bad and not verbose:
        err.print(f"{len(bad)} file(s) could not be read and were left out (-v lists them)", highlight=False)
    for path, reason in summary.labels.passed_over if verbose else []:
        err.print(f"[yellow]passed over[/] {escape(_shown_path(path))}: {escape(reason)}", highlight=False)
    if summary.labels.passed_over and not verbose:
        err.print(f"{len(summary.labels.passed_over)} passed over (broken or looping links, links to folders, unreadable "
                  "folders; -v lists them)", highlight=False)
    for line in summary.lines(min_songs):
        out.print(_say(line), highlight=False)
    if suggest is not None:
        _print_suggestions(suggested, playlist, verbose, holding_guesses=summary.labels.ours,
                           folders=labels == "folders")
    import shlex

    model_arg = shlex.quote(display_path(model_out))
    if labels == "folders":
        # Keep mode protects a genre tag, not a folder: the songs it learned from have no tag to keep.
        out.print(_say(f"next: genrify classify SONGS --model {model_arg} answers other songs in these genres; with "
                       "--write-tags, give it songs outside the genre folders (keep mode protects genre tags, not "
                       "folders: a song in them without a genre tag would be tagged too)"), highlight=False)
    elif summary.labels.untagged:
        where = " ".join(shlex.quote(display_path(p)) for p in paths)
        # What --suggest found not music (speech, silence) is never tagged: not counted among those to tag.
        not_music = suggested.not_music if suggested is not None else 0
        n = len(summary.labels.untagged) - not_music
        out.print(_say(f"next: genrify classify {where} --model {model_arg} --write-tags gives "
                       + (f"the {n} songs without a genre one" if n != 1 else "the song without a genre one")
                       + (f" ({not_music} not music left alone)" if not_music else "")
                       + " where its answer is not unsure (--tag-unsure writes those too), and leaves yours alone"),
                  highlight=False)


def _print_suggestions(suggested: Any, playlist: Path | None, verbose: bool, *, holding_guesses: int = 0,
                       folders: bool = False) -> None:
    """``learn --suggest``'s table (path, current guess, probability) and its playlist;
    ``holding_guesses``: songs without a genre of a person's that hold one genrify wrote;
    ``folders``: the genres came from genre folders, so a song is labelled by moving it there."""
    from rich.markup import escape
    from rich.table import Table

    if suggested is None:
        out.print("no song without a genre to suggest: every readable song has one", highlight=False)
        return
    suggestions, failed = suggested.picks, suggested.failed
    for failure in failed if verbose else []:
        err.print(f"[yellow]unreadable[/] {escape(_shown_path(failure.path))}: {escape(failure.reason)}", highlight=False)
    if failed and not verbose:
        err.print(f"{len(failed)} song(s) without a genre could not be read and were left out (-v lists them)", highlight=False)
    table = Table(title=f"{len(suggestions)} songs to tag next (uncertain, and unlike each other)")
    table.add_column("file")
    table.add_column("current guess")
    table.add_column("prob.", justify="right")
    for s in suggestions:  # named as the classify table names files: from the working folder where shorter
        table.add_row(escape(_shown_path(s.path)), _say(s.guess), f"{s.probability:.0%}")
    if suggestions:
        out.print(table)
    if playlist is not None and suggestions:
        from genrify.collection.library import display_path
        from genrify.errors import GenrifyIOError
        from genrify.learn.suggest import write_playlist

        try:
            write_playlist(playlist, suggestions)
        except OSError as exc:
            raise GenrifyIOError(f"{display_path(playlist)}: cannot write the playlist: {exc.strerror or exc}") from None
        out.print(_say(f"playlist: {playlist}"), highlight=False)
    if suggested.expected_accuracy is not None:
        out.print(f"{suggested.expectation()} (its mean confidence on them)", highlight=False)
    elif suggested.not_music and not suggestions:  # every readable one: nothing to suggest, and the table is empty
        out.print(f"the {suggested.not_music} readable song(s) without a genre are not music (speech, silence, a "
                  "tone): none to suggest", highlight=False)
    out.print("move them into their genre's folder, then learn again" if folders
              else "tag them in any tagger, then learn again", highlight=False)
    if holding_guesses:
        # A tagger keeps genrify's GENRIFY field: the same genre typed again still reads as genrify's.
        n = holding_guesses
        out.print(f"note: {n} song{'s' if n != 1 else ''} without a genre of yours {'hold' if n != 1 else 'holds'} "
                  "one genrify wrote; to confirm it as yours, delete the song's GENRIFY field", highlight=False)


@app.command()
@_user_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Working folder for the demo.")] = Path("demo-output"),
    genres: Annotated[int, typer.Option(help="Number of synthetic genres.")] = 4,
    per_genre: Annotated[int, typer.Option(help="Songs per genre (at least --folds).")] = 10,
    seconds: Annotated[float, typer.Option(help="Length of each song in seconds.")] = 12.0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds: every song is tested once, by a head trained without it.")] = 5,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes (default: every core).")] = None,
) -> None:
    """Run the whole pipeline on generated music: synthesise, extract, train, evaluate (about half a minute).

    The model is a head on the pretrained musicnn embeddings (``--arch musicnn-transfer``), which
    learns from a handful of songs per genre; the network of the student project genrify grew from
    (``seed-cnn``) needs dozens (see the README).
    Heads are cross-validated (``--folds``), so the closing figure counts every song, each tested
    by a head that never heard it, and gives its 95 % interval.
    """
    _needs("torch", "train", "genrify demo")
    import dataclasses

    from genrify.learn.demo import cross_validate
    from genrify.learn.evaluation import write_report
    from genrify.models import modelfile

    music = out_dir / "music"
    store = out_dir / "store"
    model = out_dir / "model.safetensors"
    if folds < 3:
        _usage(f"--folds must be at least 3 (a test, a validation and a training fold), not {folds}")
    if per_genre < folds:
        _usage(f"--per-genre must be at least --folds ({folds}): every fold tests every genre")
    _model_destination(model, store, None)  # checked before any work, as train does
    err.print(f"[bold]1/4[/] synthesising {genres} x {per_genre} songs of {seconds:g} s into {music}", highlight=False)
    synth(music, genres=genres, genre_names=None, per_genre=per_genre, seconds=seconds, seed=0, format="mixed",
          sample_rate=SAMPLE_RATE, channels=1, jobs=jobs)
    err.print(f"[bold]2/4[/] extracting features into {store}", highlight=False)
    extract(music, store=store, jobs=jobs, force=False, sample_rate=None, n_mels=None, n_fft=None,
            hop_length=None, show_failed=20)
    err.print(f"[bold]3/4[/] cross-validating musicnn-transfer heads over {folds} folds: each head is trained on"
              f" {folds - 2}/{folds} of the songs, stopped early on 1/{folds} and tested on the other 1/{folds}",
              highlight=False)
    config = dataclasses.replace(TRAIN_DEFAULTS, arch="musicnn-transfer", optimizer="adam", seed=0)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a head this small trains fastest on one thread, and far faster on a busy machine
    try:
        with _progress() as progress:
            task = progress.add_task("fold 1", total=config.epochs)
            current = {"fold": 0}

            def on_fold(k: int, total: int, split: Any) -> None:
                current["fold"] = k
                sizes = split.sizes()
                progress.console.print(f"fold {k + 1}/{total}: {sizes['train']} train, {sizes['valid']} validation,"
                                       f" {sizes['test']} test songs", highlight=False)
                progress.reset(task, total=config.epochs, description=f"fold {k + 1}/{total}")

            def on_epoch(e: Any) -> None:
                # Per 3-s segment (chunk), on the fold's validation songs, which steer early stopping.
                progress.update(task, advance=1, description=f"fold {current['fold'] + 1}/{folds} · epoch {e.epoch} · "
                                f"val loss {e.valid_loss:.3f} · val chunk acc {e.valid_accuracy:.3f}")

            cv = cross_validate(store, out_dir / "folds", config, folds=folds, jobs=jobs, on_fold=on_fold,
                                on_epoch=on_epoch, on_prepare=_preparing_bars(progress),
                                notify=lambda line: progress.console.print(line, highlight=False))
    finally:
        torch.set_num_threads(threads)
    kept = cv.results[cv.kept]
    err.print(f"[bold]4/4[/] saving fold {cv.kept + 1}'s head (lowest validation loss) into {model}", highlight=False)
    destination = _model_destination(model, store, None)
    modelfile.save(kept.model, destination.path, warn=_warn)
    report = write_report(model, genres=cv.genres, summary=cv.summary(), runs=[r.runs[0].summary() for r in cv.results],
                          extra={"config": config.to_dict(), "kept_run": cv.kept,
                                 "cross_validation": {"folds": folds, "fold_files": str(out_dir / "folds")}})
    for k, r in enumerate(cv.results):
        ev = r.runs[0].evaluation
        out.print(f"fold {k + 1}: {int(ev.confusion.trace())}/{len(ev.paths)} test songs named right", highlight=False)
    out.print(
        f"Demo done: {cv.line()} (the progress line's val chunk acc is per 3-s segment of a fold's validation songs;"
        f" this is per song, on test songs). "
        f"Music in {music}, features in {store}, folds in {out_dir / 'folds'}, model {model}, report {report}/",
        highlight=False,
    )

@app.command()
@_user_errors
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively).")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file made by `genrify train` or `genrify learn`; default: the built-in genre model (`genrify info` shows its card).")] = None,
    genres: Annotated[str | None, typer.Option(help="With the built-in model: answer only among these genres, e.g. rock,jazz,hip-hop.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the json/csv/table here instead of stdout.")] = None,
    top_k: Annotated[int, typer.Option(help="Show the K most probable genres (the table: the genre and K-1 runners-up; JSON and CSV: the top K). --tag-genres says how many are tagged.")] = 3,
    timeline: Annotated[bool, typer.Option(help="Include each segment's probabilities and start time.")] = False,
    max_segments: Annotated[int, typer.Option(help="Classify at most N segments of about 3 s per song, spread evenly from start to end (only those are decoded); 0 classifies every segment.")] = DEFAULT_MAX_SEGMENTS,
    segment_hop: Annotated[float | None, typer.Option(help="Seconds between possible segment starts (default: one segment, about 3 s, no overlap); with --max-segments 0, overlapping segments for a finer --timeline.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Decoding processes (default: one per core).")] = None,
    write_tags: Annotated[bool, typer.Option(help="Write the top genre (see --tag-genres) into each file's genre tag.")] = False,
    tag_genres: Annotated[int, typer.Option(help="With --write-tags: write the N most probable genres (multi-valued where the format allows).")] = _POLICY["count"],
    tag_separator: Annotated[str | None, typer.Option(help="Join several genres into one tag value with this separator.")] = _POLICY["separator"],
    tag_mode: Annotated[str, typer.Option(help="With --write-tags: keep (leave files with a genre a person set alone), merge (a person's genres first, then genrify's) or replace.")] = _POLICY["mode"],
    min_probability: Annotated[float, typer.Option(help="With --tag-genres N: write a 2nd..Nth genre only if its probability is at least this.")] = _POLICY["min_probability"],
    tag_unsure: Annotated[bool, typer.Option(help="With --write-tags: also tag answers flagged unsure.")] = not _POLICY["skip_unsure"],
    id3v23: Annotated[bool, typer.Option("--id3v23", help="With --write-tags: write ID3v2.3 tags (several genres joined by '/') for old players, instead of ID3v2.4.")] = _POLICY["id3v23"],
    genre_map: Annotated[Path | None, typer.Option(help="A genre map (TOML: canonical names, aliases, whitelist, parents) used instead of the default one for tags.")] = None,
    parent_genres: Annotated[bool, typer.Option(help="With --write-tags: add each genre's parent genres from the genre map (House -> Electronic).")] = _POLICY["parents"],
    album_mode: Annotated[bool, typer.Option(help="With --write-tags: give every track of an album (album tags, else its folder) the album's genre, from its tracks' pooled probabilities.")] = _POLICY["album_mode"],
    track_genre_above: Annotated[float | None, typer.Option(help="With --album-mode: also write a track's own top genre where it differs from the album's and its probability is more than this.")] = _POLICY["own_genre_above"],
    since: Annotated[str | None, typer.Option(help="Only files added or modified since this date or time (e.g. 2026-11-30 or 2026-11-30T18:00); the rest are skipped.")] = None,
    min_confidence: Annotated[float, typer.Option(help="Tag, organise and list only files whose top probability is at least this.")] = _POLICY["min_confidence"],
    organize: Annotated[Path | None, typer.Option(help="Put each file into DEST/<genre>/ (never overwriting).")] = None,
    mode: Annotated[str, typer.Option(help="How --organize places files: copy, link (a hard link; a symbolic one where a hard link is impossible) or move.")] = "copy",
    playlists: Annotated[Path | None, typer.Option(help="Write one <genre>.m3u8 playlist per genre into this folder.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what --write-tags, --organize and --playlists would change; change nothing.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse results of earlier runs for unchanged files and the same model.")] = True,
    cache_file: Annotated[Path | None, typer.Option(help="The results cache (default ~/.cache/genrify/results.sqlite).")] = None,
    device: Annotated[str, typer.Option(help="Run the model on: auto (a CUDA GPU when there is one), cpu or cuda.")] = "auto",
    scheduler: Annotated[str | None, typer.Option(help="Classify on a Dask cluster: tcp://HOST:8786 (a running scheduler), a scheduler's JSON file, or 'local' (start a cluster of worker processes on this machine: one per core, or --jobs). Needs Dask (the dask extra).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every file and folder passed over (broken or looping links, links to folders, unreadable folders).")] = False,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Follow symbolic links to folders outside the folders given (never one back into them or to a folder above).")] = False,
    max_duration: Annotated[str, typer.Option(help=_MAX_DURATION_HELP)] = _MAX_DURATION,
) -> None:
    """Classify songs and whole libraries; optionally write genre tags, sort files, make playlists.

    Without --model the built-in genre model answers: the pretrained musicnn taggers and a genre
    head learned from real music; `genrify info` shows its card (genres, what it learned from, its
    cross-validated figures, licence).

    Each song is cut into segments of about 3 s; the answer is the mean of the segments'
    probabilities (the share of segments each genre wins, as the student project genrify grew from
    printed it, is in the JSON as votes). A file that cannot be read is reported and the run goes
    on; the exit status is 0 when at least one file was classified.
    """
    from genrify.classify.placing import confident
    from genrify.classify.service import classify_library, require_audio
    from genrify.classify.settings import ClassifySettings
    from genrify.collection.library import find_audio

    # Every option is checked before any work: a usage mistake costs nothing and exits 2. The
    # settings check their own values, said as the option they came from (_user_errors).
    _check_classify_options(format, mode, top_k, playlists)
    tagging = {"count": tag_genres, "separator": tag_separator, "mode": tag_mode, "min_probability": min_probability,
               "skip_unsure": not tag_unsure, "id3v23": id3v23, "genre_map": genre_map, "parents": parent_genres,
               "album_mode": album_mode}
    _only_with_write_tags(write_tags, tagging)
    if cache_file is not None and not cache:
        _usage("--cache-file cannot be used with --no-cache (which keeps no cache at all)")
    settings = ClassifySettings.from_values(
        model=model, genres=genres.split(",") if genres else (), max_segments=max_segments, hop_seconds=segment_hop,
        max_duration=_max_duration(max_duration), jobs=jobs, cache=(cache_file or True) if cache else False,
        **tagging, min_confidence=min_confidence, own_genre_above=track_genre_above)
    since_time = _since(since) if since is not None else None
    torch_device = _device(device)
    found = find_audio(paths, follow_links=follow_links)
    for path, reason in found.passed_over if verbose else []:
        err.print(f"[yellow]passed over[/] {_say(path)}: {_say_plain(reason)}", highlight=False)
    require_audio(found, paths, hint="" if verbose else "; -v lists them")
    _check_destinations(found, paths, settings, output, organize, playlists)
    store = settings.open_cache(_warn)
    try:
        for raw, reason in found.missing:
            err.print(f"[yellow]skipped[/] {_say(raw)}: {_say_plain(reason)}", highlight=False)
        if write_tags:
            _recover_tag_writes(found.files, dry_run)
        # The bar goes when the run ends: the summary line says what it did, and where nothing
        # could be classified the error is the run's only line.
        with _runner(scheduler, jobs) as runner, _progress(transient=True) as progress:
            shower = _show_progress(progress, progress.add_task("classifying", total=len(found.files)))
            # Tags are written as answers arrive (an interrupted run has tagged all it classified);
            # in album mode, as each album's last answer arrives.
            tagger = _tag_listener(settings, store, dry_run, progress.console if verbose else None) if write_tags else None
            run = classify_library(found, settings.ref, options=settings.options, runner=runner, cache=store,
                                   listeners=[shower, *([tagger] if tagger else [])], device=torch_device,
                                   since=since_time, since_whole_folders=settings.policy.album_mode)
        if not run.predictions and run.summary.failed and not run.summary.skipped:
            _nothing_classified(run, shower, settings.ref.name, format, output, top_k, timeline)
        _render_results(run.results, settings.ref.name, format, output, top_k, timeline, [p for p in paths if p.is_dir()])
        chosen = confident(run.results, min_confidence)
        notes: list[str] = _show_tagging(tagger.report, settings.policy, dry_run, verbose) if tagger is not None else []
    finally:
        if store is not None:
            store.close()
    notes += _show_placing(chosen, paths, organize, mode, playlists, dry_run, verbose,
                           answered=run.predictions, min_confidence=min_confidence)
    _finish(run.summary, notes, verbose, tag_figure=tagger is not None and tagger.report.expected_accuracy is not None)


def _check_classify_options(format: str, mode: str, top_k: int, playlists: Path | None) -> None:
    """The checks of ``classify``'s own options (the settings check theirs)."""
    import os

    from genrify.classify import outputs
    from genrify.collection.library import display_path

    if format not in outputs.FORMATS:
        _usage(f"--format: unknown format {format!r}; choose one of {', '.join(outputs.FORMATS)}")
    if mode not in ("copy", "link", "move"):
        _usage(f"--mode: unknown mode {mode!r}; choose copy, link or move")
    if top_k < 1:
        _usage(f"--top-k must be at least 1, not {top_k}")
    if playlists is not None and os.path.lexists(playlists) and not playlists.is_dir():
        _usage(f"--playlists {display_path(playlists)}: exists and is not a folder; give a folder for the playlists")


def _only_with_write_tags(write_tags: bool, given: dict[str, Any]) -> None:
    """Tag options given without ``--write-tags`` are a usage mistake (they would do nothing)."""
    changed = [_option(name) for name, value in given.items() if value != _POLICY[name]]
    if not write_tags and changed:
        _usage(f"{', '.join(changed)}: only with --write-tags")


def _device(name: str) -> Any:
    """``--device``'s device for classification (``None``: the CPU, no torch imported; a GPU: a torch
    device); a bad name is a usage error."""
    from genrify.core.devices import compute_device
    from genrify.errors import ParameterError

    try:
        return compute_device(name, notify=lambda line: err.print(_say_plain(line), highlight=False))
    except ParameterError as exc:
        _usage(f"--device: {exc}")


def _check_destinations(found: Any, paths: list[Path], settings: Any, output: Path | None, organize: Path | None,
                        playlists: Path | None) -> None:
    """Refuse, before any work, an output, results cache, folder or playlist that would replace what
    the run reads (the songs, the model, the cache)."""
    from genrify.classify.modelref import ModelFile
    from genrify.collection.destinations import check_output_file
    from genrify.collection.library import display_path, file_identity
    from genrify.collection.organize import check_destination, check_playlists
    from genrify.errors import OrganizeError

    # Nothing genrify writes may replace a song (or the model, or the cache) it reads: compared by
    # device and inode, so a symbolic or hard link to an input is caught too.
    keep = {file_identity(f): f for f in found.files}
    if isinstance(settings.ref, ModelFile):
        keep[file_identity(settings.ref.path)] = settings.ref.path
    keep.pop(None, None)
    cache_path = settings.cache
    if output is not None:
        try:  # a folder, an input, the model or audio: the rules train --out is held to too
            check_output_file(output, inputs=keep.values())
        except UsageError as exc:
            _usage(f"--output {exc}")
        if cache_path is not None and file_identity(output) is not None and file_identity(output) == file_identity(cache_path):
            _usage(f"--output {display_path(output)}: is the results cache; choose another name")
    if cache_path is not None and file_identity(cache_path) in keep:
        _usage(f"--cache-file {display_path(cache_path)}: is one of the input files (or the model)")
    if organize is not None:
        check_destination(organize, [p for p in paths if p.is_dir()] or [p.parent for p in paths])
    if playlists is not None:
        try:  # the model's genres name every playlist it can write: check them all now, not after the run
            check_playlists(playlists, settings.ref.genres, keep=found.files)
        except OrganizeError as exc:
            _usage(f"--playlists: {exc}")


def _warn(line: str) -> None:
    """Say a warning once: the same line from two places of one run (a journal a dry run would
    finish, found before the run and again at the file) is said the first time only."""
    if line in _WARNED:
        return
    _WARNED.add(line)
    err.print(f"[yellow]warning:[/] {_say(line)}", highlight=False)


_WARNED: set[str] = set()


def _say_plain(text: str) -> str:
    """Text for a Rich console with no Rich markup in it (not read as a file name)."""
    from rich.markup import escape

    return escape(text)


def _recover_tag_writes(files: list[str], dry_run: bool) -> None:
    """A tag write cut short by kill -9 left a file half-written and its complete new version
    beside it: put it back before the file is read."""
    from genrify.collection.tags import recover_interrupted_writes

    for line in recover_interrupted_writes({Path(f).parent for f in files}, dry_run=dry_run):
        _warn(line)


def _show_progress(progress: Any, task: Any) -> Any:
    """A listener that advances the bar and says each failure on a line of its own as it comes,
    but holds the first back until another file has its outcome: where the only file given cannot
    be read, its failure is said once, as the run's error (:func:`_nothing_classified`)."""
    from genrify.classify.predict import Failure
    from genrify.classify.listener import Listener

    class ShowProgress(Listener):
        def __init__(self) -> None:
            self.held: Failure | None = None
            self.outcomes = 0

        def show(self, failure: Failure) -> None:
            # The path as the table shows it: relative to the working folder where that is shorter.
            progress.console.print(f"[red]failed[/] {_say(_shown_path(str(failure.path)))}: {_say(failure.error)}",
                                   highlight=False)

        def flush(self) -> None:
            if self.held is not None:
                self.show(self.held)
                self.held = None

        def on_result(self, result: Any, cached: bool) -> None:
            self.outcomes += 1
            if self.outcomes > 1:
                self.flush()
            if isinstance(result, Failure):
                if self.outcomes == 1:
                    self.held = result
                else:
                    self.show(result)
            progress.advance(task)

    return ShowProgress()


def _nothing_classified(run: Any, shower: Any, model_name: str, format: str, output: Path | None, top_k: int,
                        timeline: bool) -> NoReturn:
    """Nothing classified: no table of failures under a "0 songs" title (JSON and CSV are still
    written, for programs), each failure said once, and one error line; exit 1."""
    from rich.markup import escape

    if format != "table":
        _render_results(run.results, model_name, format, output, top_k, timeline, [])
    if shower.held is not None and len(run.results) == 1:
        what = f"{escape(_shown_path(shower.held.path))}: {_say(shower.held.error)}"
    else:
        shower.flush()
        what = f"none of the {len(run.results)} files could be classified"
    err.print(f"[bold red]error:[/] {what}", highlight=False)
    raise typer.Exit(1)


def _tag_change_line(change: Any, dry_run: bool) -> str | None:
    """The line that says one file's tag change (``None`` where nothing is said of it)."""
    from rich.markup import escape

    from genrify.classify import outputs

    # A value may be megabytes long: each is cut to a readable length, its size noted.
    before = _say(outputs.shown_values(change.old) or "(none)")
    shown = escape(_shown_path(str(change.path)))
    if change.status == "kept":
        return f"kept {shown}: {before} (set by a person; --tag-mode merge or replace to change it)"
    if change.status == "written":
        return f"{'would tag' if dry_run else 'tagged'} {shown}: {before} -> {_say(outputs.shown_values(change.new))}"
    return None


def _tag_listener(settings: Any, store: Any, dry_run: bool, console: Any) -> Any:
    """The run's tag writer; with a ``console`` (``-v``), each change of a real run is said there
    as it is written, above the progress bar (a dry run's are said once it is over)."""
    from genrify.classify.tagging import FileSink, TagListener

    def say(change: Any) -> None:
        line = _tag_change_line(change, dry_run)
        if line is not None:
            console.print(line, highlight=False)

    listener = TagListener(settings.policy, FileSink(store), model=settings.ref.name, dry_run=dry_run,
                           on_change=say if console is not None and not dry_run else None)
    if not dry_run:  # Ctrl-C: what the files hold by then
        _SAID_IF_INTERRUPTED.append(lambda: f"before the interruption, {listener.report.line}")
    return listener


def _show_tagging(tagged: Any, policy: Any, dry_run: bool, verbose: bool = False) -> list[str]:
    """Say what the tag writer did (failures, warnings; a dry run's changes, said once the run is
    over: a real run's are said as written, with -v); its notes."""
    from collections import Counter

    from rich.markup import escape

    for path, why in tagged.failures:
        err.print(f"[red]tag not written[/] {escape(_shown_path(path))}: {_say(why)}", highlight=False)
    for path, why in tagged.untaggable if verbose else []:
        err.print(f"[yellow]no genre tag[/] {escape(_shown_path(path))}: {_say(why)}", highlight=False)
    if tagged.untaggable and not verbose:  # the same on every run: one line, not one per file
        kinds = Counter(Path(path).suffix.lower().lstrip(".") or "no extension" for path, _ in tagged.untaggable)
        err.print(f"{len(tagged.untaggable)} file(s) in formats without genre tags genrify writes left as they are "
                  f"({', '.join(f'{k} {n}' for k, n in kinds.most_common())}; -v lists them)", highlight=False)
    for note in (note for change in tagged.changes for note in change.notes):
        _warn(note)
    for line in (_tag_change_line(c, dry_run) for c in (tagged.changes if dry_run else [])):
        if line is not None:
            err.print(line, highlight=False)
    albums = [f"{tagged.albums} album{'s' if tagged.albums != 1 else ''}"] if policy.album_mode else []
    return [*albums, tagged.line]


def _show_placing(chosen: list[Any], paths: list[Path], organize: Path | None, mode: str, playlists: Path | None,
                  dry_run: bool, verbose: bool, *, answered: Sequence[Any] = (), min_confidence: float = 0.0) -> list[str]:
    """Sort the files into folders and write the playlists, as asked; say what happened; the notes.
    ``answered``, ``min_confidence``: every answer and the confidence asked for, to say what
    :func:`~genrify.classify.placing.confident` left out of ``chosen``."""
    from rich.markup import escape

    from genrify.classify.placing import organize_results, playlist_results

    notes: list[str] = []
    below = sum(not p.confidence >= min_confidence for p in answered)
    not_music = sum(p.not_music is not None and p.confidence >= min_confidence for p in answered)
    other = sum(p.other_genre and p.not_music is None and p.confidence >= min_confidence for p in answered)
    if organize or playlists:
        notes += [f"{below} below confidence {min_confidence:g} not placed"] if min_confidence > 0 else []
        notes += [f"{not_music} not music not placed"] if not_music else []
        notes += [f"{other} of other genres not placed"] if other else []
    placed: dict[str, str] = {}
    if organize is not None:
        moved = organize_results(chosen, organize, mode=mode, sources=[p for p in paths if p.is_dir()],
                                 dry_run=dry_run)
        for m in moved.moves:
            if not m.ok:
                err.print(f"[red]not placed[/] {_say(m.source)}: {_say(m.detail)}", highlight=False)
            elif m.status == "planned":
                err.print(f"would {mode} {_say(m.source)} -> {_say(m.target)}", highlight=False)
        placed = moved.placed
        notes.append(moved.line)
    if playlists is not None:
        listed = playlist_results(chosen, playlists, placed=placed, dry_run=dry_run)
        for own, instead in listed.sidestepped:  # always said: the user may look for it under its usual name
            err.print(f"kept {_say(own)}: not written by genrify; {'would write' if dry_run else 'wrote'} "
                      f"its playlist as {_say(instead.name)}", highlight=False)
        for path, why in listed.failed:
            err.print(f"[red]playlist not written[/] {_say(path)}: {_say(why)}", highlight=False)
        for path, why in listed.left_out if verbose else []:
            err.print(f"[yellow]left out of its playlist[/] {_say(path)}: {escape(why)}", highlight=False)
        notes.append(listed.summary(left_out_hint="" if verbose else "; -v lists them"))
    return notes


def _finish(summary: Any, notes: list[str], verbose: bool, *, tag_figure: bool = False) -> None:
    """The run's summary line; exit 1 where nothing was classified (and not because all was skipped).
    With ``tag_figure`` (the tag note says how many of the files written to expect right), the
    summary does not say it of every answer too."""
    from dataclasses import replace

    from rich.markup import escape

    summary = replace(summary, expected_accuracy=None) if tag_figure else summary
    if summary.passed_over:
        notes.append(f"{summary.passed_over} passed over (broken or looping links, unreadable folders"
                     + (")" if verbose else "; -v lists them)"))
    err.print(escape(summary.line + "".join(f" · {n}" for n in notes)), highlight=False)
    if not summary.classified and not (summary.skipped and not summary.failed):
        raise typer.Exit(1)


def _since(text: str) -> float:
    """``--since``: an ISO date or date and time (local time unless it names a zone), as a POSIX time."""
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        _usage(f"--since {text!r}: not a date; give e.g. 2026-11-30 or 2026-11-30T18:00")
    try:
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        # A local time within a day of year 1 or 9999 has no local offset the C library can find:
        # take the offset of the nearest day it can (no file is that old or new either way).
        edge = datetime(1, 1, 2) if when.year < 5000 else datetime(9999, 12, 30)
        offset = edge.timestamp() - (edge - datetime(1970, 1, 1)).total_seconds()
        return (when - datetime(1970, 1, 1)).total_seconds() + offset


def _render_results(results: list[Any], model_name: str, format: str, output: Path | None, top_k: int,
                    timeline: bool, bases: list[Path]) -> None:
    """Print (or write to ``output``) the results as a table, JSON or CSV."""
    import io

    from rich.cells import cell_len
    from rich.markup import escape
    from rich.table import Table

    from genrify.classify import outputs
    from genrify.classify.predict import Failure, Prediction
    from genrify.collection.library import display_path

    if format != "table":
        text = outputs.render(results, format, top_k=top_k, timeline=timeline)
        if output is not None:
            outputs.write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        return
    good = [r for r in results if isinstance(r, Prediction)]
    console = Console(file=io.StringIO(), width=200, soft_wrap=True) if output is not None else out
    # A row stays one line where it can: the file column is sized to what the other columns
    # leave (at most two fifths of the width) and the path is shortened in the middle, keeping
    # the file name; on a narrow terminal segments and duration go, and an unsure answer is
    # marked " ?" (explained under the table) rather than "? (why)" (JSON and CSV keep all).
    def mark(r: Prediction, wide: bool) -> str:
        # Why the answer is unsure, as JSON and CSV say it (a near tie, not music: noise, ...).
        if not r.low_confidence:
            return ""
        if not wide:
            return " ?"
        why = f"not music: {r.not_music}" if r.not_music else r.unsure_reason
        return f"? ({why})" if why else "?"

    def widths(wide: bool) -> tuple[int, int]:  # the genre column's, and the file column's at most
        genre = max((len(r.genre) + len(mark(r, wide)) for r in good), default=5)
        others = (genre + 3) + (5 + 3) + (20 + 3 if top_k > 1 else 0) + (2 * (8 + 3) if wide else 0) + 1
        return genre, max(16, min(console.width * 2 // 5, console.width - others - 3))

    # Wide where the reasons beside the genres still leave the file names their room (up to 30
    # cells); else the reasons go under the table, as on a narrow terminal.
    longest = max((cell_len(_shown_path(r.path, bases)) for r in results), default=4)
    wide = console.width >= 100 and widths(True)[1] >= min(30, longest)
    genre_width, path_width = widths(wide)
    # Where the reasons do not fit beside the genre, the caption names those that occur (80 columns at most).
    reasons = list(dict.fromkeys("not music" if r.not_music else str(r.unsure_reason) for r in good if r.low_confidence))
    caption = None
    if not wide and reasons:
        caption = "? unsure: " + ", ".join(reasons)
        caption += " (JSON and CSV say which)" if len(reasons) > 1 and len(caption) <= 55 else ""
    songs = f"{len(good)} song{'' if len(good) == 1 else 's'}"
    table = Table(title=escape(f"{songs} · model {display_path(model_name)}"), caption=caption)
    shown_paths = {r.path: _shown_path(r.path, bases, width=path_width) for r in results}
    # The file name is what a reader looks for: the top-genre list gives way first, to whatever
    # width the other columns leave (Rich never shrinks a column that does not wrap).
    file_width = min(path_width, max((cell_len(v) for v in shown_paths.values()), default=4))
    top_width = console.width - (file_width + 3) - (genre_width + 3) - (5 + 3) - (2 * (8 + 3) if wide else 0) - 4
    table.add_column("file", no_wrap=True, max_width=path_width, overflow="ellipsis", min_width=file_width)
    table.add_column("genre", no_wrap=True, min_width=genre_width)
    table.add_column("prob.", justify="right", no_wrap=True, min_width=5)
    # The first of the top K is already the genre and its probability: the column shows the rest.
    runners_up = top_k > 1
    if runners_up:
        table.add_column("runners-up", no_wrap=True, overflow="ellipsis", max_width=max(10, top_width))
    if wide:
        table.add_column("segments", justify="right")
        table.add_column("duration", justify="right")
    for r in results:
        shown = escape(shown_paths[r.path])
        if isinstance(r, Failure):
            table.add_row(shown, "[red]error[/]", "", *([_say(r.error)] if runners_up else []),
                          *(["", ""] if wide else []))
        else:
            # Genres under half a percent add width, not information.
            others = ", ".join(f"{g} {p:.0%}" for g, p in r.top(top_k)[1:] if p >= 0.005)
            genre = f"{escape(r.genre)}[yellow]{escape(mark(r, wide))}[/]" if r.low_confidence else escape(r.genre)
            table.add_row(shown, genre, f"{r.confidence:.0%}", *([escape(others)] if runners_up else []),
                          *([str(r.segments), f"{r.duration:.0f} s"] if wide else []))
    console.print(table)
    if output is not None:
        outputs.write_text_atomic(output, console.file.getvalue())  # type: ignore[attr-defined]


@app.command()
@_user_errors
def tags(
    files: Annotated[list[Path], typer.Argument(help="Audio files.")],
    tagger: Annotated[str, typer.Option(help="Comma-separated taggers: MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg.")] = "MSD_musicnn,MTT_musicnn",
    top: Annotated[int, typer.Option(help="Show the N most probable tags of each tagger (all 50 by default).")] = 50,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    max_segments: Annotated[int, typer.Option(help="Tag at most N patches of 3 s per song, spread evenly (only those are decoded); 0 tags every patch.")] = DEFAULT_MAX_SEGMENTS,
) -> None:
    """Show the pretrained musicnn taggers' 50-tag output for songs (mean over 3 s patches).

    Both taggers read the same decoded patches; songs shorter than one patch are repeated to fill
    it and marked short.
    """
    from rich.markup import escape
    from rich.table import Table

    from genrify.collection.library import display_path
    from genrify.classify.musicnn_tags import tag_song

    if format not in ("table", "json"):
        _usage(f"--format: unknown format {format!r}; choose table or json")
    if top < 1:
        _usage(f"--top must be at least 1, not {top}")
    if max_segments < 0:
        _usage(f"--max-segments must be 0 (every patch) or more, not {max_segments}")
    taggers = [_tagger(name.strip()) for name in tagger.split(",") if name.strip()]
    results: list[dict[str, Any]] = []
    failed = 0
    with _progress() as progress:
        task = progress.add_task("tagging", total=len(files))
        for path in files:
            try:
                # Paths as display_path shows them: valid UTF-8 whatever the name's bytes.
                entry: dict[str, Any] = {"path": display_path(path)}
                tagged, song = tag_song(taggers, path, max_segments=max_segments)
                entry.update(segments=int(song.segments.shape[0]), short=song.short)
                for t in taggers:
                    entry[t.name] = {tag: round(p, 6) for tag, p in tagged[t.name].top(top)}
                try:
                    json.dumps(entry, allow_nan=False)
                except ValueError:  # a NaN is no answer: an error of this file, never invalid JSON
                    raise GenrifyError(f"{display_path(path)}: the tagger gave non-finite probabilities") from None
            except GenrifyError as exc:
                entry = {"path": display_path(path), "error": display_path(str(exc))}
                failed += 1
                progress.console.print(f"[red]failed[/] {_say(str(exc))}", highlight=False)
            results.append(entry)
            progress.advance(task)
    if format == "json":
        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        for entry in results:
            if "error" in entry:
                continue
            table = Table(title=escape(_shown_path(entry["path"])) + (" (short: repeated to fill one patch)" if entry["short"] else ""))
            for t in taggers:
                table.add_column(t.name)
                table.add_column("p", justify="right")
            columns = [list(entry[t.name].items()) for t in taggers]
            for i in range(max(len(c) for c in columns)):
                row: list[str] = []
                for c in columns:
                    row += [escape(c[i][0]), f"{c[i][1]:.3f}"] if i < len(c) else ["", ""]
                table.add_row(*row)
            out.print(table)
    err.print(f"[bold]{len(files) - failed} tagged[/], {failed} failed", highlight=False)
    if failed == len(files):
        raise typer.Exit(1)


def _tagger(name: str) -> Any:
    """A pretrained tagger for ``genrify tags``: on ONNX Runtime where its graph ships (no torch),
    else its torch network (the VGG taggers; one line naming the extra where torch is missing)."""
    from genrify.models.taggers import load_onnx

    tagger = load_onnx(name)
    if tagger is None:
        _needs("torch", "train", f"the {name} tagger")
        from genrify.models.musicnn import load_tagger

        tagger = load_tagger(name)
    return tagger


def _usage(message: str) -> NoReturn:
    """A usage mistake (a bad option value): one line on stderr, exit status 2, before any work.

    Raises
    ------
    UsageError
        Always; :func:`_user_errors` prints it and exits with its status.
    """
    raise UsageError(message)


def _say(text: object) -> str:
    """A file name or a message quoting one, ready for a Rich console: readable (see
    :func:`genrify.collection.library.display_path`) and with no Rich markup in it."""
    from rich.markup import escape

    from genrify.collection.library import display_path

    return escape(display_path(str(text)))


def _shown_path(path: str | None, bases: list[Path] | None = None, *, width: int | None = None) -> str:
    """A path for tables: the shortest of itself, relative to the working folder, or relative to
    the input folder it was found in; readable (:func:`genrify.collection.library.display_path`); cut in the
    middle with "…" to ``width`` cells, keeping more of the end, where the file name is."""
    import os

    from rich.cells import cell_len

    from genrify.collection.library import display_path

    if path is None:
        return ""
    candidates = [path]
    for base in [None, *(bases or [])]:
        try:
            rel = os.path.relpath(path, base) if base is not None else os.path.relpath(path)
        except ValueError:  # another drive
            continue
        if not rel.startswith(".."):
            candidates.append(rel)
    shown = display_path(min(candidates, key=len))
    if width is None or cell_len(shown) <= width:
        return shown
    keep = max(width - 1, 2)
    head, tail = shown[: keep // 3], shown[len(shown) - (keep - keep // 3):]
    while cell_len(head) + 1 + cell_len(tail) > width and (head or tail):  # wide characters
        head, tail = (head[:-1], tail) if len(head) * 2 > len(tail) else (head, tail[1:])
    return f"{head}…{tail}"


@app.command()
@_user_errors
def serve(
    models: Annotated[list[Path] | None, typer.Argument(help="Model files to offer; the first is the default. None: the built-in model.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest song accepted, in MB.")] = 100,
    workers: Annotated[int | None, typer.Option(help="Songs classified at once (default: one per core, at most 4).")] = None,
    builtin: Annotated[bool, typer.Option(help="Also offer the built-in pretrained genre model.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds a client may stay silent while sending a request or an upload before it is dropped.")] = 30,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", metavar="NAME",
        help="A host name the server answers to (repeatable; '*': any). Without it, a server on 127.0.0.1 or "
             "localhost answers only to localhost, 127.0.0.1 and [::1] (no web page can reach it through a "
             "rebound DNS name), and one on another address answers to any name.")] = None,
    uploads_per_client: Annotated[int | None, typer.Option(
        help="Uploads one client address may be sending at once (default 4; 0: no limit, e.g. behind a "
             "reverse proxy, where every client has the proxy's address).")] = None,
    max_duration: Annotated[str, typer.Option(help=_MAX_DURATION_HELP)] = _MAX_DURATION,
) -> None:
    """Serve a web page (and a REST API) for trying models: drop songs, see genres, timeline, spectrogram."""
    from genrify.errors import ParameterError
    from genrify.web import ModelEntry
    from genrify.web import serve as run_server

    longest = _max_duration(max_duration)
    if not builtin and not models:
        raise ParameterError("--no-builtin leaves no model to serve: name one or more model files (genrify train makes them)")
    extra = []
    if builtin:
        extra.append(ModelEntry.builtin())
    per_client = {} if uploads_per_client is None else {"uploads_per_client": uploads_per_client or None}
    run_server(models or [], host=host, port=port, max_upload_mb=max_upload_mb, workers=workers, extra_models=extra,
               request_timeout=timeout, allowed_hosts=allowed_host or (), **per_client, max_duration=longest,
               echo=lambda line: err.print(line, highlight=False))


@app.command()
def version() -> None:
    """Print genrify's version."""
    out.print(f"genrify {__version__}")


def main() -> None:
    """Entry point of the ``genrify`` console script."""
    _SAID_IF_INTERRUPTED.clear()  # one run's: a caller running main again in one process starts afresh
    try:
        app()
    except KeyboardInterrupt:
        _exit_interrupted()
    except SystemExit as exc:
        if exc.code == 130:  # Typer turns Ctrl-C into a silent exit 130: say what it means
            _exit_interrupted()
        raise


def _exit_interrupted() -> NoReturn:
    """Say what the interrupted run had done, and exit 130. Its own clean-up ran on the way here
    (with-blocks, finally clauses: caches closed, temporaries gone). The process pool's workers are
    stopped first: a second Ctrl-C during the pool's shutdown leaves them waiting for work forever,
    and the interpreter's exit would wait for them."""
    import multiprocessing

    for line in (said() for said in _SAID_IF_INTERRUPTED):
        err.print(_say(line), highlight=False)
    err.print(INTERRUPTED)
    for worker in multiprocessing.active_children():
        worker.terminate()
    sys.exit(130)


#: What a command had done when Ctrl-C stopped it, said by :func:`main` before :data:`INTERRUPTED`
#: (the tags written so far).
_SAID_IF_INTERRUPTED: list[Callable[[], str]] = []


#: What Ctrl-C ends with: every command keeps the work it finished (stored features, cached answers
#: and embeddings, tags written, a model only once whole), and a run started again reuses it.
INTERRUPTED = "interrupted: what was already finished is kept"


if __name__ == "__main__":  # pragma: no cover
    main()
