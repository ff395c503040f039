"""The compilation counter that the no-recompilation tests rely on sees compilations."""

import jax
import numpy as np
from conftest import compilations


def test_counter_sees_each_compilation_and_nothing_else():
    def affine(x, scale):
        return scale * x + 1.0

    f = jax.jit(affine)
    three, four = np.ones(3, np.float32), np.ones(4, np.float32)  # host arrays: no compiling
    with compilations() as compiled:
        f(three, 2.0)
        f(three * 0, 5.0)  # new values only: no compilation
    assert compiled == ["affine"]
    with compilations() as compiled:
        f(four, 2.0)  # a new shape compiles again
        f(four, 3.0)
    assert compiled == ["affine"]
    with compilations() as compiled:
        f(four, 2.0)
    assert compiled == []
