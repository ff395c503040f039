"""The hardware field table, strict hardware TOML files, exact save/load, the roofline sharpness.

Every `HardwareSpec` field has one row in ``specsim.hardware.FIELDS``; reading a datasheet,
writing one, checking a spec and the CLI's labels come from it. A spec written to TOML
reads back bit for bit, its roofline sharpness included, so predictions from the file
are exactly those of the spec in memory.
"""

import math
import os
import tempfile
from decimal import Decimal

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import specsim
from specsim import hardware, models
from specsim._calibrate import WITH_SHARPNESS, StepTimeData, calibrate, predict_step_times
from specsim._schema import FRACTION, NON_NEGATIVE, POSITIVE
from specsim.hardware import FIELDS, HardwareSpec, roofline_time, smooth_max

NAMES = hardware.names()
H100 = hardware.get("h100")
# The H100 with the hard roofline (its catalogue entry has a measured sharpness).
HARD = H100.replace(roofline_sharpness=None)


def write(folder, text, name="chip.toml"):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------- the table


def test_table_has_one_row_per_spec_field_in_order():
    assert [f.name for f in FIELDS] == list(HardwareSpec.__dataclass_fields__)
    keys = [k for f in FIELDS for k in f.keys]
    assert len(keys) == len(set(keys))
    for field in FIELDS:
        assert field.label and field.factor > 0
        if isinstance(field.default, float):  # a constant default satisfies its own rule
            assert field.rule(field.default)
    assert HardwareSpec.__dataclass_fields__["attention_efficiency"].default == 1.0
    assert HardwareSpec.__dataclass_fields__["roofline_sharpness"].default is None


@pytest.mark.parametrize("name", NAMES)
def test_datasheet_round_trip_for_every_catalogue_entry(name):
    """datasheet -> spec -> datasheet gives the entry's numbers exactly, and back."""
    entry = hardware.entry(name)
    spec = hardware.get(name)
    sheet = spec.to_datasheet()
    for key, value in entry.items():
        if key in sheet:
            assert sheet[key] == value, key  # exact, not approximately
    if "hbm_gib" in entry:  # written back as GB: the same bytes
        assert sheet["hbm_gb"] * 1e9 == entry["hbm_gib"] * 2.0**30
    # inf (or no key) is the hard roofline
    assert sheet["roofline_sharpness"] == entry.get("roofline_sharpness", math.inf)
    assert HardwareSpec.from_datasheet(sheet, name) == spec
    assert hardware.datasheet(name) == sheet  # the JAX-free path gives the same numbers


def test_conversion_is_exact_in_decimal():
    # 0.819 TB/s is exactly 819e9 B/s (float multiplication by 1e12 would round twice).
    assert float(hardware.get("v5e").hbm_bytes_per_s) == 819e9
    # A spec read with a capacity in GiB, written in GB, reads back the same bytes.
    entry = {**hardware.entry("v5p")}
    assert hardware.get("v5p").hbm_capacity_bytes == 95 * 2**30 == entry["hbm_gib"] * 2**30


def test_labels_drive_the_cli_sensitivity_table():
    from specsim.cli import optimize

    assert optimize._RATE_FIELDS["hbm_bytes_per_s"] == "HBM bandwidth"
    assert optimize._TIME_FIELDS["kernel_launch_s"] == "kernel-launch overhead"
    assert set(optimize._RATE_FIELDS) | set(optimize._TIME_FIELDS) == {f.name for f in FIELDS}


def test_effective_rates_name_the_products():
    assert float(hardware.effective_hbm_bytes_per_s(H100)) == pytest.approx(3.35e12 * 0.89)
    # fp8 at its own efficiency (serving-shape FP8 GEMMs), bf16 at compute_efficiency
    assert float(hardware.effective_flops_per_s(H100, "fp8")) == pytest.approx(1979e12 * 0.57)
    t = roofline_time(1.0, 1e9, H100)
    assert float(t.memory_s) == pytest.approx(1e9 / float(hardware.effective_hbm_bytes_per_s(H100)))


