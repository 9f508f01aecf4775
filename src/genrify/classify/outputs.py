"""Classification results as JSON, CSV or text, for people and for other programs.

The JSON objects are :meth:`genrify.classify.predict.Prediction.to_dict`'s (a failed file is
``{"path", "error"}``), the same objects the web API returns. CSV has one row per file with the
same fields: each scalar JSON field is a column of the same name, and the nested ones are spread
into columns (:data:`CSV_SPREAD`: ``p_<genre>``, ``vote_<genre>``, ``top1..topK``); with a
timeline, one row per segment instead.

Both are always valid: JSON is strict (no ``NaN``; a result with a non-finite number becomes a
failure of its file, see :func:`checked`) and both are UTF-8. A path is written as
:func:`genrify.collection.library.display_path` shows it: unchanged for every UTF-8 name, and with
``\\xff``-style escapes for the bytes of a name that is not UTF-8 (and for control characters),
so that one odd name never makes the whole output unwritable.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrify.classify.predict import Failure, Prediction
from genrify.collection.library import display_path
from genrify.errors import GenrifyIOError, ParameterError

FORMATS = ("table", "json", "csv")
Result = Prediction | Failure


NON_FINITE = "the model gave a non-finite result (NaN or infinity) for this file"


def checked(results: Sequence[Result]) -> list[Result]:
    """The results, with every prediction holding a non-finite number replaced by a :class:`Failure`.

    A NaN is no answer: it must neither become a literal ``NaN`` in JSON (which strict parsers
    refuse) nor be tagged, sorted or listed.
    """
    out: list[Result] = []
    for r in results:
        if isinstance(r, Prediction):
            try:
                json.dumps(r.to_dict(timeline=True), allow_nan=False)
            except ValueError:
                r = Failure(r.path or "", NON_FINITE)
        out.append(r)
    return out


def records(results: Sequence[Result], *, top_k: int | None = None, timeline: bool = False) -> list[dict[str, Any]]:
    """The JSON-ready object of every result, in order (paths as :func:`display_path` shows them)."""
    objects = []
    for r in checked(results):
        obj = r.to_dict(top_k=top_k, timeline=timeline) if isinstance(r, Prediction) else r.to_dict()
        if obj.get("path") is not None:
            obj["path"] = display_path(obj["path"])
        if "error" in obj:
            obj["error"] = display_path(obj["error"])  # error messages quote file names too
        objects.append(obj)
    return objects


def to_json(results: Sequence[Result], *, top_k: int | None = None, timeline: bool = False) -> str:
    """A JSON array of one object per file: strict JSON (never ``NaN``), UTF-8 paths."""
    return json.dumps(records(results, top_k=top_k, timeline=timeline), indent=2, ensure_ascii=False,
                      allow_nan=False) + "\n"


#: How the CSV carries the JSON fields whose values are nested: each is spread into columns (or,
#: for the timeline, rows), so that every other JSON field is one CSV column of the same name.
CSV_SPREAD: dict[str, str] = {
    "probabilities": "one column p_<genre> per genre",
    "votes": "one column vote_<genre> per genre",
    "top": "columns top1..topK, the genre names (their probabilities are in p_<genre>)",
    "timeline": "with --timeline, one row per segment, its start in segment_start",
}
#: The columns of a song's scalar fields, in order: the same names as its JSON object's keys
#: (:meth:`genrify.classify.predict.Prediction.to_dict`, and ``error`` of a failure's).
SONG_COLUMNS = ("genre", "confidence", "low_confidence", "unsure_reason", "short", "not_music", "near_tie", "asked_share")
MODEL_COLUMNS = ("segments", "duration", "confidence_threshold", "near_tie_margin", "error")


def _cell(value: Any) -> str:
    """A CSV cell: booleans as JSON writes them (``true``/``false``), ``None`` as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def csv_columns(genres: Sequence[str], k: int, *, timeline: bool = False) -> list[str]:
    """The CSV header: ``path``, (``segment_start``), the song's fields, ``top1..topK``, the counts
    and thresholds, ``error``, then ``p_<genre>`` and ``vote_<genre>`` per genre (see :data:`CSV_SPREAD`)."""
    return (["path"] + (["segment_start"] if timeline else []) + list(SONG_COLUMNS)
            + [f"top{i + 1}" for i in range(k)] + list(MODEL_COLUMNS)
            + [f"p_{g}" for g in genres] + [f"vote_{g}" for g in genres])


