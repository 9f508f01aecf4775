"""Pictures for the page: a song's log-mel spectrogram as a PNG data URL."""

from __future__ import annotations

import base64
import io

import numpy as np

#: Widest spectrogram image sent to the page, in pixels (one column per frame below that).
SPECTROGRAM_MAX_WIDTH = 1200


def spectrogram_png(
    features: np.ndarray, max_width: int = SPECTROGRAM_MAX_WIDTH, top_db: float = 80.0, scale: str = "db"
) -> str:
    """A log-mel spectrogram ``(n_mels, frames)`` as a ``data:image/png;base64,...`` URL.

    One pixel row per mel band (low bands at the bottom), one column per frame up to ``max_width``
    columns (longer songs are averaged down). Colours span ``top_db`` below the peak for decibels;
    other compressions (musicnn's ``log10p``, 0 for silence) span their whole range.
    """
    from matplotlib import (
        image,  # pyplot is never imported: no GUI backend, safe in threads
    )

    frames = features.shape[1]
    if frames > max_width:
        # Column means, a block of columns at a time: a long song's float16 features are never
        # copied whole to float32.
        edges = np.linspace(0, frames, max_width + 1).round().astype(np.int64)
        db = np.empty((features.shape[0], max_width), dtype=np.float32)
        for i in range(0, max_width, 64):
            j = min(i + 64, max_width)
            block = np.asarray(features[:, edges[i] : edges[j]], dtype=np.float32)
            db[:, i:j] = np.add.reduceat(block, edges[i:j] - edges[i], axis=1) / np.diff(edges[i : j + 1])
    else:
        db = np.asarray(features, dtype=np.float32)
    peak = float(db.max()) if db.size else 0.0
    floor = peak - top_db if scale == "db" else (float(db.min()) if db.size else 0.0)
    buffer = io.BytesIO()
    image.imsave(buffer, db, cmap="magma", vmin=floor, vmax=max(peak, floor + 1e-6), origin="lower", format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
