"""Metrics, confusion matrices, and the report written beside a model.

Accuracy is given at chunk level and at song level. A song's answer is the mean of its chunks'
probabilities (soft vote); the seed's vote shares (the fraction of chunks won by each genre) are
reported too. Per-genre precision, recall and F1 and the confusion matrix are song level, computed
with scikit-learn. ``MODEL.report/`` holds ``report.json``, ``curves.png`` and ``confusion.png``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrify.core.fsutil import atomic_path, write_text_atomic
from genrify.learn.data import ChunkDataset


@dataclass
class Evaluation:
    """Figures of one model on one set of songs."""

    genres: list[str]
    chunk_accuracy: float
    song_accuracy: float
    vote_accuracy: float
    #: genre -> precision, recall, f1, support (songs)
    per_genre: dict[str, dict[str, float]]
    macro_f1: float
    #: song-level counts, rows true genre, columns predicted
    confusion: np.ndarray
    paths: list[str]
    song_true: np.ndarray
    song_probabilities: np.ndarray  #: (songs, genres), mean of chunk probabilities

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "songs": len(self.paths),
            "chunk_accuracy": self.chunk_accuracy,
            "song_accuracy": self.song_accuracy,
            "vote_accuracy": self.vote_accuracy,
            "macro_f1": self.macro_f1,
            "per_genre": self.per_genre,
            "confusion": self.confusion.tolist(),
        }


@torch.inference_mode()
def chunk_probabilities(network: torch.nn.Module, dataset: ChunkDataset, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities of every chunk of a dataset, ``(chunks, genres)``."""
    from genrify.core.devices import autocast, module_device
    from genrify.learn.data import Batches

    network.eval()
    device = module_device(network)
    out = []
    for x, _y, _t in Batches(dataset, batch_size, shuffle=False):
        with autocast(device):
            logits = network(x.to(device, non_blocking=True))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(dataset.genres)), dtype=np.float32)


def evaluate_dataset(network: torch.nn.Module, dataset: ChunkDataset, genres: Sequence[str]) -> Evaluation:
    """Evaluate a network on every chunk of a dataset, and on its songs."""
    probs = chunk_probabilities(network, dataset)
    return evaluate_probabilities(probs, dataset.track_ids, dataset.track_labels, dataset.paths, genres)


def evaluate_probabilities(
    probs: np.ndarray,
    track_ids: np.ndarray,
    track_labels: np.ndarray,
    paths: Sequence[str],
    genres: Sequence[str],
) -> Evaluation:
    """Chunk-, song- and vote-level figures from chunk probabilities.

    Parameters
    ----------
    probs
        ``(chunks, genres)`` probabilities.
    track_ids
        Song index of each chunk.
    track_labels
        True genre index of each song.
    paths
        Song paths, by song index.
    genres
        Genre names, by index.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    n_songs, n_genres = len(paths), len(genres)
    chunk_true = track_labels[track_ids]
    chunk_pred = probs.argmax(axis=1)
    sums = np.zeros((n_songs, n_genres))
    np.add.at(sums, track_ids, probs)
    counts = np.bincount(track_ids, minlength=n_songs)[:, None]
    song_probs = sums / np.maximum(counts, 1)
    votes = np.zeros((n_songs, n_genres))
    np.add.at(votes, (track_ids, chunk_pred), 1.0)
    song_pred = song_probs.argmax(axis=1)
    vote_pred = votes.argmax(axis=1)
    labels = list(range(n_genres))
    precision, recall, f1, support = precision_recall_fscore_support(
        track_labels, song_pred, labels=labels, zero_division=0
    )
    per_genre = {
        g: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, g in enumerate(genres)
    }
    present = support > 0
    return Evaluation(
        genres=list(genres),
        chunk_accuracy=float(accuracy_score(chunk_true, chunk_pred)),
        song_accuracy=float(accuracy_score(track_labels, song_pred)),
        vote_accuracy=float(accuracy_score(track_labels, vote_pred)),
        per_genre=per_genre,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        confusion=confusion_matrix(track_labels, song_pred, labels=labels),
        paths=list(paths),
        song_true=np.asarray(track_labels),
        song_probabilities=song_probs,
    )


def report_dir(model_path: str | Path) -> Path:
    """``MODEL.report/`` beside a model file."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".report")


