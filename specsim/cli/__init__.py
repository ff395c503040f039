"""The ``specsim`` command line: thin shells over the public API.

Every subcommand prints a readable answer, or JSON with ``--json``. Bad input
(unknown names, invalid sizes, malformed files) exits with code 2 and a
one-line message on stderr.

Each command lives in its own module of this package, which defines
``add_<name>_arguments(parser)`` and ``run_<name>(args)``. ``COMMANDS`` names that
module and the command's one-line summary; a command's module is imported only when
its command is parsed (as pip does), so ``specsim --help`` starts without JAX.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "EXIT_USAGE", "build_parser", "main"]

EXIT_USAGE = 2

# name -> (module in this package, one-line summary), in the order `specsim --help` lists.
COMMANDS: dict[str, tuple[str, str]] = {
    "hardware": (".catalog", "list the accelerator catalogue"),
    "models": (".catalog", "list the model catalogue"),
    "cost": (".cost", "FLOPs, bytes and time of one forward pass"),
    "evaluate": (".evaluate", "throughput of one speculative-decoding setup"),
    "optimize": (".optimize", "the throughput-optimal draft and lookahead for one scenario"),
    "schedule": (".schedule", "per-batch gamma, switch-off batch and serving snippets"),
    "sweep": (".sweep", "a Cartesian grid of what-if scenarios to CSV or Parquet"),
    "serve": (".serve", "goodput, latency and cost under load, with and without speculation"),
    "calibrate": (".calibrate", "measure a grid on this device, fit its spec and save it"),
    "validate": (".validate", "predicted versus measured, locally and against papers"),
}


# Commands that compile JAX programs: they take --no-jax-cache and, without it, use the
# persistent compilation cache (specsim._compilation_cache).
JAX_CACHE_COMMANDS = ("cost", "evaluate", "optimize", "schedule", "sweep", "calibrate", "validate")


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the help already states a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "default" not in text
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(default, bool)
        ):
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # Paragraphs are re-wrapped; lines that start with a space (examples) stay as typed.
        fill = super()._fill_text
        lines = text.splitlines() or [""]
        return "\n".join(
            indent + line if line.startswith(" ") else fill(line, width, indent) for line in lines
        )

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            # argparse measures command names one indent shallower than it prints them.
            longest = max(map(len, action.choices)) + self._current_indent
            self._action_max_length = max(
                self._action_max_length, longest + 2 * self._indent_increment
            )


class _Parser(argparse.ArgumentParser):
    """One-line errors with exit code 2; a command's flags are added when first needed."""

    def __init__(self, *args, command: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._command = command

    def error(self, message: str):  # one line, exit code 2
        self.exit(EXIT_USAGE, f"specsim: error: {message}\n")

    def _add_command_arguments(self) -> None:
        if self._command is None:
            return
        name, self._command = self._command, None
        module = importlib.import_module(COMMANDS[name][0], __name__)
        getattr(module, f"add_{name}_arguments")(self)
        if name in JAX_CACHE_COMMANDS:
            self.add_argument(
                "--no-jax-cache",
                action="store_true",
                help="do not read or write the persistent JAX compilation cache (default: on, "
                "in the user cache directory, e.g. ~/.cache/specsim/jax; the environment "
                "variable SPECSIM_JAX_CACHE=off turns it off, SPECSIM_JAX_CACHE=DIR moves it)",
            )
        self.set_defaults(func=getattr(module, f"run_{name}"))

    def parse_known_args(self, args=None, namespace=None):
        self._add_command_arguments()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_command_arguments()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_command_arguments()
        return super().format_usage()


def build_parser() -> argparse.ArgumentParser:
    """The full ``specsim`` argument parser (each command's flags load with its module)."""
    parser = _Parser(
        prog="specsim",
        description="Differentiable simulator of speculative-decoding throughput on GPUs and TPUs.",
        epilog="Run 'specsim COMMAND --help' for a command's flags.",
        formatter_class=lambda prog: HelpFormatter(prog, max_help_position=30),
    )
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:] + ".", command=name
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``specsim`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "no_jax_cache", True) is False:
        from specsim._compilation_cache import cache_dir_from_environment, enable_compilation_cache

        folder = cache_dir_from_environment()
        if folder is not None:
            enable_compilation_cache(folder)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        return 0
    except ValueError as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"specsim: error: {message}", file=sys.stderr)
        return EXIT_USAGE
