"""The ``specsim`` command line: thin shells over the public API.

Every subcommand prints a readable answer, or JSON with ``--json``. Bad input
(unknown names, invalid sizes, malformed files, impossible setups) exits with code 2
and one line on stderr, ``specsim <command>: <what> <value>: <why>; valid: <choices>``,
before any compilation or measurement. A run that fails later (a full disk) exits 1,
an interrupted one (Ctrl-C) 130, each with one line; no output file is left under its
final name by either (outputs are written atomically, see ``specsim._atomic``). Set
``SPECSIM_DEBUG=1`` for the traceback of an unexpected error.

Each command lives in its own module of this package, which defines
``add_<name>_arguments(parser)`` and ``run_<name>(args)``. ``COMMANDS`` names that
module and the command's one-line summary; a command's module is imported only when
its command is parsed (as pip does), so ``specsim --help`` starts without JAX.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

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
JAX_CACHE_COMMANDS = (
    "cost",
    "evaluate",
    "optimize",
    "schedule",
    "sweep",
    "serve",
    "calibrate",
    "validate",
)


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
        self.exit(EXIT_USAGE, f"{self.prog}: {_usage_message(message, self)}\n")

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

    def parse_args(self, args=None, namespace=None):
        # Unknown flags are reported by the command's parser, which knows its flags.
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._command_parser(namespace) or self
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _command_parser(self, namespace) -> argparse.ArgumentParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(namespace, action.dest, None))
        return None

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
    """Entry point of the ``specsim`` console script.

    Returns the exit status: 0 done, 1 failed, 2 bad input, 130 interrupted.

    Once an output file is in place, Ctrl-C is ignored for the rest of the run, so exit
    130 always means that nothing was written. Called with ``argv`` (in-process, as the
    tests do) the SIGINT handler is restored on return; as the program (``argv=None``)
    it is left ignoring, since an interrupt between here and the process's exit would
    otherwise kill a run whose files are complete.
    """
    import signal

    from specsim import outputs

    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"specsim {args.command}"
    if getattr(args, "no_jax_cache", True) is False:
        from specsim import enable_compilation_cache_from_environment

        enable_compilation_cache_from_environment()
    handler = signal.getsignal(signal.SIGINT)
    outputs.hold_interrupts(True)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; no output written", file=sys.stderr)
        if argv is None:
            # Partial files are already removed; leave now, before the interpreter tears
            # down a JAX runtime stopped mid-computation (that can crash, masking 130).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except ValueError as e:
        print(f"{prefix}: {_in_flags(_one_line(e), parser, args)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        if os.environ.get("SPECSIM_DEBUG"):
            raise
        print(f"{prefix}: failed: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        outputs.hold_interrupts(False)
        if argv is not None and handler is not None and _in_main_thread():
            signal.signal(signal.SIGINT, handler)


# How the library names what the command line calls a flag (the leading <what> of a message).
_API_NAMES = {
    "target": "--target",
    "draft": "--draft",
    "hardware": "--hardware",
    "model": "--model",
    "tp": "--tp",
    "draft_tp": "--draft-tp",
    "batch": "--batch",
    "Workload.batch": "--batch",
    "prompt_tokens": "--prompt",
    "Workload.prompt_tokens": "--prompt",
    "generate_tokens": "--generate",
    "Workload.generate_tokens": "--generate",
    "gamma": "--gamma",
    "alpha": "--alpha",
    "columns": "--columns",
    "best_over": "--best-over",
    "objective": "--objective",
    "out": "--out",
    "chunk_size": "--chunk-size",
    "quadrature_nodes": "--quadrature-nodes",
    "draft_train_tokens": "--draft-train-tokens",
    "target_train_tokens": "--target-train-tokens",
    "weight_dtype": "--weight-dtype",
    "max_gamma": "--max-gamma",
    "max_batch": "--max-batch",
}


def _in_flags(message: str, parser: argparse.ArgumentParser, args) -> str:
    """A library message with its leading Python name replaced by the command's flag."""
    from specsim.messages import relabel

    command = parser._command_parser(args) if isinstance(parser, _Parser) else None
    flags = {o for a in (command or parser)._actions for o in a.option_strings}
    return relabel(message, {k: v for k, v in _API_NAMES.items() if v in flags})


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


_ARGUMENT = re.compile(r"^argument ([^:]+): (.*)$", re.DOTALL)
_CHOICE = re.compile(r"^invalid choice: (.*?) \(choose from (.*)\)$", re.DOTALL)
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$")


def _usage_message(message: str, parser: argparse.ArgumentParser) -> str:
    """argparse's messages in the one style: ``<flag> <value>: <why>; valid: <choices>``."""
    message = " ".join(message.split())
    argument = _ARGUMENT.match(message)
    if argument:
        flag, why = argument.group(1).split("/")[-1], argument.group(2)
        choice = _CHOICE.match(why)
        if choice:
            value, options = choice.group(1).strip("'"), choice.group(2).replace("'", "")
            if flag == "COMMAND":
                return f"unknown command {value!r}; valid: {options}"
            return f"{flag} {value}: unknown choice; valid: {options}"
        if why.startswith("expected one argument"):
            return f"{flag}: needs a value; valid: {flag} VALUE"
        return f"{flag} {why}"
    unrecognized = _UNRECOGNIZED.match(message)
    if unrecognized:
        flags = [
            option
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--")
        ]
        first = unrecognized.group(1).split()[0].split("=")[0]
        near = difflib.get_close_matches(first, flags, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else f"see {parser.prog} --help"
        return f"unrecognized arguments: {unrecognized.group(1)}; valid: {hint}"
    if message.startswith("the following arguments are required"):
        return f"{message}; valid: see {parser.prog} --help"
    return message
