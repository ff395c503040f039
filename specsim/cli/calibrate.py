"""``specsim calibrate``: measure a grid on this device, fit its spec and save it as TOML."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import positive

__all__ = ["add_calibrate_arguments", "run_calibrate"]


def add_measurement_arguments(parser: argparse.ArgumentParser, *, size_help: str) -> None:
    """Flags shared by ``calibrate`` and ``validate``: grid size, clock, repeats, seed."""
    parser.add_argument("--size", choices=("tiny", "quick", "full"), default="full", help=size_help)
    parser.add_argument(
        "--clock",
        choices=("auto", "wall", "process"),
        default="auto",
        help="wall (auto) or process: CPU time of this process (CPU devices only)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed samples per forward pass (default by size: tiny 5, quick 16, full 48)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the networks' weights, the split and the fit"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``specsim calibrate`` (measure a grid on this device, fit, save)."""
    parser.description = (
        "Time a grid of forward passes of real networks on this device, fit the efficiencies, "
        "overheads and roofline sharpness of its HardwareSpec to them, and save the fitted "
        "spec as a TOML file that --hardware and specsim.hardware.get(path) read."
    )
    parser.add_argument("--name", default="local", help="name of the spec")
    parser.add_argument(
        "--output",
        default=None,
        help="TOML file to write (default: $SPECSIM_HARDWARE_DIR or ~/.config/specsim/hardware"
        "/NAME.toml, which load_hardware(NAME) finds)",
    )
    add_measurement_arguments(
        parser,
        size_help="grid: tiny (12 passes), quick (40), full (91, a few minutes)",
    )
    parser.add_argument("--steps", type=positive(int), default=1500, help="Adam steps of the fit")
    return parser


def run_calibrate(args: argparse.Namespace) -> int:
    """Runs ``specsim calibrate``: measures a grid on this device, fits its spec, saves it.

    Raises:
        ValueError: bad options (the CLI exits with code 2).
    """
    import jax

    from specsim._calibrate import (
        LOCAL_FIT,
        calibrate,
        calibration_dir,
        datasheet_entry,
        save_hardware,
    )
    from specsim._validate import configure_measurement
    from specsim.measure import device_kind, local_hardware
    from specsim.measure._grids import calibration_points, default_repeats
    from specsim.measure._timing import measure_step_times

    repeats = args.repeats if args.repeats is not None else default_repeats(args.size)
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    output = Path(args.output) if args.output else calibration_dir() / f"{args.name}.toml"
    if output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a folder; give a .toml file")
    clock = configure_measurement(args.clock)
    on_cpu = jax.devices()[0].platform == "cpu"
    print(f"device: {device_kind()}; clock: {clock}")
    nominal = local_hardware(clock=clock)
    points = calibration_points(args.size)
    frame = measure_step_times(
        points,
        repeats=repeats,
        rounds=max(1, min(16, repeats // 3)) if on_cpu else 1,
        seed=args.seed,
        clock=clock,
        progress=not args.no_progress,
    )
    result = calibrate(frame, nominal, fit=LOCAL_FIT, steps=args.steps, seed=args.seed)
    path = save_hardware(
        result.hardware,
        output,
        args.name,
        source=f"specsim calibrate on {device_kind()}",
        metadata={
            "roofline_sharpness": result.smooth,
            "points": len(frame),
            "mape_percent": result.mape,
            "jax_version": jax.__version__,
            "device": device_kind(),
            "clock": clock,
        },
    )
    print(f"fitted {len(frame)} measured step times; fit error (MAPE) {result.mape:.1f}%")
    print(f"  {'roofline_sharpness':24s} {result.smooth:.6g}  (pass as smooth= to predictions)")
    for key, value in datasheet_entry(result.hardware).items():
        print(f"  {key:24s} {value:.6g}")
    print(f"wrote {path}  (load with specsim.hardware.get({str(path)!r}))")
    return 0
