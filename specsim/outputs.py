"""Output files written atomically: a file under its final name is always complete.

Every file specsim writes (sweep tables, charts, fitted hardware TOML, validation reports)
goes through `atomic_output`, which writes a hidden temporary file beside the target and
renames it onto the final name only when it is complete; `check_output_path` refuses a path
that cannot be written before any work starts. A program built on specsim (its own command
line is one) writes its files the same way. No JAX here.

Examples:
    >>> import os, tempfile
    >>> from specsim import outputs
    >>> path = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> from pathlib import Path
    >>> with outputs.atomic_output(path) as temp:
    ...     _ = Path(temp).write_text("a,b")
    >>> Path(path).read_text()
    'a,b'
"""

from ._atomic import atomic_output as atomic_output
from ._atomic import check_output_path as check_output_path
from ._atomic import committed_paths as committed_paths
from ._atomic import hold_interrupts as hold_interrupts

__all__ = ["atomic_output", "check_output_path", "committed_paths", "hold_interrupts"]
