"""The ``genrify`` command: a thin layer over the library API.

Every command validates through the library (one error type, :class:`~genrify.errors.GenrifyError`),
prints one clear line and exits 1 on bad input, shows a progress bar on long work (on stderr), and
ends with a short summary (on stdout). Heavy modules are imported inside the commands so that
``genrify --help`` answers at once.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from genrify import __version__
from genrify.errors import GenrifyError
from genrify.config import TRAIN_DEFAULTS

app = typer.Typer(
    name="genrify",
    help="Sort music into genres with deep learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: a long path stays on one line, so an error is one line whatever the terminal's width.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(func: F) -> F:
    """Turn a GenrifyError into one red line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GenrifyError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _progress():  # noqa: ANN202 - rich types stay an implementation detail
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


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
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the files in Hz.")] = 22050,
    channels: Annotated[int, typer.Option(help="1 (mono) or 2 (stereo).")] = 1,
    jobs: Annotated[int | None, typer.Option(help="Worker processes (default: every core).")] = None,
) -> None:
    """Write procedurally synthesised demo songs, one folder per genre.

    The songs have drums, bass, chords and a lead, with each genre's own tempo, rhythm, swing,
    harmony and timbre, randomised so that no single simple feature separates the genres. They are
    for demos, tests and benchmarks; no real music is needed.
    """
    import time

    from genrify.extract import default_jobs
    from genrify.synth import SynthSpec, resolve_genres, song_paths, write_dataset

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


