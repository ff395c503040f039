"""Shared test configuration: strict JAX semantics and one place for tolerances."""

import jax
import numpy as np
import pytest

# Silent broadcasting between arrays of different rank is a bug in a cost model.
jax.config.update("jax_numpy_rank_promotion", "raise")

# float32 is the library default; tests that need float64 say so with `x64()` below.
RTOL_F32 = 1e-5
RTOL_F64 = 1e-10


def assert_close(actual, expected, rtol=RTOL_F32, atol=0.0):
    """One tolerance helper for the whole suite (comment where a test loosens it)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


@pytest.fixture
def x64():
    """Run a test body in float64 (for check_grads and tight closed-form comparisons)."""
    with jax.enable_x64(True):
        yield
