"""A model card for every model: what it is, its genres, what it learned from, its measured figures
and its licence, in one place for ``genrify info``, the web page and ``--help``.

>>> from genrify.models.modelcard import model_card
>>> card = model_card(None)                      # the built-in model (reads only its small genre head)
>>> card.kind, len(card.genres) > 10
('built-in', True)
>>> print("\\n".join(model_card("genres.safetensors").lines()))   # doctest: +SKIP
genres: a seed-cnn network (the student project's) trained by genrify train
...

Three kinds of model, each described from what it carries, never from figures written here:

- **built-in**: the pretrained musicnn taggers and the packaged genre head; the figures are the
  head's cross-validated report (:attr:`genrify.models.builtin.GenreHead.info`).
- **learned**: a head made by ``genrify learn`` from a library; the figures are its
  cross-validated report (:class:`genrify.learn.learner.LearnReport`, stored in the file).
- **trained**: a network made by ``genrify train``; the figures are its test figures over its
  runs (the model file's ``info.summary``) and, trained over several runs, the test figures of the
  run whose network the file holds (``info.runs[info.kept_run]``) beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrify.models.modelfile import learned_report

__all__ = ["ModelCard", "model_card"]

#: The kinds of model a card describes.
KINDS = ("built-in", "learned", "trained")


@dataclass(frozen=True)
class ModelCard:
    """What a person needs to know about a model before trusting its answers.

    Attributes
    ----------
    name
        The model's name (the built-in model's, or its file's).
    kind
        ``built-in``, ``learned`` (``genrify learn``) or ``trained`` (``genrify train``).
    what
        One line saying what the model is.
    genres
        The genres it answers with, in its order.
    learned_from
        What it learned from ("" where its file does not say).
    figures
        ``(label, value)`` pairs of measured figures, each value a sentence fragment with its
        conditions (cross-validated, over how many songs); empty where none were recorded.
    licence
        The terms of its weights ("" where genrify cannot know them: your own models).
    notes
        Caveats: genres it never heard, songs left out, a file without a report.
    headline
        Its main figure in a few words, for a list of models ("68% top-1, cross-validated"), or "".
    """

    name: str
    kind: str
    what: str
    genres: list[str]
    learned_from: str = ""
    figures: list[tuple[str, str]] = field(default_factory=list)
    licence: str = ""
    notes: list[str] = field(default_factory=list)
    headline: str = ""

    def lines(self) -> list[str]:
        """The card as text, a line each (what ``genrify info`` prints)."""
        out = [f"{self.name}: {self.what}", f"genres ({len(self.genres)}): {', '.join(self.genres)}"]
        if self.learned_from:
            out.append(f"learned from: {self.learned_from}")
        out.extend(f"{label}: {value}" for label, value in self.figures)
        if not self.figures:
            out.append("figures: none recorded")
        if self.licence:
            out.append(f"licence: {self.licence}")
        out.extend(f"note: {note}" for note in self.notes)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (``GET /api/models`` gives it as ``card``)."""
        return {
            "name": self.name, "kind": self.kind, "what": self.what, "genres": list(self.genres),
            "learned_from": self.learned_from,
            "figures": [{"label": label, "value": value} for label, value in self.figures],
            "licence": self.licence, "notes": list(self.notes), "headline": self.headline,
        }


def model_card(model: Any = None, name: str | None = None) -> ModelCard:
    """The card of a model.

    Parameters
    ----------
    model
        ``None`` for the built-in model (only its genre head is read, not the taggers); a model
        file's path (its metadata is read, not its weights; :func:`genrify.models.modelfile.read_metadata`);
        that metadata itself; or a loaded model (a :class:`genrify.models.modelfile.GenreModel`, a
        :class:`genrify.models.builtin.BuiltinGenreModel`, or anything with ``genres`` and ``info``).
    name
        The name to show (default: the model's own, or its file's name).

    Raises
    ------
    ModelFileError
        A path that is not a model file genrify can read.
    """
    if model is None:
        from genrify.models.builtin import NAME, TAGGER_NAMES, GenreHead

        # What load_builtin's info holds, without loading the taggers (hundreds of MB of work).
        head = GenreHead.load()
        view = _View(name or NAME, list(head.genres), NAME, {"taggers": list(TAGGER_NAMES), "head": head.info},
                     builtin=True)
    elif isinstance(model, (str, Path)):
        from genrify.models.modelfile import read_metadata

        path = Path(model)
        view = _metadata_view(read_metadata(path), name or path.name)
    elif isinstance(model, Mapping):
        view = _metadata_view(model, name or "model")
    else:
        view = _object_view(model, name)
    if view.kind == "built-in":
        return _builtin_card(view)
    if view.kind == "learned":
        return _learned_card(view)
    return _trained_card(view)


