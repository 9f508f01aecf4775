"""Small numeric helpers in numpy alone, for the parts of genrify that run without scipy or torch."""

from __future__ import annotations

import numpy as np


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(x)))`` along ``axis`` without overflow or underflow (the axis dropped).

    Examples
    --------
    >>> float(logsumexp(np.array([1000.0, 1000.0])) - 1000.0)  # doctest: +ELLIPSIS
    0.693...
    """
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The softmax of ``x`` along ``axis`` (scipy's ``scipy.special.softmax``, which the core install
    lacks): each slice sums to 1, in the floating dtype of ``x`` (float64 for integers), whatever
    the size of its values.

    Examples
    --------
    >>> softmax(np.array([[0.0, np.log(3.0)], [-1e4, -1e4]])).round(3).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    """
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