# --------------------------------------------------------------------------- strict files


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("hbm_bandwith", "hbm_tb_per_s"),  # issue 11: evaluated as a plain H100, exit 0
        ("hbm_bandwidth", "hbm_tb_per_s"),
        ("hbm_bytes_per_s", "hbm_tb_per_s"),  # the SI name in a datasheet file
        ("memory_efficency", "memory_efficiency"),
        ("kernel_launch_s", "kernel_launch_us"),
        ("bf16_tflop", "bf16_tflops"),
        ("step_overhead", "step_overhead_us"),
        ("sharpness", "roofline_sharpness"),
    ],
)
def test_typo_keys_are_errors_naming_file_entry_key_and_closest(tmp_path, key, closest):
    path = write(tmp_path, f'[hardware."Lab GPU"]\nbase = "h100"\n{key} = 10.0\n')
    with pytest.raises(ValueError) as info:
        hardware.get(path)
    message = str(info.value)
    assert message.startswith(f"{path}: Lab GPU: {key} 10.0: unknown key (did you mean ")
    assert closest in message.split("; valid:")[0]
    assert "; valid: " in message and "hbm_tb_per_s" in message.split("; valid:")[1]
    assert "\n" not in message
    # The same check guards a dict given to from_datasheet and a flat file.
    with pytest.raises(ValueError, match=f"^chip: {key} 10.0: unknown key"):
        HardwareSpec.from_datasheet({**hardware.entry("h100"), key: 10.0}, "chip")
    flat = write(tmp_path, f'base = "h100"\n{key} = 10.0\n', "flat.toml")
    with pytest.raises(ValueError, match=f"flat.toml: flat: {key} 10.0: unknown key"):
        specsim.load_hardware(flat)


def test_a_files_valid_keys_include_base(tmp_path):
    """``base`` is valid in a file: listed among the choices, and a typo of it named."""
    path = write(tmp_path, 'bse = "h100"\n')
    with pytest.raises(ValueError, match=r"bse 'h100': unknown key \(did you mean base\?\)"):
        hardware.get(path)
    path = write(tmp_path, 'base = "h100"\nquantum_flux = 3\n', "far.toml")
    with pytest.raises(ValueError, match=r"; valid: .*, base, bf16_tflops, "):
        hardware.get(path)


def test_unknown_key_far_from_any_valid_one_lists_them_all(tmp_path):
    path = write(tmp_path, 'base = "h100"\nquantum_flux = 3\n')
    with pytest.raises(ValueError, match=r"quantum_flux 3: unknown key; valid: aliases, .*bf16"):
        hardware.get(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base = "h100"\nbf16_tflops = [989]\n', r"bf16_tflops: not a number; valid: a number"),
        ('base = "h100"\nhbm_tb_per_s = "3.35"\n', r"hbm_tb_per_s '3.35': not a number"),
        ('base = "h100"\nkernel_launch_us = true\n', r"kernel_launch_us True: not a number"),
        ('base = "h100"\naliases = "x"\n', r"aliases 'x': not a list; valid: a list of strings"),
        ('base = "h100"\nsources = "datasheet"\n', r"sources 'datasheet': not a table"),
        ('base = "h100"\nkind = 3\n', r"kind 3: not a string"),
        ('base = "h100"\nyear = -1\n', r"year -1: out of range"),
        ("base = 3\n", r"base 3: not a string"),
        ('base = "h1000"\n', r"base: hardware 'h1000': unknown hardware, did you mean 'H100 SXM'"),
        ('base = "h100"\nroofline_sharpness = -inf\n', r"roofline_sharpness -inf: out of range"),
        ('base = "h100"\nroofline_sharpness = nan\n', r"roofline_sharpness nan: out of range"),
        ('base = "h100"\nhbm_gb = 80\nhbm_gib = 75\n', r"hbm_gb and hbm_gib: both given"),
        ("schema_version = 2\n", r"schema_version 2: unsupported; valid: 1"),
        ('bf16_tflops = 1.0\n[hardware."x"]\nbase = "h100"\n', r"bf16_tflops 1.0: unknown key"),
        ("[hardware]\nx = 3\n", r"hardware.x is not a table"),
    ],
)
def test_wrong_types_and_values_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ValueError, match=message) as info:
        hardware.get(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_capacity_unit_in_a_file_replaces_the_bases(tmp_path):
    spec = hardware.get(write(tmp_path, 'base = "h100"\nhbm_gib = 80\n'))
    assert spec == H100.replace(hbm_capacity_bytes=80.0 * 2**30)


# --------------------------------------------------------------------------- save / load


def test_saved_file_lists_every_field_with_its_label_and_unit(tmp_path):
    path = hardware.save_hardware(HARD, tmp_path / "h100.toml", "My H100", source="datasheet")
    text = path.read_text()
    assert '[hardware."My H100"]' in text
    assert "hbm_tb_per_s = 3.35  # HBM bandwidth, TB/s" in text
    assert "roofline_sharpness = inf  # roofline sharpness" in text  # the hard roofline
    assert hardware.get(path) == HARD
    assert [p.name for p in tmp_path.iterdir()] == ["h100.toml"]  # no temporary file left


def test_a_field_that_follows_another_round_trips_set_and_unset(tmp_path):
    # Unset, attention_compute_efficiency follows attention_efficiency: not written, read
    # back unset; set, written and read back exactly.
    unset = H100.replace(attention_efficiency=0.3)
    path = hardware.save_hardware(unset, tmp_path / "unset.toml", "unset")
    assert "attention_compute_efficiency" not in path.read_text()
    assert "attention_compute_efficiency" not in unset.to_datasheet()
    assert hardware.get(path) == unset and hardware.get(path).attention_compute_efficiency is None
    fitted = unset.replace(attention_compute_efficiency=0.04)
    path = hardware.save_hardware(fitted, tmp_path / "fitted.toml", "fitted")
    assert "attention_compute_efficiency = 0.04  # attention compute efficiency" in path.read_text()
    assert hardware.get(path) == fitted
    assert HardwareSpec.from_datasheet(fitted.to_datasheet()) == fitted


def test_save_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="hardware name"):
        hardware.save_hardware(H100, tmp_path / "x.toml", 'my "gpu"')
    stacked = jax.tree.map(lambda *xs: jnp.asarray(xs), H100, H100)
    with pytest.raises(ValueError, match="writes one chip"):
        hardware.save_hardware(stacked, tmp_path / "x.toml")
    with pytest.raises(ValueError, match=r"memory_efficiency 1\.5: out of range"):
        hardware.save_hardware(H100.replace(memory_efficiency=1.5), tmp_path / "x.toml")
    with pytest.raises(ValueError, match="metadata key 'hbm_tb_per_s'"):  # contradicts the spec
        hardware.save_hardware(H100, tmp_path / "x.toml", metadata={"hbm_tb_per_s": 9.0})
    fitted = H100.replace(roofline_sharpness=2.5)
    path = hardware.save_hardware(fitted, tmp_path / "x.toml", metadata={"roofline_sharpness": 2.5})
    assert hardware.get(path) == fitted  # metadata repeating the spec is redundant, not an error
    assert not list(tmp_path.glob(".*.tmp"))