# --- what a card is made from ----------------------------------------------------------------------


@dataclass
class _View:
    """The facts every kind of input gives: a name, the genres, the architecture and the ``info``."""

    name: str
    genres: list[str]
    architecture: str | None
    info: Mapping[str, Any]
    builtin: bool = False  # the built-in network (taggers and a head), whatever its head

    @property
    def kind(self) -> str:
        if self.builtin or self.architecture == _builtin_name():
            # A head made by `genrify learn` says what library it came from; the packaged one does not.
            head = self.info.get("head")
            learned = "learned_from" in self.info or (isinstance(head, Mapping) and "learned_from" in head)
            return "learned" if learned else "built-in"
        return "trained"


def _builtin_name() -> str:
    from genrify.models.builtin import NAME

    return NAME


def _metadata_view(meta: Mapping[str, Any], name: str) -> _View:
    info = meta.get("info")
    return _View(name, [str(g) for g in meta.get("genres") or []], meta.get("architecture"),
                 info if isinstance(info, Mapping) else {}, builtin=bool(meta.get("head")))


def _object_view(model: Any, name: str | None) -> _View:
    info = getattr(model, "info", None)
    info = info if isinstance(info, Mapping) else {}
    from genrify.models.builtin import NAME as BUILTIN  # deferred: the card of a file needs none of it

    architecture = getattr(model, "architecture", None)
    # The built-in model (packaged head or learned) is the taggers' architecture; its info names them.
    builtin = architecture in (None, BUILTIN) and ("taggers" in info or "head" in info)
    shown = name or getattr(model, "name", None) or (str(architecture) if architecture else "model")
    return _View(str(shown), [str(g) for g in model.genres], None if builtin else architecture, info, builtin=builtin)


# --- the three kinds ------------------------------------------------------------------------------


def _builtin_card(view: _View) -> ModelCard:
    info = view.info
    head = info.get("head") if isinstance(info.get("head"), Mapping) else info
    taggers = ", ".join(info.get("taggers") or _tagger_names())
    trained_on = str(head.get("trained_on") or "")
    # "294 GTZAN excerpts of 2-3 s (Tzanetakis and Cook 2002; ...)": the part before the
    # parenthesis says what, the rest where from (kept whole in learned_from).
    source = trained_on.split(" (", 1)[0].strip()
    report = learned_report(info)
    if report is None:
        what = f"the pretrained musicnn taggers ({taggers}) alone: their genre tags, no genre head"
    else:
        what = f"the pretrained musicnn taggers ({taggers}) and a genre head learned from {source or 'labelled songs'}"
    learned_from = ("the taggers: the Million Song Dataset (Last.fm tags) and MagnaTagATune; "
                    f"the genre head: {trained_on or 'not recorded'}")
    licence = str(info.get("licence") or "musicnn weights: ISC, Jordi Pons and Xavier Serra (see NOTICE)")
    if report is not None:
        source_name = "GTZAN excerpts for research" if "GTZAN" in trained_on else "labelled songs"
        licence = (licence.replace(" (see NOTICE)", "") +
                   f"; the genre head: learned by genrify from {source_name}, none of whose audio is included; see NOTICE")
    figures, notes = _report_figures(report, unit="excerpts" if "excerpt" in source else "songs",
                                     genres=view.genres) if report is not None else ([], [])
    return ModelCard(view.name, "built-in", what, view.genres, learned_from, figures, licence, notes,
                     _cv_headline(report))


