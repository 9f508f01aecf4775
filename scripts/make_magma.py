"""Write ``src/genrify/web/magma.npy``: matplotlib's ``magma`` colour map as 256 RGB colours, which
the web page's spectrogram (:mod:`genrify.web.images`) maps values through without matplotlib.

Run with the training extra installed (it has matplotlib): ``python scripts/make_magma.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "genrify" / "web" / "magma.npy"

if __name__ == "__main__":
    colours = matplotlib.colormaps["magma"](np.arange(256), bytes=True)[:, :3]
    np.save(OUT, np.ascontiguousarray(colours, dtype=np.uint8))
    print(f"wrote {OUT}")