positive = st.floats(1e-9, 1e20, allow_nan=False, allow_infinity=False)
fraction = st.floats(1e-6, 1.0, allow_nan=False)
non_negative = st.one_of(st.just(0.0), st.floats(1e-12, 1.0))
sharpness = st.one_of(st.none(), st.floats(0.1, 1e4), st.just(math.inf))


_POSITIVE_NAMES = [f.name for f in FIELDS if f.rule is POSITIVE]
_FRACTION_NAMES = [f.name for f in FIELDS if f.rule is FRACTION]
_NON_NEGATIVE_NAMES = [f.name for f in FIELDS if f.rule is NON_NEGATIVE]


@settings(max_examples=80, deadline=None)
@given(
    rates=st.lists(positive, min_size=len(_POSITIVE_NAMES), max_size=len(_POSITIVE_NAMES)),
    efficiencies=st.lists(fraction, min_size=len(_FRACTION_NAMES), max_size=len(_FRACTION_NAMES)),
    times=st.lists(
        non_negative, min_size=len(_NON_NEGATIVE_NAMES), max_size=len(_NON_NEGATIVE_NAMES)
    ),
    p=sharpness,
    float32=st.booleans(),
)
def test_any_spec_reads_back_bit_for_bit(rates, efficiencies, times, p, float32):
    """Random SI values (float64, or float32 as a fit leaves them) survive save and load."""
    as_float = (lambda v: float(np.float32(v))) if float32 else float
    names = [f.name for f in FIELDS]
    values = dict(zip(_POSITIVE_NAMES, map(as_float, rates), strict=True))
    values.update(zip(_FRACTION_NAMES, map(as_float, efficiencies), strict=True))
    values.update(zip(_NON_NEGATIVE_NAMES, map(as_float, times), strict=True))
    spec = HardwareSpec(**values, roofline_sharpness=None if p is None else as_float(p))
    with tempfile.TemporaryDirectory() as folder:
        loaded = hardware.get(hardware.save_hardware(spec, os.path.join(folder, "x.toml")))
    expected = spec.replace(roofline_sharpness=None) if p in (None, math.inf) else spec
    for name in names:
        assert getattr(loaded, name) == getattr(expected, name), name