def _learned_card(view: _View) -> ModelCard:
    info = view.info
    head = info.get("head") if isinstance(info.get("head"), Mapping) else {}
    source = info.get("learned_from") or head.get("learned_from") or {}
    source = source if isinstance(source, Mapping) else {}
    taggers = ", ".join(info.get("taggers") or _tagger_names())
    report = learned_report(info)
    songs, artists = (report or {}).get("songs", source.get("songs")), (report or {}).get("artists")
    labels = {"tags": "genre tags", "folders": "genre folders"}.get(str(source.get("labels")), "genres")
    inputs = [Path(str(p)).name or str(p) for p in source.get("inputs") or []]
    learned_from = (f"{songs} songs" + (f" by {artists} artists" if _count(artists) else "")) if _count(songs) else ""
    artists_from = source.get("artists_from") if isinstance(source.get("artists_from"), Mapping) else {}
    alone = artists_from.get("none")
    if learned_from:
        learned_from = f"{learned_from} of your library, by their {labels}"
        if inputs:
            learned_from += f" ({', '.join(inputs[:3])}{', ...' if len(inputs) > 3 else ''})"
        if _count(artists) and _count(alone):  # "40 artists" would overstate 40 songs without one
            learned_from += f"; {alone} song{'s' if alone != 1 else ''} with no artist, each counted as an artist"
    what = f"the pretrained musicnn taggers ({taggers}) and a genre head learned by genrify learn from your music"
    figures, notes = _report_figures(report, unit="songs", genres=view.genres) if report is not None else (
        [], ["this file holds no cross-validated report"])
    dropped = source.get("dropped")
    if isinstance(dropped, Mapping) and dropped:
        rule = f" (fewer than {source['min_songs']} songs)" if _count(source.get("min_songs")) else ""
        notes.append(f"left out{rule}: " + ", ".join(f"{g} ({n})" for g, n in dropped.items()))
    from genrify.models.builtin import other_genre_check, unknown_genres

    head_info = dict(head or info)
    if other_genre_check(view.genres, head_info) is not None:
        notes.append("a song of none of its genres gets one of them, flagged unsure (other genre) where the built-in "
                     "model finds it of none of them")
    elif unknown := unknown_genres(view.genres, head_info):
        notes.append("a song of none of its genres gets one of them, and nothing flags it (the built-in model does not "
                     f"know {', '.join(unknown[:4])})")
    licence = "musicnn weights: ISC, Jordi Pons and Xavier Serra (see NOTICE); the genre head: learned from your music"
    return ModelCard(view.name, "learned", what, view.genres, learned_from, figures, licence, notes,
                     _cv_headline(report))


def _trained_card(view: _View) -> ModelCard:
    from genrify.defaults import ARCHITECTURES

    info = view.info
    arch = view.architecture or "genre"
    about = ARCHITECTURES.get(arch)
    what = f"a {arch} network{f' ({about})' if about else ''} trained by genrify train"
    summary = info.get("summary") if isinstance(info.get("summary"), Mapping) else None
    runs = info.get("runs") if isinstance(info.get("runs"), list) else []
    kept = info.get("kept_run")
    # The run whose network the file holds (the lowest validation loss), where the file says which.
    held = runs[kept] if _count(kept, zero=True) and kept < len(runs) and isinstance(runs[kept], Mapping) else None
    split = held.get("split") if held is not None else None
    parts = []
    if isinstance(split, Mapping) and all(_count(split.get(k), zero=True) for k in ("train", "valid", "test")):
        parts.append(f"{split['train']} training, {split['valid']} validation and {split['test']} test songs")
    store = info.get("store")
    if isinstance(store, str) and store:
        # Only the store's folder name: a server must not show its paths to the page.
        parts.append(f"from the feature store {Path(store).name!r}")
    dist = info.get("distributed")
    if isinstance(dist, Mapping) and _count(dist.get("world_size")) and _count(dist.get("chunks_per_step")):
        # Under torchrun each step sees every process's batch: its figures are not a single run's.
        parts.append(f"under torchrun on {dist['world_size']} processes ({dist['chunks_per_step']} chunks a step)")
    figures: list[tuple[str, str]] = []
    notes: list[str] = []
    own_accuracy = None
    if summary is not None:
        n = summary.get("runs")
        over = f" over {n} run{'s' if n != 1 else ''}" if _count(n) else ""
        # With several runs the file holds one of them, not their mean: its own figure comes first,
        # the mean beside it, so that a card never credits the file with other runs' results.
        several = _count(n) and n > 1 and held is not None and _finite(held.get("song_accuracy")) is not None
        if several:
            figures.append(("run this file holds", f"run {kept + 1} of {n}, the one with the lowest validation loss"))
        for key, label in (("song_accuracy", "test song accuracy"), ("chunk_accuracy", "test segment accuracy"),
                           ("vote_accuracy", "test vote accuracy"), ("macro_f1", "test macro F1")):
            mean, std = _finite(summary.get(f"{key}_mean")), _finite(summary.get(f"{key}_std"))
            own = _finite(held.get(key)) if several and held is not None else None
            if key == "song_accuracy":
                own_accuracy = own
            if mean is not None:
                spread = f" ± {_pct(std)}" if std else ""
                figure = f"{_pct(mean)}{spread}{over}, on songs held out of training"
                if own is not None:
                    figure = f"{_pct(own)} for the run this file holds; {_pct(mean)}{spread} mean{over}; on songs held out of training"
                figures.append((label, figure))
    else:
        notes.append("this file holds no training report (not made by genrify train, or made without one)")
    accuracy = _finite(summary.get("song_accuracy_mean")) if summary is not None else None
    # The headline is the figure of the network the file holds where it is known (one run: the mean).
    accuracy = own_accuracy if own_accuracy is not None else accuracy
    headline = f"{_pct(accuracy)} test song accuracy" if accuracy is not None else ""
    return ModelCard(view.name, "trained", what, view.genres, "; ".join(parts), figures, "", notes, headline)


