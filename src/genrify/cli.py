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
from genrify.config import TRAIN_DEFAULTS
from genrify.errors import GenrifyError

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


def _progress():
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
    scheduler: Annotated[str | None, typer.Option(help="Extract on a Dask cluster: tcp://HOST:8786, a scheduler file, or 'local' (needs genrify[dask]).")] = None,
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
    import contextlib

    if scheduler:
        from genrify.distributed import connect

        cluster = connect(scheduler, n_workers=jobs)
    else:
        cluster = contextlib.nullcontext()
    with cluster as client, _progress() as progress:
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
            client=client,
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
    arch: Annotated[str, typer.Option(help="seed-cnn (the student project's), short-res (2D residual CNN), timbre-temporal (musicnn-style), or musicnn-transfer (a head on pretrained musicnn embeddings: good with few songs).")] = "seed-cnn",
    epochs: Annotated[int, typer.Option(help="Most epochs per run (early stopping may end sooner).")] = TRAIN_DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(help="Chunks per batch.")] = TRAIN_DEFAULTS.batch_size,
    runs: Annotated[int, typer.Option(help="Repeat split-train-evaluate this many times with seeds K, K+1, ...")] = 1,
    seed: Annotated[int, typer.Option(help="Seed K of the first run.")] = 0,
    split_file: Annotated[Path | None, typer.Option(help="Fixed splits: a folder with train_*/valid_*/test_*.txt, one of them, or a path<TAB>split file.")] = None,
    optimizer: Annotated[str, typer.Option(help="sgd (the seed's: Nesterov momentum 0.9, inverse-time decay), adam or adamw.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = TRAIN_DEFAULTS.lr,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation loss.")] = TRAIN_DEFAULTS.patience,
    group_by: Annotated[str, typer.Option(help="Split by 'artist' (songs of an artist stay together), 'song', or 'auto' (artist where tags give one).")] = "auto",
    device: Annotated[str, typer.Option(help="auto (a CUDA GPU when there is one), cpu or cuda.")] = "auto",
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
        patience=patience, group_by=group_by, device=device,
    )
    from genrify import ddp

    progress = _progress()
    progress.disable = not ddp.is_main()  # under torchrun, rank 0 alone shows progress
    with progress:
        task = progress.add_task("run 1", total=epochs)
        current = {"run": 0}

        def on_run(r: int, split) -> None:
            current["run"] = r
            sizes = split.sizes()
            extra = f", {len(split.unmatched)} split-file entries not in the store" if split.unmatched else ""
            progress.console.print(
                f"run {r + 1}/{runs}: split by {split.method}: {sizes['train']} train, {sizes['valid']} validation,"
                f" {sizes['test']} test songs{extra}",
                highlight=False,
            )
            progress.reset(task, total=epochs, description=f"run {r + 1}/{runs}")

        def on_epoch(e) -> None:
            progress.update(
                task, advance=1,
                description=f"run {current['run'] + 1}/{runs} · epoch {e.epoch} · loss {e.train_loss:.3f} · "
                f"acc {e.train_accuracy:.3f} · val loss {e.valid_loss:.3f} · val acc {e.valid_accuracy:.3f}",
            )

        if arch == "musicnn-transfer":
            from genrify.transfer import train_transfer

            if ddp.world_size() > 1:
                from genrify.errors import ParameterError

                raise ParameterError("--arch musicnn-transfer trains in one process (a small head on cached embeddings); run it without torchrun")

            embed = progress.add_task("embedding (once per track)", total=None)
            result = train_transfer(store, config, runs=runs, split_file=split_file, on_run=on_run, on_epoch=on_epoch,
                                    on_embed=lambda done, total: progress.update(embed, completed=done, total=total))
        else:
            result = run_training(store, config, runs=runs, split_file=split_file, on_run=on_run, on_epoch=on_epoch,
                                  notify=lambda line: progress.console.print(line, highlight=False))
    if not ddp.is_main():  # under torchrun, rank 0 alone writes the model and the report
        return
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
@_user_errors
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Audio files and folders (searched recursively).")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file made by `genrify train`; default: the built-in pretrained genre model.")] = None,
    genres: Annotated[str | None, typer.Option(help="With the built-in model: answer only among these genres, e.g. rock,jazz,hip-hop.")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the json/csv/table here instead of stdout.")] = None,
    top_k: Annotated[int, typer.Option(help="Show (and tag) the K most probable genres.")] = 3,
    timeline: Annotated[bool, typer.Option(help="Include each segment's probabilities and start time.")] = False,
    max_segments: Annotated[int | None, typer.Option(help="Classify at most N segments per song, spread evenly (faster on long songs).")] = None,
    segment_hop: Annotated[float | None, typer.Option(help="Seconds between segment starts (default: one segment, about 3 s, no overlap).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Decoding processes (default: one per core).")] = None,
    write_tags: Annotated[bool, typer.Option(help="Write the top genre (see --tag-genres) into each file's genre tag.")] = False,
    tag_genres: Annotated[int, typer.Option(help="With --write-tags: write the N most probable genres (multi-valued where the format allows).")] = 1,
    tag_separator: Annotated[str | None, typer.Option(help="Join several genres into one tag value with this separator.")] = None,
    min_confidence: Annotated[float, typer.Option(help="Tag, organise and list only files whose top probability is at least this.")] = 0.0,
    organize: Annotated[Path | None, typer.Option(help="Put each file into DEST/<genre>/ (never overwriting).")] = None,
    mode: Annotated[str, typer.Option(help="How --organize places files: copy, link or move.")] = "copy",
    playlists: Annotated[Path | None, typer.Option(help="Write one <genre>.m3u8 playlist per genre into this folder.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what --write-tags, --organize and --playlists would change; change nothing.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse results of earlier runs for unchanged files and the same model.")] = True,
    cache_file: Annotated[Path | None, typer.Option(help="The results cache (default ~/.cache/genrify/results.sqlite).")] = None,
    device: Annotated[str, typer.Option(help="Run the model on: auto (a CUDA GPU when there is one), cpu or cuda.")] = "auto",
    scheduler: Annotated[str | None, typer.Option(help="Classify on a Dask cluster: tcp://HOST:8786, a scheduler file, or 'local' (needs genrify[dask]).")] = None,
) -> None:
    """Classify songs and whole libraries; optionally write genre tags, sort files, make playlists.

    Each song is cut into segments of about 3 s; the answer is the mean of the segments'
    probabilities (the vote shares, as the seed printed them, are in the JSON). A file that
    cannot be read is reported and the run goes on; the exit status is 0 when at least one file
    was classified.
    """
    import os
    import time

    from rich.table import Table

    from genrify import modelfile, outputs, predict
    from genrify.errors import ParameterError
    from genrify.library import find_audio
    from genrify.results import ResultCache, default_cache_path, file_digest

    if format not in outputs.FORMATS:
        raise ParameterError(f"unknown format {format!r}; choose one of {', '.join(outputs.FORMATS)}")
    if mode not in ("copy", "link", "move"):
        raise ParameterError(f"unknown mode {mode!r}; choose copy, link or move")
    if top_k < 1 or tag_genres < 1:
        raise ParameterError("--top-k and --tag-genres must be at least 1")
    if not 0.0 <= min_confidence <= 1.0:
        raise ParameterError(f"--min-confidence must be between 0 and 1, not {min_confidence}")
    if max_segments is not None and max_segments < 1:
        raise ParameterError(f"--max-segments must be at least 1, not {max_segments}")
    if segment_hop is not None and not segment_hop > 0:
        raise ParameterError(f"--segment-hop must be positive, not {segment_hop}")
    if output is not None and not (output.parent.is_dir() and os.access(output.parent, os.W_OK)) or (
        output is not None and output.is_dir()
    ):
        raise ParameterError(f"{output}: cannot write the output file there")
    if organize is not None:
        from genrify.organize import check_destination

        check_destination(organize, [p for p in paths if p.is_dir()] or [p.parent for p in paths])
    started = time.perf_counter()
    if model is None:
        from genrify.models.builtin import load_builtin

        loaded: Any = load_builtin(genres.split(",") if genres else None)
        model_name, model_key = loaded.name, f"builtin:{loaded.name}:{__version__}:{','.join(loaded.genres)}"
    else:
        if genres:
            raise ParameterError("--genres chooses among the built-in model's genres; a trained model answers with its own")
        loaded = modelfile.load(model)
        model_name, model_key = model.name, file_digest(model)
    from genrify.devices import resolve_device

    loaded.network.to(resolve_device(device, notify=lambda line: err.print(line, highlight=False)))
    files, missing = find_audio(paths)
    for raw, reason in missing:
        err.print(f"[yellow]skipped[/] {raw}: {reason}", highlight=False)
    if not files:
        raise ParameterError(f"no audio files in {', '.join(str(p) for p in paths)}")
    store = None
    if cache:
        store = ResultCache(cache_file or default_cache_path(), model_key,
                            {"hop": segment_hop, "max_segments": max_segments})
    from_cache = 0
    import contextlib

    if scheduler:
        from genrify.distributed import connect

        cluster = connect(scheduler, n_workers=jobs)
    else:
        cluster = contextlib.nullcontext()
    with cluster as client, _progress() as progress:
        task = progress.add_task("classifying", total=len(files))

        def on_result(result: Any, cached: bool) -> None:
            nonlocal from_cache
            from_cache += cached
            if isinstance(result, predict.Failure):
                progress.console.print(f"[red]failed[/] {result.path}: {result.error}", highlight=False)
            progress.advance(task)

        try:
            results = predict.classify_files(files, loaded, cache=store, jobs=jobs, hop_seconds=segment_hop,
                                             max_segments=max_segments, on_result=on_result,
                                             client=client, model_path=model)
        except BaseException:
            if store is not None:
                store.close()
            raise
    results += [predict.Failure(raw, reason) for raw, reason in missing]
    good = [r for r in results if isinstance(r, predict.Prediction)]
    failed = [r for r in results if isinstance(r, predict.Failure)]

    if format == "table":
        table = Table(title=f"{len(good)} songs · model {model_name}")
        table.add_column("file", overflow="fold", ratio=3)
        table.add_column("genre")
        table.add_column("prob.", justify="right")
        table.add_column(f"top {top_k}", ratio=2)
        table.add_column("segments", justify="right")
        table.add_column("duration", justify="right")
        for r in results:
            shown = _shown_path(r.path)
            if isinstance(r, predict.Failure):
                table.add_row(shown, "[red]error[/]", "", r.error, "", "")
            else:
                tops = ", ".join(f"{g} {p:.0%}" for g, p in r.top(top_k))
                genre = f"{r.genre} [yellow](unsure)[/]" if r.low_confidence else r.genre
                table.add_row(shown, genre, f"{r.confidence:.2f}", tops, str(r.segments), f"{r.duration:.0f} s")
        if output is not None:
            import io

            buffer = io.StringIO()
            Console(file=buffer, width=200, soft_wrap=True).print(table)
            outputs.write_text_atomic(output, buffer.getvalue())
        else:
            out.print(table)
    else:
        text = outputs.render(results, format, top_k=top_k, timeline=timeline)
        if output is not None:
            outputs.write_text_atomic(output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    confident = [r for r in good if r.confidence >= min_confidence]
    notes: list[str] = []
    if min_confidence > 0 and (write_tags or organize or playlists):
        notes.append(f"{len(good) - len(confident)} below confidence {min_confidence:g} left alone")
    try:
        if write_tags:
            notes.append(_write_tags(confident, tag_genres, tag_separator, dry_run, store))
    finally:
        if store is not None:
            store.close()
    placed: dict[str, str] = {}
    if organize is not None:
        from genrify.organize import organize as place

        moves = place({r.path: r.genre for r in confident}, organize, mode=mode,  # type: ignore[misc]
                      sources=[p for p in paths if p.is_dir()], dry_run=dry_run)
        for m in moves:
            if not m.ok:
                err.print(f"[red]not placed[/] {m.source}: {m.detail}", highlight=False)
            elif m.status == "planned":
                err.print(f"would {mode} {m.source} -> {m.target}", highlight=False)
            if m.status in ("done", "skipped"):
                placed[str(m.source)] = str(m.target)
        done = sum(m.status == "done" for m in moves)
        verb = "would place" if dry_run else "placed"
        notes.append(f"{verb} {sum(m.status == 'planned' for m in moves) if dry_run else done} files in {organize}"
                     f" ({sum(not m.ok for m in moves)} failed)")
    if playlists is not None:
        from genrify.organize import write_playlists

        if dry_run:
            notes.append(f"would write {len({r.genre for r in confident})} playlists in {playlists}")
        else:
            lists = write_playlists({placed.get(r.path, r.path): r.genre for r in confident}, playlists,  # type: ignore[misc]
                                    durations={placed.get(r.path, r.path): r.duration for r in confident})  # type: ignore[misc]
            notes.append(f"{len(lists)} playlists in {playlists}")
    counts: dict[str, int] = {}
    for r in good:
        counts[r.genre] = counts.get(r.genre, 0) + 1
    spread = ", ".join(f"{g} {n}" for g, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
    err.print(
        f"[bold]{len(good)} classified[/] ({from_cache} from cache), {len(failed)} failed"
        f" in {time.perf_counter() - started:.1f} s" + (f" · {spread}" if spread else "")
        + "".join(f" · {n}" for n in notes),
        highlight=False,
    )
    if not good:
        raise typer.Exit(1)


@app.command()
@_user_errors
def tags(
    files: Annotated[list[Path], typer.Argument(help="Audio files.")],
    tagger: Annotated[str, typer.Option(help="Comma-separated taggers: MSD_musicnn, MTT_musicnn, MSD_vgg, MTT_vgg.")] = "MSD_musicnn,MTT_musicnn",
    top: Annotated[int, typer.Option(help="Show the N most probable tags of each tagger (all 50 by default).")] = 50,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Show the pretrained musicnn taggers' 50-tag output for songs (mean over 3 s patches)."""
    from rich.table import Table

    from genrify.errors import ParameterError
    from genrify.models.musicnn import load_tagger

    if format not in ("table", "json"):
        raise ParameterError(f"unknown format {format!r}; choose table or json")
    taggers = [load_tagger(name.strip()) for name in tagger.split(",") if name.strip()]
    results: list[dict[str, Any]] = []
    failed = 0
    with _progress() as progress:
        task = progress.add_task("tagging", total=len(files))
        for path in files:
            try:
                entry: dict[str, Any] = {"path": str(path)}
                for t in taggers:
                    entry[t.name] = {tag: round(p, 6) for tag, p in t.tag_file(path).top(top)}
            except GenrifyError as exc:
                entry = {"path": str(path), "error": str(exc)}
                failed += 1
                progress.console.print(f"[red]failed[/] {exc}", highlight=False)
            results.append(entry)
            progress.advance(task)
    if format == "json":
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        for entry in results:
            if "error" in entry:
                continue
            table = Table(title=_shown_path(entry["path"]))
            for t in taggers:
                table.add_column(t.name)
                table.add_column("p", justify="right")
            columns = [list(entry[t.name].items()) for t in taggers]
            for i in range(max(len(c) for c in columns)):
                row: list[str] = []
                for c in columns:
                    row += [c[i][0], f"{c[i][1]:.3f}"] if i < len(c) else ["", ""]
                table.add_row(*row)
            out.print(table)
    err.print(f"[bold]{len(files) - failed} tagged[/], {failed} failed", highlight=False)
    if failed == len(files):
        raise typer.Exit(1)


def _shown_path(path: str) -> str:
    """A path relative to the working folder where that is shorter, for tables."""
    import os

    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return rel if not rel.startswith("..") and len(rel) < len(path) else path


def _write_tags(results: list[Any], k: int, separator: str | None, dry_run: bool, cache: Any) -> str:
    from genrify.errors import GenrifyError
    from genrify.tags import write_genre

    changed = failed = 0
    for r in results:
        genres = [g for g, _ in r.top(k)]
        try:
            change = write_genre(r.path, genres, separator=separator, dry_run=dry_run)
        except GenrifyError as exc:
            failed += 1
            err.print(f"[red]tag not written[/] {exc}", highlight=False)
            continue
        if change.changed:
            changed += 1
            if dry_run:
                err.print(f"would tag {r.path}: {'; '.join(change.old) or '(none)'} -> {'; '.join(change.new)}", highlight=False)
            elif cache is not None:  # the audio is unchanged: the answer stays valid for the new mtime
                cache.put(r.path, r.to_dict(timeline=True))
    verb = "would change" if dry_run else "changed"
    return f"genre tags: {verb} {changed}, {len(results) - changed - failed} already right, {failed} failed"


@app.command()
@_user_errors
def serve(
    models: Annotated[list[Path] | None, typer.Argument(help="Model files to offer; the first is the default. None: the built-in model.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest song accepted, in MB.")] = 100,
    workers: Annotated[int | None, typer.Option(help="Songs classified at once (default: one per core, at most 4).")] = None,
    builtin: Annotated[bool, typer.Option(help="Also offer the built-in pretrained genre model.")] = True,
) -> None:
    """Serve a web page (and a REST API) for trying models: drop songs, see genres, timeline, spectrogram."""
    from genrify.web import ModelEntry
    from genrify.web import serve as run_server

    extra = []
    if builtin or not models:
        from genrify.models.builtin import load_builtin

        extra.append(ModelEntry.from_model(
            "built-in (musicnn)", load_builtin(),
            description="genres from the pretrained musicnn taggers, no training needed",
        ))
    run_server(models or [], host=host, port=port, max_upload_mb=max_upload_mb, workers=workers, extra_models=extra,
               echo=lambda line: err.print(line, highlight=False))


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