@app.command()
@_user_errors
def extract(
    music_dir: Annotated[Path, typer.Argument(help="Library root laid out as MUSIC_DIR/<genre>/<files>.")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Feature store folder (created if missing).")],
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes (default: every core).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo every track, even unchanged ones.")] = False,
    sample_rate: Annotated[int | None, typer.Option(help="Resample to this rate (default 22050, or the store's).")] = None,
    n_mels: Annotated[int | None, typer.Option(help="Mel bands (default 128, or the store's).")] = None,
    n_fft: Annotated[int | None, typer.Option(help="FFT size (default 2048, or the store's).")] = None,
    hop_length: Annotated[int | None, typer.Option(help="Hop between frames (default 512, or the store's).")] = None,
    show_failed: Annotated[int, typer.Option(help="List at most this many failed files.")] = 20,
) -> None:
    """Compute the log-mel features of every song into a feature store.

    Runs on every core, skips songs already stored and unchanged (so an interrupted run resumes
    where it stopped), redoes changed ones, and lists files that could not be read without stopping.
    """
    from genrify.extract import extract as run_extract
    from genrify.features import FeatureParams
    from genrify.library import scan
    from genrify.store import FeatureStore

    overrides = {
        k: v
        for k, v in {"sample_rate": sample_rate, "n_mels": n_mels, "n_fft": n_fft, "hop_length": hop_length}.items()
        if v is not None
    }
    params = FeatureParams(**overrides) if overrides else None
    library = scan(music_dir)
    FeatureStore.create(store, params).close()  # a store made with other parameters fails here, before any work
    counts = library.counts()
    err.print(
        f"{len(library.tracks)} tracks in {len(counts)} genres: "
        + ", ".join(f"{g} {n}" for g, n in counts.items()),
        highlight=False,
    )
    with _progress() as progress:
        task = progress.add_task("extracting", total=None)
        summary = run_extract(
            music_dir,
            store,
            params=params,
            jobs=jobs,
            force=force,
            library=library,
            in_process=False,  # even with --jobs 1: a decoder crash must cost one file, not the run
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
        f" · removed {summary.removed} · stored {summary.stored} of {summary.total} · store {summary.store}",
        highlight=False,
    )
    for path, flags in summary.flagged[:show_failed]:
        out.print(f"  [yellow]flagged[/] {path}: {', '.join(flags)}", highlight=False, soft_wrap=True)
    for path, reason in summary.failed[:show_failed]:
        out.print(f"  [red]failed[/] {path}: {reason}", highlight=False, soft_wrap=True)
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
) -> None:
    """Show what a feature store holds: parameters, tracks per genre, failures."""
    from rich.table import Table

    from genrify.store import FeatureStore

    with FeatureStore.open(store) as fs:
        done = fs.tracks()
        bad = fs.tracks(status="failed")
        table = Table(title=f"{store}")
        table.add_column("genre")
        table.add_column("tracks", justify="right")
        table.add_column("artists", justify="right")
        table.add_column("hours", justify="right")
        for genre, n in fs.counts().items():
            rows = [t for t in done if t.genre == genre]
            artists = len({t.artist for t in rows if t.artist})
            table.add_row(genre, str(n), str(artists), f"{sum(t.duration or 0 for t in rows) / 3600:.2f}")
        out.print(table)
        out.print(f"features: {fs.params.to_json()}", highlight=False)
        out.print(f"{len(done)} tracks stored, {len(bad)} failed", highlight=False)
        if failed:
            for t in bad:
                out.print(f"  [red]failed[/] {t.path}: {t.error}", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def train(
    store: Annotated[Path, typer.Argument(help="Feature store made by `genrify extract`.")],
    model_file: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")],
    arch: Annotated[str, typer.Option(help="Architecture: seed-cnn (the student project's) or short-res (2D residual CNN).")] = "seed-cnn",
    epochs: Annotated[int, typer.Option(help="Most epochs per run (early stopping may end sooner).")] = TRAIN_DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Chunks per batch.")] = TRAIN_DEFAULTS.batch_size,
    runs: Annotated[int, typer.Option(help="Repeat split-train-evaluate this many times with seeds K, K+1, ...")] = 1,
    seed: Annotated[int, typer.Option(help="Seed K of the first run.")] = 0,
    split_file: Annotated[Path | None, typer.Option(help="Fixed splits: a folder with train_*/valid_*/test_*.txt, one of them, or a path<TAB>split file.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd (the seed's: Nesterov momentum 0.9, inverse-time decay), adam or adamw.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = TRAIN_DEFAULTS.lr,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation loss.")] = TRAIN_DEFAULTS.patience,
    group_by: Annotated[str, typer.Option(help="Split by 'artist' (songs of an artist stay together), 'song', or 'auto' (artist where tags give one).")] = "auto",
) -> None:
    """Train a genre model on a feature store, evaluate it on held-out songs, save one model file.

    Songs (and artists, where known) are never split across train, validation and test. Writes
    the model and, beside it, MODEL.report/ with report.json, curves.png and confusion.png.
    """
    import dataclasses

    from rich.table import Table

    from genrify import modelfile
    from genrify.evaluation import write_report
    from genrify.training import train as run_training

    config = dataclasses.replace(
        TRAIN_DEFAULTS, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, optimizer=optimizer, lr=lr,
        patience=patience, group_by=group_by,
    )
    with _progress() as progress:
        task = progress.add_task("run 1", total=epochs)
        current = {"run": 0}

        def on_run(r: int, split) -> None:  # noqa: ANN001
            current["run"] = r
            sizes = split.sizes()
            extra = f", {len(split.unmatched)} split-file entries not in the store" if split.unmatched else ""
            progress.console.print(
                f"run {r + 1}/{runs}: split by {split.method}: {sizes['train']} train, {sizes['valid']} validation,"
                f" {sizes['test']} test songs{extra}",
                highlight=False,
            )
            progress.reset(task, total=epochs, description=f"run {r + 1}/{runs}")

        def on_epoch(e) -> None:  # noqa: ANN001
            progress.update(
                task, advance=1,
                description=f"run {current['run'] + 1}/{runs} · epoch {e.epoch} · loss {e.train_loss:.3f} · "
                f"acc {e.train_accuracy:.3f} · val loss {e.valid_loss:.3f} · val acc {e.valid_accuracy:.3f}",
            )

        result = run_training(store, config, runs=runs, split_file=split_file, on_run=on_run, on_epoch=on_epoch)
    modelfile.save(result.model, model_file)
    summary = result.summary()
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
    out.print(
        f"[bold]song accuracy {summary['song_accuracy_mean']:.3f} ± {summary['song_accuracy_std']:.3f}[/]"
        f" · chunk accuracy {summary['chunk_accuracy_mean']:.3f} ± {summary['chunk_accuracy_std']:.3f}"
        f" over {len(result.runs)} run(s)",
        highlight=False,
    )
    out.print(f"model: {model_file} (run {result.model.info['kept_run'] + 1}, lowest validation loss) · report: {report}", highlight=False)


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
    them; --split-file takes a test list; --all takes every track. Rewrites MODEL.report/.
    """
    from rich.table import Table

    from genrify.evaluation import evaluate_model, write_report

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
        extra={"evaluation": {"store": str(store), "selection": result.selection}},
    )
    out.print(
        f"[bold]song accuracy {ev.song_accuracy:.3f}[/] · chunk accuracy {ev.chunk_accuracy:.3f} · "
        f"vote accuracy {ev.vote_accuracy:.3f} · macro F1 {ev.macro_f1:.3f} · report: {report}",
        highlight=False,
    )


@app.command()
@_user_errors
def info(model: Annotated[Path, typer.Argument(help="Model file.")]) -> None:
    """Show what a model file holds: genres, features, architecture, training figures."""
    from rich.table import Table

    from genrify.modelfile import read_metadata

    meta = read_metadata(model)
    table = Table(title=str(model), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("genres", ", ".join(meta["genres"]))
    table.add_row("architecture", f"{meta['architecture']} {json.dumps(meta['architecture_config'])}")
    table.add_row("features", ", ".join(f"{k}={v}" for k, v in meta["features"].items()))
    table.add_row("chunk", f"{meta['chunk_frames']} frames")
    summary = meta.get("info", {}).get("summary")
    if summary:
        table.add_row(
            "test figures",
            f"song accuracy {summary['song_accuracy_mean']:.3f} ± {summary['song_accuracy_std']:.3f}, "
            f"chunk accuracy {summary['chunk_accuracy_mean']:.3f} ± {summary['chunk_accuracy_std']:.3f} "
            f"over {summary['runs']} run(s)",
        )
    config = meta.get("info", {}).get("config")
    if config:
        table.add_row("training", ", ".join(f"{k}={config[k]}" for k in ("optimizer", "lr", "batch_size", "epochs", "patience", "seed")))
    table.add_row("genrify", str(meta.get("genrify_version")))
    out.print(table)


@app.command()
@_user_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Working folder for the demo.")] = Path("demo-output"),
    genres: Annotated[int, typer.Option(help="Number of synthetic genres.")] = 4,
    per_genre: Annotated[int, typer.Option(help="Songs per genre.")] = 12,
    seconds: Annotated[float, typer.Option(help="Length of each song in seconds.")] = 20.0,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes (default: every core).")] = None,
) -> None:
    """Run the whole pipeline on generated music: synthesise, extract, train, evaluate."""
    music = out_dir / "music"
    store = out_dir / "store"
    model = out_dir / "model.safetensors"
    err.print(f"[bold]1/4[/] synthesising {genres} x {per_genre} songs into {music}", highlight=False)
    synth(music, genres=genres, genre_names=None, per_genre=per_genre, seconds=seconds, seed=0, format="mixed",
          sample_rate=22050, channels=1, jobs=jobs)
    err.print(f"[bold]2/4[/] extracting features into {store}", highlight=False)
    extract(music, store=store, jobs=jobs, force=False, sample_rate=None, n_mels=None, n_fft=None,
            hop_length=None, show_failed=20)
    err.print(f"[bold]3/4[/] training seed-cnn into {model}", highlight=False)
    train(store, model_file=model, arch="seed-cnn", epochs=TRAIN_DEFAULTS.epochs, batch_size=TRAIN_DEFAULTS.batch_size,
          runs=1, seed=0, split_file=None, optimizer="sgd", lr=TRAIN_DEFAULTS.lr, patience=TRAIN_DEFAULTS.patience,
          group_by="auto")
    err.print(f"[bold]4/4[/] evaluating {model} on its test songs", highlight=False)
    evaluate(model, store, split_file=None, all_tracks=False)
    out.print(
        f"Demo done: music in {music}, features in {store}, model {model}, report {model}.report/",
        highlight=False,
    )


@app.command()
def version() -> None:
    """Print genrify's version."""
    out.print(f"genrify {__version__}")


def main() -> None:
    """Entry point of the ``genrify`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