def evaluation_dir(model_path: str | Path) -> Path:
    """``MODEL.report/evaluation/``: where ``genrify evaluate`` writes its report (the latest
    evaluation), beside the training report, which it leaves as it is."""
    return report_dir(model_path) / "evaluation"


#: The files :func:`write_report` writes into ``MODEL.report/``; nothing else there is touched.
REPORT_FILES = ("report.json", "curves.png", "confusion.png")


def check_report_dir(folder: str | Path) -> None:
    """Refuse a ``MODEL.report/`` folder whose writing would replace something genrify did not write.

    The folder may be missing, or a folder (not a link) whose ``report.json``, where present, is a
    genrify report and whose :data:`REPORT_FILES` are plain files; the pictures count as genrify's
    only beside its ``report.json``. Other files in it are never touched.

    Raises
    ------
    UsageError
        The folder, or one of the report's files in it, is not genrify's (the message names it).
    """
    from genrify.collection.library import display_path
    from genrify.errors import UsageError

    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    _refuse_unless_folder(folder)
    present = [folder / name for name in REPORT_FILES if os.path.lexists(folder / name)]
    for file in present:
        if file.is_symlink() or not file.is_file():
            raise UsageError(f"{display_path(file)}: exists and is not a file of a genrify report; genrify never replaces it")
    if present and not _is_report(folder / REPORT_FILES[0]):
        raise UsageError(f"{display_path(present[0])}: not part of a genrify report (no genrify report.json in"
                         f" {display_path(folder)}); genrify never replaces what it did not write")


def check_report_destination(model_path: str | Path, folder: str | Path | None = None) -> None:
    """Refuse writing a report of ``model_path`` into ``folder`` where that would replace, or write
    through, something genrify did not write.

    :func:`check_report_dir` for ``folder`` itself; where ``folder`` lies inside ``MODEL.report/``
    (:func:`evaluation_dir`), the folders above it up to ``MODEL.report/`` too: each may be missing or
    a folder, never a file (the report's ``mkdir`` would fail after all the work) nor a link (the
    report would be written wherever it points).

    Parameters
    ----------
    model_path
        The model file the report is of.
    folder
        Where the report goes; default ``MODEL.report/`` (:func:`report_dir`).

    Raises
    ------
    UsageError
        A folder, or one of the report's files, is not genrify's (the message names it).
    """
    top = report_dir(model_path)
    out = Path(folder) if folder is not None else top
    for above in reversed(out.parents):  # outermost first: the message names the first thing wrong
        if above == top or top in above.parents:
            _refuse_unless_folder(above)
    check_report_dir(out)


def _refuse_unless_folder(folder: Path) -> None:
    """Raise :class:`~genrify.errors.UsageError` where ``folder`` exists as anything but a folder
    (a link to one included)."""
    from genrify.collection.library import display_path
    from genrify.errors import UsageError

    if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
        raise UsageError(f"{display_path(folder)}: exists and is not a genrify report folder; genrify writes the"
                         " model's report there and never replaces what it did not write")


