"""One style for messages about bad input: ``<what> <value>: <why>; valid: <choices>``.

The library names its arguments as Python spells them (``prompt_tokens``); a program built
on it renames the leading ``<what>`` to its own name for the input (`relabel`), as
specsim's command line does with its flags (``--prompt``). No JAX here.

Examples:
    >>> from specsim import messages
    >>> error = messages.invalid("tp", 3, "does not divide the 32 attention heads", ["1", "2"])
    >>> messages.relabel(str(error), {"tp": "--tp"})
    '--tp 3: does not divide the 32 attention heads; valid: 1, 2'
"""

from ._errors import closest as closest
from ._errors import invalid as invalid
from ._errors import relabel as relabel

__all__ = ["closest", "invalid", "relabel"]
