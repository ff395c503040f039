"""Runtime profiles: the catalogue, datasheet conversion, and their effect on step times."""

import math

import jax
import numpy as np
import pytest
from conftest import RTOL_F64, assert_close

import specsim
from specsim import hardware, models, runtime, step_time
from specsim.runtime import RuntimeProfile
from specsim.runtime._spec import DATASHEET_KEYS

NAMES = runtime.names()


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_loads_with_sources(name):
    entry = runtime.entry(name)
    profile = runtime.get(name, "h100")
    h100 = hardware.get("h100")
    for key, (field, factor) in DATASHEET_KEYS.items():
        value = entry[key]
        expected = getattr(h100, field) if value == "hardware" else value * factor
        assert_close(getattr(profile, field), expected, rtol=RTOL_F64)
    assert entry["description"] and len(entry["sources"]) >= 1
    for text in entry["sources"].values():
        assert isinstance(text, str) and len(text) > 20
    # Every leaf is traced: profiles stack into one vmapped grid.
    assert len(jax.tree_util.tree_leaves(profile)) == len(DATASHEET_KEYS)


def test_default_profile_takes_the_chips_overheads():
    for chip in ("a100", "v5e", "mi300x"):
        spec, profile = hardware.get(chip), runtime.default_for(chip)
        assert float(profile.kernel_launch_s) == float(spec.kernel_launch_s)
        assert float(profile.step_overhead_s) == float(spec.step_overhead_s)
    assert runtime.get("hardware", "a100") == runtime.default_for(hardware.get("a100"))


def test_unknown_or_incomplete_profiles_are_clear_errors():
    with pytest.raises(ValueError, match=r"runtime 'cuda-grafs': unknown runtime, did you mean"):
        runtime.get("cuda-grafs", "h100")
    with pytest.raises(ValueError, match="'hardware' needs a hardware spec"):
        runtime.get("default")
    entry = {k: v for k, v in runtime.entry("trtllm").items() if k != "kernels_per_layer"}
    with pytest.raises(ValueError, match="missing runtime key 'kernels_per_layer'"):
        RuntimeProfile.from_datasheet(entry, name="mine")
    with pytest.raises(ValueError, match="unknown runtime keys"):
        RuntimeProfile.from_datasheet({**runtime.entry("trtllm"), "kernel_us": 1.0})
    bad = {**runtime.entry("trtllm"), "allreduce_bandwidth_fraction": 1.5}
    with pytest.raises(ValueError, match=r"allreduce_bandwidth_fraction must be in \(0, 1\]"):
        RuntimeProfile.from_datasheet(bad)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        RuntimeProfile.from_datasheet({**runtime.entry("trtllm"), "step_overhead_us": -1.0})
    for field in ("lm_head_sharding", "gqa_kv_read_sharing"):
        with pytest.raises(ValueError, match=rf"mine: {field} must be in \[0, 1\], got 1.5"):
            RuntimeProfile.from_datasheet({**runtime.entry("trtllm"), field: 1.5}, name="mine")


@pytest.mark.slow
def test_launch_and_host_costs_follow_the_profile(x64):
    """Kernel launches and per-pass/per-sequence host work are exactly the profile's."""
    model, h100 = models.get("llama-3-8b"), hardware.get("h100")
    for name in NAMES:
        profile = runtime.get(name, h100)
        t = step_time(model, h100, 16.0, 1.0, 512.0, runtime=profile)
        kernels = float(profile.kernels_per_layer) * 32 + float(profile.kernels_per_forward)
        assert_close(t.launch_s, float(profile.kernel_launch_s) * kernels, rtol=RTOL_F64)
        host = float(profile.step_overhead_s) + 16 * float(profile.sequence_overhead_s)
        assert_close(t.overhead_s, host, rtol=RTOL_F64)
    # No runtime given = the chip's default profile.
    default = step_time(model, h100, 16.0, 1.0, 512.0)
    named = step_time(model, h100, 16.0, 1.0, 512.0, runtime=runtime.default_for(h100))
    assert_close(default.time_s, named.time_s, rtol=RTOL_F64)


def test_a_replicated_lm_head_is_read_whole_by_every_chip(x64):
    """gpt-fast's tensor parallelism leaves the output head whole on every GPU (tp.py)."""
    model, a100 = models.get("llama-3.1-8b"), hardware.get("a100")
    sharded = runtime.get("cuda-graphs", a100).replace(lm_head_sharding=1.0)
    replicated = runtime.get("cuda-graphs", a100)
    assert float(replicated.lm_head_sharding) == 0.0
    head_bytes = 4096 * 128256 * 2.0
    for tp in (2.0, 8.0):
        whole = step_time(model, a100, 1.0, 1.0, 100.0, tp=tp, runtime=replicated)
        split = step_time(model, a100, 1.0, 1.0, 100.0, tp=tp, runtime=sharded)
        extra = head_bytes * (1 - 1 / tp) / (2.039e12 * 0.83)
        # Memory-bound decode: the extra bytes cost their streaming time, give or take the
        # head's replicated FLOPs in the p-norm overlap (a few %).
        gained = float(whole.linear_s) - float(split.linear_s)
        assert 0.95 * extra < gained < 1.05 * extra
    one = step_time(model, a100, 1.0, 1.0, 100.0, runtime=replicated)
    assert_close(one.linear_s, step_time(model, a100, 1.0, 1.0, 100.0, runtime=sharded).linear_s)


@pytest.mark.slow
def test_profiles_in_a_deployment_and_grads():
    d = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7, runtime="trtllm")
    assert d.runtime == runtime.get("trtllm", "h100")
    # The default profile stays None and follows the hardware's own overhead leaves.
    plain = specsim.Deployment.create("llama-3-8b", "h100", acceptance=0.7, runtime="default")
    assert plain.runtime is None and plain.resolved_runtime() == runtime.default_for("h100")
    with pytest.raises(ValueError, match="runtime must be a RuntimeProfile"):
        d.replace(runtime="trtllm").validate()

    def tokens_per_s(profile):
        return specsim.predict(
            d.replace(runtime=profile), models.get("llama-3.2-1b"), 3.0
        ).tokens_per_s

    grads = jax.grad(tokens_per_s)(d.runtime)
    for field in ("kernel_launch_s", "step_overhead_s", "speculation_overhead_s"):
        assert float(getattr(grads, field)) < 0, field
    assert all(math.isfinite(float(g)) for g in jax.tree_util.tree_leaves(grads))
    assert np.isfinite(float(tokens_per_s(d.runtime)))