def remove_stale_evaluation(model_path: str | Path) -> None:
    """Remove ``MODEL.report/evaluation/`` (:func:`evaluation_dir`) where genrify wrote it: it
    describes the network a new training replaced.

    Only the :data:`REPORT_FILES` that :func:`check_report_dir` counts as genrify's go (plain files,
    beside a genrify ``report.json``), then the folder if nothing else is left in it. A link, a file
    named ``evaluation``, a folder without a genrify ``report.json`` and any other file are left as
    they are: genrify never deletes what it did not write.

    Raises
    ------
    OSError
        A file of the stale report cannot be removed.
    """
    folder = evaluation_dir(model_path)
    report = folder / REPORT_FILES[0]
    if (report_dir(model_path).is_symlink() or folder.is_symlink() or not folder.is_dir() or report.is_symlink()
            or not _is_report(report)):  # through a link: another model's, or not genrify's
        return
    # The pictures before report.json: a removal cut short leaves a report.json, by which the next
    # one still knows the rest as genrify's (pictures alone would count as a person's).
    for name in (*REPORT_FILES[1:], REPORT_FILES[0]):
        file = folder / name
        if not file.is_symlink() and file.is_file():
            file.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # not empty: what is left is not genrify's, and keeps its folder
        pass


def _is_report(file: Path) -> bool:
    """Whether ``file`` is a ``report.json`` that :func:`write_report` wrote."""
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and {"model", "genres", "summary", "runs"} <= report.keys()


def write_report(
    model_path: str | Path,
    *,
    genres: Sequence[str],
    summary: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    folder: str | Path | None = None,
) -> Path:
    """Write ``report.json``, ``curves.png`` (where a run has a training history) and
    ``confusion.png`` beside a model.

    Parameters
    ----------
    model_path
        The model file; the report goes to ``MODEL.report/``.
    genres
        Genre names, in the model's order.
    summary
        Headline figures (means and standard deviations over runs).
    runs
        Per-run figures, each with ``history`` (list of epoch dicts) and ``confusion``.
    extra
        More top-level entries for ``report.json``.
    folder
        Where the report goes; default ``MODEL.report/`` (:func:`report_dir`), a new training's
        report: a ``MODEL.report/evaluation/`` genrify wrote describes the network it replaced, and
        is removed (:func:`remove_stale_evaluation`). ``genrify evaluate`` writes into
        :func:`evaluation_dir`, so that the training report stays.

    Raises
    ------
    UsageError
        The folder, or one above it inside ``MODEL.report/``, holds or is something genrify did not
        write (:func:`check_report_destination`).
    """
    out = Path(folder) if folder is not None else report_dir(model_path)
    # Checked before any work by the commands; here again for every caller.
    check_report_destination(model_path, out)
    if out == report_dir(model_path):
        # Before the new report is written: the model file it describes is already replaced.
        remove_stale_evaluation(model_path)
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": str(Path(model_path).name), "genres": list(genres), "summary": summary, "runs": list(runs)}
    report.update(extra or {})
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    if any(r.get("history") for r in runs):
        _plot_curves(runs, out / "curves.png")
    confusion = np.sum([np.asarray(r["confusion"]) for r in runs], axis=0)
    _plot_confusion(confusion, list(genres), out / "confusion.png", title=f"Song-level confusion ({len(runs)} run(s))")
    return out


