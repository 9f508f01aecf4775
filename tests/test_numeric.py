"""genrify.core.numeric against scipy's softmax and logsumexp, the reference the core install lacks."""

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax

from genrify.core.numeric import logsumexp, softmax


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_logsumexp_match_scipy(axis):
    x = np.random.default_rng(0).normal(scale=30.0, size=(7, 5))
    np.testing.assert_allclose(softmax(x, axis=axis), scipy_softmax(x, axis=axis), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(logsumexp(x, axis=axis), scipy_logsumexp(x, axis=axis), rtol=1e-12)


def test_huge_and_tiny_values_neither_overflow_nor_vanish():
    x = np.array([[1e4, 1e4 - np.log(3.0)], [-1e4, -1e4 - np.log(3.0)]])
    np.testing.assert_allclose(softmax(x, axis=1), [[0.75, 0.25], [0.75, 0.25]])
    np.testing.assert_allclose(logsumexp(x, axis=1), [1e4 + np.log(4 / 3), -1e4 + np.log(4 / 3)])


def test_softmax_keeps_a_floating_dtype_and_gives_float64_for_integers():
    assert softmax(np.zeros((2, 3), dtype=np.float32)).dtype == np.float32
    # As its docstring says: integers (which np.exp turns into float64) give float64, not integers.
    result = softmax(np.array([[0, 1], [5, 5]], dtype=np.int32))
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, scipy_softmax(np.array([[0.0, 1.0], [5.0, 5.0]]), axis=-1))
