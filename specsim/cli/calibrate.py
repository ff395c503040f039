"""``specsim calibrate``: measure a grid on this device, fit its spec and save it as TOML."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ._args import add_overwrite_argument, positive, whole

# A spec name is a file name too (NAME.toml) and a TOML table key.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$")


def check_name(name: str, flag: str = "--name") -> str:
    """Refuses a spec name that cannot be a file name and a TOML key."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"{flag} {name!r}: not a usable name; valid: up to 64 letters, digits, spaces "
            "and . _ + -, starting with a letter or digit"
        )
    return name


__all__ = ["add_calibrate_arguments", "plausibility_metadata", "run_calibrate"]


def plausibility_metadata(implausible: list[str]) -> dict[str, object]:
    """Keys of a hardware file's ``calibration`` table that say whether the fit is plausible."""
    if not implausible:
        return {"plausible": True}
    return {"plausible": False, "implausible": "; ".join(implausible)}


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
        type=whole(1),
        default=None,
        help="timed samples per forward pass (default by size: tiny 5, quick 16, full 48)",
    )
    parser.add_argument(
        "--seed",
        type=whole(0),
        default=0,
        help="seed of the networks' weights, the split and the fit",
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
    add_overwrite_argument(parser)
    add_measurement_arguments(
        parser,
        size_help="grid, with measured durations on a 2-core CPU: tiny (12 passes; 46 s), "
        "quick (35; 2 min), full (77; under 6 min) (benchmarks/results/sizes_cpu.md)",
    )
    parser.add_argument("--steps", type=positive(int), default=1500, help="Adam steps of the fit")
    parser.add_argument(
        "--accept-implausible",
        action="store_true",
        help="write the file even when a fitted rate is over 3x its micro-benchmark or the "
        "fitted gemm_weight_passes over 4 (the file is then flagged plausible = false); "
        "without it such a fit is refused, exit code 1",
    )
    return parser


def run_calibrate(args: argparse.Namespace) -> int:
    """Runs ``specsim calibrate``: measures a grid on this device, fits its spec, saves it.

    Raises:
        ValueError: bad options (the CLI exits with code 2).
    """
    import jax

    from specsim import measure, measure_and_calibrate, save_hardware
    from specsim.hardware import calibration_dir
    from specsim.outputs import atomic_output, check_output_path

    check_name(args.name)
    output = Path(args.output) if args.output else calibration_dir() / f"{args.name}.toml"
    write = {"what": "--output", "overwrite": args.overwrite, "overwrite_hint": "--overwrite"}
    # Before anything is measured: a path that cannot be written is refused now.
    check_output_path(output, suffixes=(".toml",), make_parents=True, **write)
    local = measure_and_calibrate(
        args.size,
        repeats=args.repeats,
        seed=args.seed,
        clock=args.clock,
        steps=args.steps,
        progress=not args.no_progress,
    )
    result, device = local.calibration, measure.device_kind()
    implausible = local.implausible
    for line in implausible:
        print(f"specsim: warning: {line}", file=sys.stderr)
    if implausible and not args.accept_implausible:
        print(
            "specsim: error: implausible calibration, nothing written; measure a larger grid "
            "(--size quick or full) or pass --accept-implausible to keep it, flagged",
            file=sys.stderr,
        )
        return 1
    with atomic_output(output, make_parents=True, **write) as temp:
        save_hardware(
            result.hardware,
            temp,
            args.name,
            source=f"specsim calibrate on {device}",
            metadata={
                "points": len(local.steps),
                "mape_percent": result.mape,
                "jax_version": jax.__version__,
                "device": device,
                "clock": local.clock,
                **plausibility_metadata(implausible),
            },
        )
    print(f"fitted {len(local.steps)} measured step times; fit error (MAPE) {result.mape:.1f}%")
    for key, value in result.hardware.to_datasheet().items():
        print(f"  {key:28s} {value:.6g}")
    path = output
    print(f"wrote {path}  (load with specsim.hardware.get({str(path)!r}))")
    return 0