def _save_figure(plt: Any, fig: Any, path: Path) -> None:
    """Save a PNG atomically (the temporary name has no ``.png``, so the format is named)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(runs: Sequence[dict[str, Any]], path: Path) -> None:
    plt = _figure()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, run in enumerate(runs):
        history = run.get("history") or []
        if not history:
            continue
        epochs = [h["epoch"] for h in history]
        label = f"run {i + 1}" if len(runs) > 1 else ""
        color = plt.cm.tab10(i % 10)
        ax_acc.plot(epochs, [h["train_accuracy"] for h in history], color=color, linestyle="--", label=f"train {label}".strip())
        ax_acc.plot(epochs, [h["valid_accuracy"] for h in history], color=color, label=f"validation {label}".strip())
        ax_loss.plot(epochs, [h["train_loss"] for h in history], color=color, linestyle="--", label=f"train {label}".strip())
        ax_loss.plot(epochs, [h["valid_loss"] for h in history], color=color, label=f"validation {label}".strip())
        best = run.get("best_epoch")
        if best:
            ax_loss.axvline(best, color=color, alpha=0.3, linewidth=1)
    ax_acc.set(title="Chunk accuracy", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    ax_loss.set(title="Loss (line: best epoch)", xlabel="epoch", ylabel="cross-entropy")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 1.5
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save_figure(plt, fig, path)


def _plot_confusion(confusion: np.ndarray, genres: list[str], path: Path, title: str) -> None:
    plt = _figure()
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)
    size = max(4.5, 0.55 * len(genres) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=110)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right")
    # Each row says how many songs its shares rest on: "1.00" of one song is not "1.00" of forty.
    ax.set_yticks(range(len(genres)), [f"{g} ({int(n)})" for g, n in zip(genres, totals[:, 0], strict=True)])
    ax.set(xlabel="predicted genre", ylabel="true genre (songs)", title=title)
    for i in range(len(genres)):
        for j in range(len(genres)):
            if confusion[i, j]:
                ax.text(j, i, f"{normalised[i, j]:.2f}\n{int(confusion[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if normalised[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true genre's songs")
    fig.tight_layout()
    _save_figure(plt, fig, path)


@dataclass
class ModelEvaluation:
    """:func:`evaluate_model`'s result."""

    evaluation: Evaluation
    selection: str  #: which songs: "model's test songs", "split file test list", "all tracks"
    songs: int
    skipped: int  #: tracks asked for that the store lacks or whose genre the model does not know
    history: list[dict[str, Any]]  #: the kept training run's epochs, for the curves
    #: songs evaluated that the model was trained or validated on (``--all`` or a split file on its
    #: own store): its figures overrate it
    heard: int = 0

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "runs": 1,
            "song_accuracy_mean": ev.song_accuracy,
            "song_accuracy_std": 0.0,
            "chunk_accuracy_mean": ev.chunk_accuracy,
            "chunk_accuracy_std": 0.0,
            "vote_accuracy_mean": ev.vote_accuracy,
            "macro_f1_mean": ev.macro_f1,
        }

    def run_entry(self) -> dict[str, Any]:
        return {"selection": self.selection, **self.evaluation.summary(), "heard": self.heard,
                "history": self.history}


def evaluate_model(
    model_path: str | Path,
    store_dir: str | Path,
    *,
    split_file: str | Path | None = None,
    all_tracks: bool = False,
) -> ModelEvaluation:
    """Evaluate a saved model on the tracks of a feature store.

    Songs: the test list of ``split_file``; else every track with ``all_tracks``; else the model's
    own test songs (recorded at training by their path from the library's folder,
    :func:`genrify.learn.splits.song_keys`) that the store holds. On the model's own store, the
    songs of a split file or ``all_tracks`` that it was trained or validated on are counted
    (:attr:`ModelEvaluation.heard`).

    Raises
    ------
    ModelFileError
        The model cannot be loaded, was made for other feature parameters than the store's, or is
        a genre head made by ``genrify learn`` (see Notes).
    SplitError
        No song to evaluate on.

    Notes
    -----
    A genre head learned by ``genrify learn`` is refused: it learned from a library, not from a
    feature store's training split, so no store holds its held-out songs, and every song it learned
    from would score as if unheard. Its honest figures are the cross-validated report stored in the
    file, which ``genrify info MODEL`` shows.
    """
    from genrify.errors import ModelFileError, SplitError
    from genrify.learn.splits import split_from_file
    from genrify.models import modelfile
    from genrify.models import architecture
    from genrify.store.store import FeatureStore

    if modelfile.read_metadata(model_path).get("head"):  # before the store is opened: nothing to do with it
        raise ModelFileError(
            f"{model_path}: a genre head learned by genrify learn (on the built-in taggers' embeddings) is not "
            f"evaluated on a feature store; its cross-validated report is in `genrify info {model_path}`"
        )
    with FeatureStore.open(store_dir) as store:
        model = modelfile.load(model_path)
        # A model that reads audio at its own feature parameters (a pretrained tagger's head), not
        # the store's features, is evaluated from the songs' audio, through the code that classifies them.
        from_audio = architecture(model.architecture).reads_audio
        if not from_audio:
            model.check_features(store.params, source=f"store {store_dir}")
        tracks = store.tracks()
        if split_file is not None:
            wanted = set(split_from_file(tracks, split_file).test)
            selection = f"test list of {Path(split_file).name}"
        elif all_tracks:
            wanted = {t.path for t in tracks}
            selection = "all tracks"
        else:
            wanted = _test_songs(model_path, model.info, tracks)
            selection = "the model's test songs"
        known = set(model.genres)
        paths = sorted(t.path for t in tracks if t.path in wanted and t.genre in known)
        if not paths:
            raise SplitError(f"{store_dir}: none of the songs to evaluate on ({selection}) is in this store with a genre the model knows")
        if from_audio:
            evaluation = _evaluate_from_audio(model, paths, {t.path: t.genre for t in tracks})
        else:
            dataset = ChunkDataset(store, paths, model.genres, model.normalization, chunk_frames=model.chunk_frames)
            evaluation = evaluate_dataset(model.network, dataset, model.genres)
    skipped = (len(wanted) - len(paths)) if not all_tracks else len(tracks) - len(paths)
    runs = model.info.get("runs") or [{}]
    history = runs[min(int(model.info.get("kept_run", 0)), len(runs) - 1)].get("history", [])
    heard = 0
    if selection != "the model's test songs" and _same_store(model.info.get("store"), store_dir):
        # Its own store: every song of it but its test songs was trained or validated on.
        heard = len(set(paths) - _test_songs(model_path, model.info, tracks, required=False))
    return ModelEvaluation(
        evaluation=evaluation, selection=selection, songs=len(paths), skipped=max(skipped, 0), history=history,
        heard=heard,
    )


