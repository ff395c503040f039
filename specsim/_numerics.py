"""Small array helpers shared by every layer (no specsim imports)."""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np

# The largest finite float32 (the precision of every traced leaf): a number beyond it is
# refused where it enters, not cast to infinity with an overflow warning.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_float(value):
    """``value`` as a JAX array with a floating dtype (integers are promoted)."""
    value = jnp.asarray(value)
    return value if jnp.issubdtype(value.dtype, jnp.floating) else value.astype(float)


def host_float(value, dtype=None):
    """A concrete leaf as a NumPy float array; a tracer (inside ``jit``/``vmap``/``grad``) as JAX's.

    Constructors store concrete numbers on the host: validating them and packing them
    into the argument of a jitted call then costs no device round trip. ``dtype=None``
    keeps a floating dtype and promotes integers, as ``as_float`` does.
    """
    if isinstance(value, jax.core.Tracer):
        return as_float(value) if dtype is None else jnp.asarray(value, dtype)
    array = np.asarray(value, dtype)
    if dtype is None:
        if array.dtype.kind in "biu":
            array = array.astype(_default_float())
        elif array.dtype.kind != "f":
            raise TypeError(f"expected a number or an array of numbers, got {value!r}")
        elif array.dtype == np.float64 and not jax.config.jax_enable_x64:
            array = array.astype(np.float32)
    return array


def _default_float():
    return np.float64 if jax.config.jax_enable_x64 else np.float32


def concrete(value) -> np.ndarray | None:
    """``value`` as a float64 NumPy array, or ``None`` while it is being traced.

    Public entry points validate concrete inputs and skip tracers (those are
    validated where the caller made them concrete).
    """
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value, dtype=np.float64)


def real_number(value) -> float | None:
    """``value`` as a Python float if it is one real number (a Python, NumPy or concrete
    JAX scalar of integer or floating type, not a bool), else ``None``.

    Examples:
        >>> real_number(np.int64(64)), real_number(2), real_number(True), real_number("4")
        (64.0, 2.0, None, None)
    """
    if isinstance(value, bool | np.bool_ | str | bytes) or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, np.generic | np.ndarray | jax.Array):
        array = np.asarray(value)
        if array.shape == () and array.dtype.kind in "iuf":
            return float(array)
    return None


def check_numeric(name: str, value) -> None:
    """``ValueError`` unless ``value`` is numeric: a number or an array of integers or
    floats (a string such as ``"4"`` or a bool is not, though NumPy would convert it);
    tracers pass.

    Examples:
        >>> check_numeric("batch", np.arange(3))
        >>> check_numeric("batch", "4")
        Traceback (most recent call last):
        ...
        ValueError: batch '4': not a number; valid: finite numbers
    """
    if isinstance(value, jax.core.Tracer):
        return
    kind = None
    if isinstance(value, bool | np.bool_ | str | bytes):
        kind = "b"
    elif not isinstance(value, int | float):
        try:
            kind = np.asarray(value).dtype.kind
        except (TypeError, ValueError):
            kind = "O"
    if kind is not None and kind not in "iuf":
        raise ValueError(f"{name} {value!r}: not a number; valid: finite numbers")


def concrete_values(value) -> tuple[float, ...]:
    """The values of a concrete leaf as Python floats; nothing for a tracer."""
    kind = type(value)
    if kind is float:  # catalogue specs hold Python floats: skip NumPy
        return (value,)
    if kind is np.ndarray and value.ndim == 0:
        return (float(value),)
    array = concrete(value)
    return () if array is None else tuple(array.ravel().tolist())


# Rules for `check_range` that several layers share: a count of chips, and an amount of
# work (FLOPs, bytes) that a float32 leaf can hold.
CHIPS = (lambda v: v >= 1, ">= 1 (chips)")
AMOUNT = (lambda v: 0 <= v <= FLOAT32_MAX, "in [0, 3.4e38]")


def check_range(name: str, value, ok, valid: str) -> None:
    """Refuses a concrete leaf with a value that is not finite or fails ``ok``
    (``ValueError``: "NAME V: out of range; valid: finite numbers VALID"); a tracer passes.

    Examples:
        >>> check_range("batch", -1.0, lambda v: v >= 0, ">= 0")
        Traceback (most recent call last):
        ...
        ValueError: batch -1: out of range; valid: finite numbers >= 0
    """
    for v in concrete_values(value):
        if not (np.isfinite(v) and ok(v)):
            raise ValueError(f"{name} {v:g}: out of range; valid: finite numbers {valid}")


def where(condition, if_true, if_false):
    """``jnp.where`` that keeps Python numbers Python numbers.

    Architecture formulas run both on concrete specs (exact float64 parameter counts) and
    on traced ones; a Python condition picks a branch without promoting to float32.

    Examples:
        >>> where(2.0 > 0, 1.0, 3.0)
        1.0
    """
    if isinstance(condition, bool | np.bool_):
        return if_true if condition else if_false
    return jnp.where(condition, if_true, if_false)


def minimum(a, b):
    """``jnp.minimum`` that keeps two Python numbers a Python number (see ``where``)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return min(a, b)
    return jnp.minimum(a, b)


def maximum(a, b):
    """``jnp.maximum`` that keeps two Python numbers a Python number (see ``where``)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return max(a, b)
    return jnp.maximum(a, b)


# Objects found valid whose checked fields are all Python floats or strings: those cannot
# change, so checking them again cannot fail and a repeat call (a loop over `throughput`
# with the same specs) skips it. Keyed by ``id``; an entry leaves with its object.
_VALIDATED: dict[int, weakref.ref] = {}


def validated_before(obj) -> bool:
    """Whether ``obj`` itself passed a validation that `remember_valid` recorded."""
    ref = _VALIDATED.get(id(obj))
    return ref is not None and ref() is obj


def remember_valid(obj, values) -> None:
    """Records ``obj`` as valid when every one of ``values`` is an immutable Python value.

    Examples:
        >>> class Spec:
        ...     pass
        >>> spec = Spec()
        >>> remember_valid(spec, [1.0, "bf16"]); validated_before(spec)
        True
        >>> other = Spec()
        >>> remember_valid(other, [np.ones(2)]); validated_before(other)
        False
    """
    if not all(type(v) is float or type(v) is str or v is None for v in values):
        return  # an array may be changed in place: check it every time
    key = id(obj)
    try:
        _VALIDATED[key] = weakref.ref(obj, lambda _, key=key: _VALIDATED.pop(key, None))
    except TypeError:  # no weak references to this type: nothing remembered
        pass
