"""Pictures for the page: a song's log-mel spectrogram as a PNG data URL.

Drawn with numpy and zlib alone (the core install has no matplotlib): the values are mapped through
matplotlib's ``magma`` colour map, packaged as its 256 colours (``magma.npy``, taken from
matplotlib by ``scripts/make_magma.py``), as ``matplotlib.image.imsave`` maps them, and written as an
8-bit RGB PNG.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import lru_cache
from pathlib import Path

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
    pixels = colour(db[::-1], floor, max(peak, floor + 1e-6))  # low bands at the bottom
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


@lru_cache(maxsize=1)
def magma() -> np.ndarray:
    """matplotlib's ``magma`` colour map: ``(256, 3)`` uint8 RGB."""
    return np.load(Path(__file__).with_name("magma.npy"))


def colour(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``(h, w)`` values as ``(h, w, 3)`` uint8 magma colours, ``vmin`` the darkest and ``vmax`` the
    brightest, as a matplotlib colour map indexes them: ``int(256 * (v - vmin) / (vmax - vmin))``,
    clipped to 0..255."""
    scaled = (np.asarray(values, dtype=np.float64) - vmin) * (256.0 / (vmax - vmin))
    index = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.intp)
    return magma()[index]


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``(h, w, 3)`` uint8 pixels, the top row first."""
    h, w, _ = pixels.shape
    # Each row starts with its filter type (0: none); zlib does the compressing.
    rows = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(pixels, np.uint8).reshape(h, 3 * w)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter set, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))
