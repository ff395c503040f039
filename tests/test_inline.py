"""`inline_jits`: the same values as the function it flattens, with no nested jit left."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from specsim._inline import inline_jits


@functools.partial(jax.jit, static_argnames=("power",))
def _scaled(x, y, power):
    return jnp.clip(x**power, 0.0, 2.0) * y  # jnp.clip: a jit inside a jit


def _model(values, constants):
    a, b = values["a"], values["b"]
    total = _scaled(a, b, power=2) + jax.nn.softplus(a - b)  # softplus: a custom_jvp
    return {
        "total": total,
        "ratio": jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0) * constants["k"],
        "b_only": jnp.sqrt(jnp.abs(b)),
        "constant": 1.5,  # a literal output
        "pair": jax.lax.sort_key_val(jnp.stack([a, b]), jnp.stack([b, a])),  # two results
    }


def _jit_equations(jaxpr) -> int:
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in ("jit", "pjit")
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _jit_equations(sub)
    return count


def test_nested_vmaps_give_the_same_bits_without_nested_jits():
    a = jnp.linspace(-2.0, 3.0, 5)
    b = jnp.linspace(-1.0, 1.0, 3)
    constants = {"k": jnp.float32(0.25)}
    offset = np.float32(0.5)  # closed over: a constant of the traced program

    def grid(fn):
        def over_grid(a, b, constants):  # constants: tracers of the outer jit
            def at(x, y):
                return fn({"a": x + offset, "b": y}, constants)

            return jax.vmap(jax.vmap(at, in_axes=(None, 0)), in_axes=(0, None))(a, b)

        return jax.jit(over_grid)

    expected = grid(_model)(a, b, constants)
    got = grid(inline_jits(_model))(a, b, constants)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _jit_equations(jax.make_jaxpr(grid(_model).__wrapped__)(a, b, constants).jaxpr) > 0
    flat = jax.make_jaxpr(grid(inline_jits(_model)).__wrapped__)(a, b, constants)
    assert _jit_equations(flat.jaxpr) == 0


def test_replayed_operations_keep_their_source_locations():
    def f(x):
        return inline_jits(_model)({"a": x, "b": 2.0 * x}, {"k": 1.0})

    text = jax.make_jaxpr(jax.vmap(f))(jnp.ones(3)).pretty_print(source_info=True)
    assert "test_inline.py:14" in text  # _scaled's line, inside a nested jit
    assert "specsim/_inline.py" not in text


def test_gradients_agree():  # (differentiating through the replay breaks nothing)
    def loss(fn, x):
        out = fn({"a": x, "b": 0.5 * x}, {"k": 2.0})
        return out["total"] + out["ratio"] + out["pair"][1][0]

    x = jnp.float32(0.7)
    expected = jax.grad(functools.partial(loss, _model))(x)
    got = jax.grad(functools.partial(loss, inline_jits(_model)))(x)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)
