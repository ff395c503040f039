"""Setting up a measurement session: XLA's threading on a CPU, the clock, the machine's facts."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
import sys
import warnings

import jax
import jaxlib
import jaxlib.version
from jax._src import xla_bridge

from ._device import cpu_model, device_kind, memory_capacity_bytes

__all__ = [
    "NO_YNN_FUSIONS_FLAG",
    "SINGLE_THREAD_FLAG",
    "configure_measurement",
    "machine_description",
    "single_thread_flags",
]

SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"
# From jaxlib 0.8.1 XLA's CPU backend hands matmuls of two or more rows, and some
# element-wise and reduction fusions, to YNNPACK, which runs them on its own thread pool
# whatever the Eigen setting says (`benchmarks/step_thunks_cpu.py` shows its waits). An
# empty list (the flag's overwrite mode) turns every YNNPACK fusion off.
NO_YNN_FUSIONS_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_FIRST_JAXLIB_WITH_YNN = (0, 8, 1)


def _jaxlib_version() -> tuple[int, ...]:
    """This jaxlib's release as integers, as jaxlib parses it (``(0, 10, 2)``); ``(0,)`` for
    a jaxlib too old to say, which also predates YNNPACK."""
    return tuple(getattr(jaxlib.version, "__version_info__", (0,)))


@functools.cache
def _xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA starts with ``flag`` in ``XLA_FLAGS`` (it aborts a
    process that names a flag it does not know): tried once in a child process."""
    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    try:
        child = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return child.returncode == 0


def single_thread_flags() -> tuple[str, ...]:
    """The ``XLA_FLAGS`` that make XLA run a CPU program on one thread, for this jaxlib.

    Eigen's matmuls single-threaded everywhere; from jaxlib 0.8.1 also no YNNPACK fusions,
    where this jaxlib accepts the flag (XLA aborts on a flag it does not know: tried once
    in a child process, about a second).

    Examples:
        >>> single_thread_flags()[0]
        '--xla_cpu_multi_thread_eigen=false'
    """
    if _jaxlib_version() < _FIRST_JAXLIB_WITH_YNN:
        return (SINGLE_THREAD_FLAG,)
    if not _xla_accepts(NO_YNN_FUSIONS_FLAG):
        warnings.warn(
            f"jaxlib {jaxlib.__version__}'s XLA did not start with {NO_YNN_FUSIONS_FLAG}: "
            "its YNNPACK fusions, if any, stay on and may run multi-threaded",
            RuntimeWarning,
            stacklevel=2,
        )
        return (SINGLE_THREAD_FLAG,)
    return (SINGLE_THREAD_FLAG, NO_YNN_FUSIONS_FLAG)


def configure_measurement(clock: str = "auto") -> str:
    """Prepares JAX for measuring and returns the clock to read (``"wall"``/``"process"``).

    On a CPU, measurements run XLA single-threaded: a step's time then does not depend
    on whether another program holds the second core, and every point of the grid
    (small and large matmuls alike) runs on the same one-core "device". This adds
    `single_thread_flags` (``--xla_cpu_multi_thread_eigen=false`` and, from jaxlib 0.8.1,
    no YNNPACK fusions) to ``XLA_FLAGS`` when JAX has not started its backends yet (they
    change nothing on accelerators); a flag already set there, with any value, is kept.
    ``"auto"`` reads the wall clock; ``"process"`` reads the CPU time of this process,
    which excludes time the process was descheduled but includes other threads'
    spinning, and needs the single-threaded setting. Calling it again once JAX runs
    changes nothing.

    Raises:
        ValueError: an unknown clock, or ``"process"`` where it is not meaningful.
    """
    if clock not in ("auto", "wall", "process"):
        raise ValueError(f"clock must be auto, wall or process, got {clock!r}")
    # jax has no public "have the backends started?"; XLA_FLAGS only reach one that has not.
    if not xla_bridge.backends_are_initialized():
        for flag in single_thread_flags():
            flags = os.environ.get("XLA_FLAGS", "")
            if flag.split("=")[0] not in (token.split("=")[0] for token in flags.split()):
                os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
    if clock != "process":
        return "wall"
    on_cpu = jax.devices()[0].platform == "cpu"
    flags = os.environ.get("XLA_FLAGS", "").split()
    if not (on_cpu and all(f in flags for f in single_thread_flags())):
        raise ValueError(
            "clock 'process' needs a CPU device running XLA single-threaded "
            f"(XLA_FLAGS={' '.join(single_thread_flags())} before JAX starts)"
        )
    return clock


def machine_description(clock: str) -> dict[str, str]:
    """Facts about this machine and software, recorded with every result."""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device_kind(),
        "host_cpu": cpu_model(),
        "host_cores": str(os.cpu_count()),
        "device_memory_gb": f"{memory_capacity_bytes() / 1e9:.1f}",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "clock": clock,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())
        if hasattr(os, "getloadavg")
        else "n/a",
    }