def test_decimals_undo_the_conversion_where_floats_would_not():
    # 1.7976e-6 s / 1e-6 is 1.7976000000000003 in floats; the decimal shift is exact.
    from specsim.hardware._fields import datasheet_decimals, to_si

    spec = H100.replace(kernel_launch_s=1.7976e-6, hbm_bytes_per_s=3.3500000000000005e12)
    sheet = datasheet_decimals(spec)
    assert sheet["kernel_launch_us"] == Decimal("1.7976")
    assert to_si(sheet)["hbm_bytes_per_s"] == 3.3500000000000005e12


# --------------------------------------------------------------------------- sharpness


# About 9 s on a 2-core machine: the tests that use it are in the slow tier.
@pytest.fixture(scope="module")
def calibrated():
    """A spec with a fitted roofline sharpness (synthetic timings at p = 2)."""
    truth = hardware.get("a100").replace(compute_efficiency=0.6, kernel_launch_s=5e-6)
    points = [
        (models.get(name), batch, new, context, 1.0)
        for name in ("llama-68m", "llama-2-7b")
        for batch in (1, 16, 64)
        for new in (1, 5, 512)
        for context in (0, 2048)
    ]
    data = StepTimeData.from_points(points)
    data = data.replace(time_s=predict_step_times(data, truth.replace(roofline_sharpness=2.0)))
    result = calibrate(data, hardware.get("a100"), fit=WITH_SHARPNESS, steps=300, restarts=2)
    return result, data


@pytest.mark.slow
def test_calibrated_spec_saved_to_toml_predicts_exactly_what_it_predicts_in_memory(
    tmp_path, monkeypatch, calibrated
):
    """Issue 10's bug: a fitted sharpness saved by calibrate was never read back."""
    result, data = calibrated
    fitted = result.hardware
    assert fitted.roofline_sharpness is not None and result.smooth == pytest.approx(2.0, rel=0.05)
    monkeypatch.setenv("SPECSIM_HARDWARE_DIR", str(tmp_path))
    hardware.save_hardware(fitted, tmp_path / "lab.toml", "lab", metadata={"points": len(data)})
    for loaded in (specsim.load_hardware("lab"), hardware.get(str(tmp_path / "lab.toml"))):
        assert loaded == fitted
        np.testing.assert_array_equal(
            predict_step_times(data, loaded), predict_step_times(data, fitted)
        )
        args = (models.get("llama-2-7b"), models.get("llama-68m"))
        workload = specsim.Workload.create(batch=8)
        from_file = specsim.throughput(*args, loaded, workload, 4.0, 0.8)
        in_memory = specsim.throughput(*args, fitted, workload, 4.0, 0.8)
        for key, value in in_memory.to_dict().items():
            np.testing.assert_array_equal(from_file.to_dict()[key], value, err_msg=key)
    # ... and the sharpness matters: the hard roofline predicts other step times.
    hard = predict_step_times(data, fitted.replace(roofline_sharpness=None))
    assert not np.allclose(hard, predict_step_times(data, fitted), rtol=1e-3)


def test_files_of_earlier_versions_keep_their_fitted_sharpness(tmp_path):
    """Before the sharpness was a field, calibrate stored it in the calibration table."""
    old = write(
        tmp_path,
        '[hardware."local"]\nbase = "h100"\n\n[hardware."local".calibration]\n'
        'roofline_sharpness = 0.8577115535736084\npoints = 91\nclock = "wall"\n',
    )
    assert float(hardware.get(old).roofline_sharpness) == 0.8577115535736084
    results = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results")
    for folder, _, files in os.walk(results):
        for name in files:
            if name.endswith(".hardware.toml"):
                assert hardware.get(os.path.join(folder, name)).roofline_sharpness is not None


def test_smooth_caps_the_spec_sharpness(x64):
    c, m = 1.0, 0.9
    soft = HARD.replace(roofline_sharpness=2.0)
    flops = c * float(hardware.effective_flops_per_s(HARD))
    bytes_moved = m * float(hardware.effective_hbm_bytes_per_s(HARD))

    def time(spec, smooth=None):
        return float(roofline_time(flops, bytes_moved, spec, smooth=smooth).time_s)

    assert time(HARD) == max(c, m)  # the catalogue: the hard max, exactly
    assert time(HARD, 16.0) == pytest.approx((c**16 + m**16) ** (1 / 16), rel=1e-12)
    assert time(soft) == pytest.approx(math.hypot(c, m), rel=1e-12)
    assert time(soft, 16.0) == time(soft)  # smoother than 16 already: the spec's p
    assert time(soft, 1.0) == pytest.approx(c + m, rel=1e-12)  # smooth=1 smooths further
    assert time(HARD.replace(roofline_sharpness=math.inf)) == max(c, m)  # traced inf