def to_csv(results: Sequence[Result], *, top_k: int | None = None, timeline: bool = False) -> str:
    """CSV text: one row per file, with the same fields as the JSON objects (:func:`records`).

    Every scalar field of a JSON object is a column of the same name: ``path, genre, confidence,
    low_confidence, unsure_reason, short, not_music, near_tie, asked_share, segments, duration,
    confidence_threshold, near_tie_margin, error`` (``true``/``false`` for booleans, empty for
    ``null`` and for what a failed file lacks); the nested fields are spread into columns as
    :data:`CSV_SPREAD` says (``top1..topK``, ``p_<genre>``, ``vote_<genre>``). With ``timeline``,
    one row per segment instead, with its start (``segment_start``) and its own genre, probability,
    top genres and probabilities; the song's flags (``low_confidence`` ... ``asked_share``) and the
    model's thresholds repeat on each of its rows, ``segments`` is 1, ``duration`` and the votes
    are empty. Paths are written as :func:`display_path` shows them (UTF-8, one line).
    """
    results = checked(results)
    genres: list[str] = next((r.genres for r in results if isinstance(r, Prediction)), [])
    k = min(top_k or 3, len(genres)) if genres else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(genres, k, timeline=timeline))
    blank = [""] * len(genres)
    for r in results:
        if isinstance(r, Failure):
            writer.writerow([display_path(r.path)] + ([""] if timeline else []) + [""] * len(SONG_COLUMNS)
                            + [""] * k + ["", "", "", "", display_path(r.error)] + blank + blank)
            continue
        share = None if r.asked_share is None else round(r.asked_share, 6)
        flags = [_cell(r.low_confidence), _cell(r.unsure_reason), _cell(r.short), _cell(r.not_music), _cell(r.near_tie),
                 _cell(share)]
        limits = [_cell(r.confidence_threshold), _cell(r.near_tie_margin), ""]
        path = display_path(r.path or "")
        if timeline:
            for start, probs in zip(r.segment_starts, r.segment_probabilities, strict=True):
                order = sorted(range(len(genres)), key=lambda i: -probs[i])[:k]
                writer.writerow([path, f"{start:.3f}", genres[order[0]], f"{probs[order[0]]:.6f}"] + flags
                                + [genres[i] for i in order] + [1, ""] + limits
                                + [f"{p:.6f}" for p in probs] + blank)
        else:
            writer.writerow([path, r.genre, f"{r.confidence:.6f}"] + flags + [g for g, _ in r.top(k)]
                            + [r.segments, f"{r.duration:.3f}"] + limits
                            + [f"{p:.6f}" for p in r.probabilities] + [f"{v:.6f}" for v in r.votes])
    return buffer.getvalue()


#: The most characters of one tag value shown on a line (``--dry-run``, ``-v``); a longer value is cut.
SHOWN_VALUE = 80
#: The most values of one tag shown on a line; the rest are counted.
SHOWN_VALUES = 10


def shorten(text: str, limit: int = SHOWN_VALUE) -> str:
    """``text`` as it is, or cut to ``limit`` characters with "…" and its full length noted.

    A tag value can be megabytes long (a damaged or hostile file); a line that reports it must stay
    a line.

    Parameters
    ----------
    text
        The value.
    limit
        The most characters kept, "…" included (at least 1).

    Returns
    -------
    str
        ``text``, or e.g. ``"Rock Rock Rock…" + " (1,048,576 characters)"``.

    Examples
    --------
    >>> shorten("Rock")
    'Rock'
    >>> shorten("x" * 1000, 10)
    'xxxxxxxxx… (1,000 characters)'
    """
    if len(text) <= limit:
        return text
    return f"{text[:max(limit - 1, 0)]}… ({len(text):,} characters)"


def shown_values(values: Sequence[str], *, limit: int = SHOWN_VALUE, most: int = SHOWN_VALUES) -> str:
    """A tag's values on one short line: ``"; "``-joined, each :func:`shorten`-ed, at most ``most``
    of them and then how many more.

    Examples
    --------
    >>> shown_values(["Rock", "Pop"])
    'Rock; Pop'
    >>> shown_values([str(i) for i in range(12)], most=2)
    '0; 1; … and 10 more'
    """
    shown = "; ".join(shorten(v, limit) for v in values[:most])
    return shown + (f"; … and {len(values) - most:,} more" if len(values) > most else "")


def render(results: Sequence[Result], fmt: str, *, top_k: int | None = None, timeline: bool = False) -> str:
    """``json`` or ``csv`` text of the results."""
    if fmt == "json":
        return to_json(results, top_k=top_k, timeline=timeline)
    if fmt == "csv":
        return to_csv(results, top_k=top_k, timeline=timeline)
    raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write an output file atomically (see :func:`genrify.core.fsutil.write_text_atomic`).

    Raises
    ------
    GenrifyIOError
        The file cannot be written (the message names it and says why).
    """
    from genrify.core import fsutil

    try:
        fsutil.write_text_atomic(path, text)
    except OSError as exc:
        raise GenrifyIOError(f"{display_path(path)}: cannot write the output file ({exc.strerror or exc})") from None
