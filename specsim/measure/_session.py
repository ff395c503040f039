"""Setting up a measurement session: XLA's threading on a CPU, the clock, the machine's facts."""

from __future__ import annotations

import datetime
import os
import platform

import jax
import jaxlib
from jax._src import xla_bridge

from ._device import cpu_model, device_kind, memory_capacity_bytes

__all__ = ["SINGLE_THREAD_FLAG", "configure_measurement", "machine_description"]

SINGLE_THREAD_FLAG = "--xla_cpu_multi_thread_eigen=false"


def configure_measurement(clock: str = "auto") -> str:
    """Prepares JAX for measuring and returns the clock to read (``"wall"``/``"process"``).

    On a CPU, measurements run XLA single-threaded: a step's time then does not depend
    on whether another program holds the second core, and every point of the grid
    (small and large matmuls alike) runs on the same one-core "device". This adds
    ``--xla_cpu_multi_thread_eigen=false`` to ``XLA_FLAGS`` when JAX has not started its
    backends yet (it changes nothing on accelerators). ``"auto"`` reads the wall clock;
    ``"process"`` reads the CPU time of this process, which excludes time the process
    was descheduled but includes other threads' spinning, and needs the single-threaded
    setting. Calling it again once JAX runs changes nothing.

    Raises:
        ValueError: an unknown clock, or ``"process"`` where it is not meaningful.
    """
    if clock not in ("auto", "wall", "process"):
        raise ValueError(f"clock must be auto, wall or process, got {clock!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    # jax has no public "have the backends started?"; XLA_FLAGS only reach one that has not.
    if not xla_bridge.backends_are_initialized() and SINGLE_THREAD_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_FLAG}".strip()
    if clock != "process":
        return "wall"
    on_cpu = jax.devices()[0].platform == "cpu"
    if not (on_cpu and SINGLE_THREAD_FLAG in os.environ.get("XLA_FLAGS", "")):
        raise ValueError(
            "clock 'process' needs a CPU device running XLA single-threaded "
            f"(XLA_FLAGS={SINGLE_THREAD_FLAG} before JAX starts)"
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