# --- helpers ----------------------------------------------------------------------------------------


def _cv_headline(report: Mapping[str, Any] | None) -> str:
    top1 = _finite(report.get("cv_top1")) if report is not None else None
    return f"{_pct(top1)} top-1, cross-validated" if top1 is not None else ""


def _report_figures(report: Mapping[str, Any], *, unit: str, genres: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """A cross-validated report (:class:`genrify.learn.learner.LearnReport` as a dict) as figures and notes."""
    figures: list[tuple[str, str]] = []
    songs, artists, folds = report.get("songs"), report.get("artists"), report.get("folds")
    learned = [str(g) for g in report.get("learned") or []]
    top1, macro = _finite(report.get("cv_top1")), _finite(report.get("cv_macro_recall"))
    how = (f"{folds} artist-grouped folds" if _count(artists) else f"{folds} folds") if _count(folds) else ""
    if top1 is not None:
        of = f" of {songs} {unit}" + (f" by {artists} artists" if _count(artists) else "") if _count(songs) else ""
        figures.append(("cross-validated top-1", f"{_pct(top1)}{of}" + (f" ({how})" if how else "")))
    if macro is not None:
        over = f" over its {len(learned)} learned genres" if learned else ""
        figures.append(("cross-validated macro recall", f"{_pct(macro)}{over}"))
    per = report.get("per_genre")
    if isinstance(per, Mapping) and per:
        rows = [(str(g), _finite(r.get("recall"))) for g, r in per.items() if isinstance(r, Mapping)]
        rows = sorted((r for r in rows if r[1] is not None), key=lambda r: -r[1])
        if rows:
            figures.append(("recall by genre", ", ".join(f"{g} {_pct(v)}" for g, v in rows)))
    builtin = report.get("builtin")
    if isinstance(builtin, Mapping) and _finite(builtin.get("top1")) is not None:
        which = str(builtin.get("model") or "the built-in model")
        label = f"{which}, same {unit}" if which == "the tags alone" else f"{which} on the {unit} it covers"
        figures.append((label, f"top-1 {_pct(builtin['top1'])}, macro recall {_pct(builtin.get('macro_recall'))}"))
    unsure = report.get("unsure")
    if isinstance(unsure, Mapping) and _finite(unsure.get("flagged")) is not None:
        others = f"; the others {_pct(unsure.get('kept_top1'))}" if unsure["flagged"] < 1 else ""
        flagged = (f"{_pct(unsure['flagged'])} of the answers (right {_pct(unsure.get('flagged_top1'))} "
                   f"of the time{others})" if unsure["flagged"] > 0
                   else f"none of the answers (right {_pct(unsure.get('kept_top1'))} of the time)")
        figures.append(("flagged unsure", flagged))
    notes: list[str] = []
    unheard = [g for g in genres if learned and g not in learned]
    if unheard:
        notes.append(f"{', '.join(unheard)}: not among the songs it learned from; their share of an answer is the "
                     "taggers' tags', which the head moves only as far as its cross-check allowed (mobility)")
    notes.extend(str(n) for n in report.get("notes") or [] if n)
    return figures, notes


def _tagger_names() -> tuple[str, ...]:
    from genrify.models.builtin import TAGGER_NAMES

    return TAGGER_NAMES


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any, *, zero: bool = False) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)


def _pct(value: Any) -> str:
    number = _finite(value)
    return "?" if number is None else f"{100 * number:.0f}%"