def test_hard_roofline_is_unchanged_and_costs_no_leaf():
    assert hardware.roofline_sharpness(HARD) is None
    assert len(jax.tree.leaves(HARD)) == len(jax.tree.leaves(H100)) - 1
    flops, bytes_moved = jnp.array([1e12, 3e12, 5e11]), jnp.array([1e9, 8e9, 2e9])
    t = roofline_time(flops, bytes_moved, HARD)
    np.testing.assert_array_equal(t.time_s, jnp.maximum(t.compute_s, t.memory_s))


def test_sharpness_is_a_traced_leaf_with_finite_gradients(x64):
    def time_s(spec):
        return 1e3 * roofline_time(1e12, 4e9, spec).time_s

    for p in (0.5, 1.0, 2.0, 16.0):
        grads = jax.grad(time_s)(H100.replace(roofline_sharpness=p))
        for leaf in jax.tree.leaves(grads):
            assert np.isfinite(float(leaf))
        assert float(grads.roofline_sharpness) < 0  # sharper: closer to the max, faster
    # A traced inf is the hard max; its own gradient is 0, the others finite.
    grads = jax.grad(time_s)(H100.replace(roofline_sharpness=math.inf))
    assert float(grads.roofline_sharpness) == 0.0
    assert all(np.isfinite(float(g)) for g in jax.tree.leaves(grads))
    # Specs with different sharpnesses stack and vmap without recompiling.
    specs = [H100.replace(roofline_sharpness=p) for p in (0.5, 2.0, math.inf)]
    stacked = jax.tree.map(lambda *xs: jnp.asarray(xs), *specs)
    batched = jax.vmap(time_s)(stacked)
    np.testing.assert_allclose(batched, [float(time_s(s)) for s in specs], rtol=1e-12)


def test_smooth_max_edges_of_the_sharpness(x64):
    assert float(smooth_max(3.0, 4.0, math.inf)) == 4.0
    assert float(smooth_max(1.0, 1.0, 0.5)) == 4.0  # p < 1: more than the sum
    assert float(smooth_max(0.0, 2.0, 0.5)) == 2.0
    for a, b, p in [(0.0, 1.0, 0.5), (1.0, 0.0, 0.3), (0.0, 0.0, 2.0), (1.0, 1.0, math.inf)]:
        grads = jax.grad(smooth_max, argnums=(0, 1, 2))(a, b, p)
        assert all(np.isfinite(float(g)) for g in grads), (a, b, p)


WORKLOAD = specsim.Workload.create()
BAD_SMOOTH = [0, 0.0, -1.0, 0.05, math.inf, math.nan, "16", True, [16.0]]


@pytest.mark.parametrize("smooth", BAD_SMOOTH)
def test_bad_smooth_is_refused_by_every_prediction(smooth):
    target, draft = models.get("llama-2-7b"), models.get("llama-68m")
    deployment = specsim.Deployment.create(target, "h100", acceptance=0.8)
    data = StepTimeData.from_points([(draft, 1, 1, 0, 1e-3)])
    calls = [
        lambda: specsim.throughput(target, draft, H100, WORKLOAD, 4, 0.8, smooth=smooth),
        lambda: specsim.predict(deployment, draft, 4.0, smooth=smooth),
        lambda: specsim.sweep(hardware="h100", gamma=[1, 2], smooth=smooth),
        lambda: predict_step_times(data, H100, smooth),
        lambda: calibrate(data, H100, fit=["compute_efficiency"], steps=1, smooth=smooth),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^smooth .*: (out of range|not a number); valid"):
            call()


@pytest.mark.slow
def test_small_but_valid_smooth_stays_finite():
    target, draft = models.get("llama-2-7b"), models.get("llama-68m")
    for smooth in (0.1, 0.5, 1, 16, 1e6):
        report = specsim.throughput(
            target, draft, H100, specsim.Workload.create(), 4, 0.8, smooth=smooth
        )
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(report)), smooth


@pytest.mark.slow
def test_calibration_result_smooth_is_an_alias(calibrated):
    result, _ = calibrated
    assert result.smooth == float(result.hardware.roofline_sharpness)
    assert result.parameters()["roofline_sharpness"] == result.smooth