def _same_store(recorded: Any, store_dir: str | Path) -> bool:
    """Whether ``store_dir`` is the store a model recorded as its training store."""
    try:
        return isinstance(recorded, str) and os.path.samefile(recorded, store_dir)
    except OSError:
        return False


def _test_songs(model_path: str | Path, info: dict[str, Any], tracks: Sequence[Any], *,
                required: bool = True) -> set[str]:
    """The paths of the tracks that are the model's recorded test songs
    (:func:`genrify.learn.splits.song_keys`; a model from before them recorded ``genre/file name``).

    Raises
    ------
    SplitError
        ``required`` and the model records none, or records them by file name only and the store
        holds several songs of one such name (``Artist/Album/01.mp3`` layouts): the songs trained
        on could not be told from those held out.
    """
    from genrify.errors import SplitError
    from genrify.learn.splits import song_keys

    keys = set(info.get("test_tracks", []))
    if not keys:
        if required:
            raise SplitError(f"{model_path}: records no test songs; pass --split-file or --all")
        return set()
    wanted = {path for path, key in song_keys(tracks).items() if key in keys}
    if wanted:
        return wanted
    by_name = [t.path for t in tracks if f"{t.genre}/{os.path.basename(t.path)}" in keys]
    if len(by_name) > len(keys) and required:
        raise SplitError(f"{model_path}: records its test songs by genre and file name only (an older genrify), and "
                         f"{len(by_name)} songs of this store match its {len(keys)} names, some trained on; "
                         "pass --split-file, or train the model again")
    return set(by_name) if len(by_name) <= len(keys) else set()


def _evaluate_from_audio(model: Any, paths: Sequence[str], genre_of: dict[str, str]) -> Evaluation:
    """Chunk and song figures from classifying the songs' audio files.

    Raises
    ------
    AudioError
        A song's audio can no longer be read.
    """
    from genrify.classify.predict import classify

    probs, ids = [], []
    for i, path in enumerate(paths):
        prediction = classify(path, model, max_segments=0)  # every segment, as evaluation from the store
        probs.append(prediction.segment_probabilities)
        ids.append(np.full(prediction.segments, i))
    labels = np.array([model.genres.index(genre_of[p]) for p in paths])
    return evaluate_probabilities(np.concatenate(probs), np.concatenate(ids), labels, list(paths), model.genres)
