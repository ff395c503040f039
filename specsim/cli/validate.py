"""``specsim validate``: predicted versus measured, on this device and against papers."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from .calibrate import add_measurement_arguments, plausibility_metadata

__all__ = ["RESULTS_DIR_ENV", "add_validate_arguments", "run_validate"]

# Environment variable naming the folder `specsim validate` writes its tables into.
RESULTS_DIR_ENV = "SPECSIM_RESULTS_DIR"
# specsim.validate.STATISTICS, spelled out so that --help need not import the library.
STATISTICS = ("p10", "median")


def add_validate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags of ``specsim validate``."""
    parser.description = (
        "How far specsim's predictions are from reality. local: time real networks on this "
        "device, calibrate on half of the forward passes and predict the other half, then "
        "predict the tokens/s of real speculative decoding from the measured acceptance. "
        "published: predict measurements from papers and repositories with the catalogue's "
        "default efficiencies. Prints a Markdown report; --output-dir also writes CSV, JSON "
        "and the fitted hardware TOML."
    )
    parser.add_argument(
        "--part",
        choices=("all", "local", "published"),
        default="all",
        help="local measurements, published measurements, or both",
    )
    add_measurement_arguments(
        parser,
        size_help="local grid, with measured durations on a 2-core CPU: tiny (12 passes, 2 "
        "speculative-decoding runs; 1.3 min), quick (35, 6; 4 min), full (77, 8; 6 min) "
        "(benchmarks/results/sizes_cpu.md; an H100: tiny 68 s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved sweeps of the grid (default: about repeats / 3 on a CPU, up to 16; "
        "1 elsewhere)",
    )
    parser.add_argument(
        "--sd-repeats",
        type=int,
        default=None,
        help="timed runs per speculative-decoding configuration (default by size: tiny 2, "
        "quick 4, full 5)",
    )
    parser.add_argument(
        "--statistic",
        choices=STATISTICS,
        default="p10",
        help="statistic of repeated timings compared with predictions: p10 (lower decile, "
        "robust to other programs on the machine) or median",
    )
    parser.add_argument(
        "--output-dir",
        default=os.environ.get(RESULTS_DIR_ENV),
        help=f"write PREFIX.md/.csv/.json/.hardware.toml here (default: ${RESULTS_DIR_ENV}; "
        "unset: print only)",
    )
    parser.add_argument(
        "--prefix", default=None, help="file name prefix (default: validate_<platform>)"
    )
    parser.add_argument(
        "--published-file",
        default=None,
        help="another published-data TOML (default: specsim/data/published.toml)",
    )
    return parser


def _command_line(args: argparse.Namespace) -> str:
    parts = ["specsim", "validate", "--part", args.part, "--size", args.size]
    for option in ("repeats", "rounds", "sd_repeats"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", str(value)]
    parts += ["--seed", str(args.seed), "--clock", args.clock, "--statistic", args.statistic]
    if args.output_dir:
        parts += ["--output-dir", str(args.output_dir)]
    if args.prefix:
        parts += ["--prefix", args.prefix]
    if args.published_file:
        parts += ["--published-file", str(args.published_file)]
    return shlex.join(parts)


def run_validate(args: argparse.Namespace) -> int:
    """Runs ``specsim validate``: predicted versus measured, locally and against papers.

    Raises:
        ValueError: bad options or unreadable files (the CLI exits with code 2).
    """
    for option in ("repeats", "rounds", "sd_repeats"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    output_dir = Path(args.output_dir) if args.output_dir else None
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output-dir {str(output_dir)!r} is not a folder")
    import jax

    from specsim import measure, save_hardware, validate

    # Before anything runs JAX: the measurement settings only apply to a fresh backend.
    clock = measure.configure_measurement(args.clock) if args.part != "published" else "n/a"
    published = None
    if args.part in ("all", "published"):
        published = validate.validate_published(args.published_file)  # fails fast on a bad file

    sections, summary = [], {}
    command = _command_line(args)
    machine = measure.machine_description(clock)
    local = None
    if args.part in ("all", "local"):
        local = validate.validate_local(
            args.size,
            repeats=args.repeats,
            rounds=args.rounds,
            sd_repeats=args.sd_repeats,
            seed=args.seed,
            clock=args.clock,
            statistic=args.statistic,
            progress=not args.no_progress,
        )
        text, part_summary = validate.report_local(local)
        sections.append(text)
        summary.update(part_summary)
    if published is not None:
        text, part_summary = validate.report_published(published)
        sections.append(text)
        summary.update(part_summary)

    header = [
        "# specsim validate",
        "",
        f"Command: `{command}`",
        "",
        *(f"- {key}: {value}" for key, value in machine.items()),
        "",
    ]
    report = "\n".join(header + sections)
    print(report)
    if output_dir is not None:
        prefix = args.prefix or f"validate_{jax.devices()[0].platform}"
        output_dir.mkdir(parents=True, exist_ok=True)
        written = [output_dir / f"{prefix}.md"]
        written[0].write_text(report + "\n")
        if local is not None:
            local.steps.to_csv(output_dir / f"{prefix}.steps.csv", index=False)
            written.append(output_dir / f"{prefix}.steps.csv")
            if len(local.speculative):
                local.speculative.to_csv(output_dir / f"{prefix}.sd.csv", index=False)
                written.append(output_dir / f"{prefix}.sd.csv")
            written.append(
                save_hardware(
                    local.calibration.hardware,
                    output_dir / f"{prefix}.hardware.toml",
                    "local",
                    source=f"specsim validate (train half) on {machine['device']}",
                    metadata={
                        "train_mape_percent": local.train_mape,
                        "command": command,
                        "clock": clock,
                        "statistic": local.statistic,
                        **plausibility_metadata(local.implausible),
                    },
                )
            )
        if published is not None:
            published.to_csv(output_dir / f"{prefix}.published.csv", index=False)
            written.append(output_dir / f"{prefix}.published.csv")
        summary_path = output_dir / f"{prefix}.json"
        summary_path.write_text(
            json.dumps({"command": command, "machine": machine, **summary}, indent=2) + "\n"
        )
        written.append(summary_path)
        print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
