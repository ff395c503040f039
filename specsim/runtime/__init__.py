"""Inference software stacks: ``RuntimeProfile`` and the sourced profile catalogue."""

from ._catalog import DEFAULT as DEFAULT
from ._catalog import canonical_name as canonical_name
from ._catalog import default_for as default_for
from ._catalog import entry as entry
from ._catalog import get as get
from ._catalog import names as names
from ._spec import RuntimeProfile as RuntimeProfile

__all__ = ["DEFAULT", "RuntimeProfile", "canonical_name", "default_for", "entry", "get", "names"]
