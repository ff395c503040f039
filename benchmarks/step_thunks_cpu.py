"""Where a measured decode step's time goes on this CPU, operation kind by kind.

`specsim validate` times forward passes of small flax networks on the local device. On
some hosts their multi-row passes (a decode at batch 4, a verification of 5 tokens) take
far longer than their FLOPs and bytes say. This script runs one of those networks'
decode steps under `jax.profiler` and sums XLA's own trace events per kind of operation
("thunk"): XLA's matrix-vector and matrix kernels ("dot"), YNNPACK fusions
("ynn_fusion", where this jaxlib hands its matmuls to YNNPACK), element-wise fusions,
copies. It prints, per batch, the microseconds per step and the calls per step of each
kind, so a one-row step and a multi-row step can be compared call by call (events of
every thread are summed: a kind run on two threads at once counts twice).

    python benchmarks/step_thunks_cpu.py [network] [batch ...]

(default: the CPU grid's 8-layer network "deep", batches 1 and 4, context 32). XLA runs
as `specsim validate` measures, single-threaded (`specsim.measure.configure_measurement`:
no YNNPACK fusions from jaxlib 0.8.1); with ``--ynn`` this jaxlib's YNNPACK fusions stay
on, as they are outside a measurement (only Eigen's matmuls single-threaded).

    python benchmarks/step_thunks_cpu.py --ynn deep 1 4
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

import jax

from specsim.measure import _grids, _timing, configure_measurement
from specsim.measure._model import build_model
from specsim.measure._session import SINGLE_THREAD_FLAG

CONTEXT_TOKENS = 32
WARMUP_STEPS, TRACED_STEPS = 20, 30
# Events of the Python side and of the executor around the program, not operations in it.
_ENCLOSING = ("$", "ThunkExecutor", "PjitFunction", "CommonPjRt", "ParseArguments", "end: ")


def thunk_times(network: str, batch: int) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per step and calls per step of each kind of XLA operation."""
    config = _grids.model_presets("full", "cpu")[network]
    model = build_model(config, seed=0)
    point = _timing.MeasurementPoint(config, batch, 1, CONTEXT_TOKENS, "decode")
    step = _timing._step_function(model, point, 1.0)  # jitted, its state donated
    state = _timing._initial_state(model, point, 0)
    for _ in range(WARMUP_STEPS):
        state = jax.block_until_ready(step(state))
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(TRACED_STEPS):
                state = jax.block_until_ready(step(state))
        events = []
        for trace in Path(directory).rglob("*.trace.json.gz"):
            with gzip.open(trace) as file:
                events += json.load(file)["traceEvents"]
    time_us, calls = collections.defaultdict(float), collections.defaultdict(float)
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name.startswith(_ENCLOSING):
            continue
        kind = name.split(".")[0]
        time_us[kind] += event.get("dur", 0) / TRACED_STEPS
        calls[kind] += 1 / TRACED_STEPS
    return dict(time_us), dict(calls)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--ynn"]:  # (read when JAX starts its backend, on the first trace)
        argv = argv[1:]
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAG}"
    else:
        configure_measurement()
    network = argv[0] if argv else "deep"
    batches = [int(b) for b in argv[1:]] or [1, 4]
    flags = os.environ["XLA_FLAGS"]
    print(f"network {network}, decode at context {CONTEXT_TOKENS}; XLA_FLAGS={flags}")
    for batch in batches:
        time_us, calls = thunk_times(network, batch)
        print(f"batch {batch}: {sum(time_us.values()):.0f} us per step in operations")
        for kind, us in sorted(time_us.items(), key=lambda kv: -kv[1])[:8]:
            per_call = us / calls[kind]
            print(f"  {kind:<36s} {us:8.1f} us  {calls[kind]:5.1f} calls  {per_call:6.1f} us/call")


if __name__ == "__main__":
    main(sys.argv[1:])
