"""``specsim validate``: predicted versus measured, on this device and against papers."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from ._args import add_overwrite_argument, whole
from .calibrate import add_measurement_arguments, check_name, plausibility_metadata

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
        type=whole(1),
        default=None,
        help="interleaved sweeps of the grid (default: about repeats / 3 on a CPU, up to 16; "
        "1 elsewhere)",
    )
    parser.add_argument(
        "--sd-repeats",
        type=whole(1),
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
    add_overwrite_argument(parser)
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


_SUFFIXES = (".md", ".steps.csv", ".sd.csv", ".hardware.toml", ".published.csv", ".json")


def _output_paths(args: argparse.Namespace, output_dir: Path | None) -> dict[str, Path]:
    """The files ``--output-dir`` will hold, by suffix, each checked as writable now."""
    if output_dir is None:
        return {}
    from specsim.outputs import check_output_path

    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output-dir {output_dir}: not a folder; valid: a folder")
    if args.prefix is not None:
        check_name(args.prefix, "--prefix")
        prefix = args.prefix
    else:
        import jax

        prefix = f"validate_{jax.devices()[0].platform}"
    paths = {suffix: output_dir / f"{prefix}{suffix}" for suffix in _SUFFIXES}
    for path in paths.values():
        check_output_path(
            path,
            what="--output-dir",
            overwrite=args.overwrite,
            overwrite_hint="--overwrite",
            make_parents=True,
        )
    return paths


def run_validate(args: argparse.Namespace) -> int:
    """Runs ``specsim validate``: predicted versus measured, locally and against papers.

    Raises:
        ValueError: bad options or unreadable files (the CLI exits with code 2).
    """
    output_dir = Path(args.output_dir).expanduser() if args.output_dir else None
    if args.prefix is not None:
        check_name(args.prefix, "--prefix")
    from specsim import measure, save_hardware, validate

    # Before anything runs JAX: the measurement settings only apply to a fresh backend.
    clock = measure.configure_measurement(args.clock) if args.part != "published" else "n/a"
    outputs = _output_paths(args, output_dir)  # every file checked before anything runs
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
        import contextlib

        from specsim.outputs import atomic_output

        def temp(suffix: str) -> str:  # each file renamed into place once all are written
            return files.enter_context(
                atomic_output(
                    outputs[suffix],
                    overwrite=args.overwrite,
                    what="--output-dir",
                    overwrite_hint="--overwrite",
                    make_parents=True,
                )
            )

        written = []
        with contextlib.ExitStack() as files:
            Path(temp(".md")).write_text(report + "\n")
            written.append(outputs[".md"])
            if local is not None:
                local.steps.to_csv(temp(".steps.csv"), index=False)
                written.append(outputs[".steps.csv"])
                if len(local.speculative):
                    local.speculative.to_csv(temp(".sd.csv"), index=False)
                    written.append(outputs[".sd.csv"])
                save_hardware(
                    local.calibration.hardware,
                    temp(".hardware.toml"),
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
                written.append(outputs[".hardware.toml"])
            if published is not None:
                published.to_csv(temp(".published.csv"), index=False)
                written.append(outputs[".published.csv"])
            Path(temp(".json")).write_text(
                json.dumps(
                    {"command": command, "machine": machine, **summary},
                    indent=2,
                    allow_nan=False,
                )
                + "\n"
            )
            written.append(outputs[".json"])
        print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
