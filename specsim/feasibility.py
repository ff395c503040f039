"""Can a setup be served at all? Tensor-parallel splits, draft placement, vocabularies.

Serving engines refuse setups specsim could otherwise price: a tensor-parallel degree that
does not split the attention heads, a draft on more chips than the engine allows, a draft
whose tokens the target cannot read; and specsim refuses a tensor-parallel group larger
than the chips the interconnect joins (``interconnect_domain_chips``), whose all-reduces
would cross a scale-out network it does not price. Single configurations are refused with
a ``ValueError`` naming the rule (`check_parallelism`, `check_domain`, `check_vocabulary`);
grids mark each point with a code of ``FEASIBILITY_NAMES`` (the ``feasibility`` column of a
sweep), which `reason` turns into a sentence.

Examples:
    >>> from specsim import feasibility
    >>> feasibility.tp_problem(32, 8, 3)
    'does not divide the 32 attention heads'
    >>> feasibility.valid_tp(32, 8)
    [1, 2, 4, 8, 16, 32]
    >>> feasibility.reason("memory")
    "weights and KV caches exceed one chip's memory"
"""

from ._feasibility import FEASIBILITY_NAMES as FEASIBILITY_NAMES
from ._feasibility import check_domain as check_domain
from ._feasibility import check_parallelism as check_parallelism
from ._feasibility import check_vocabulary as check_vocabulary
from ._feasibility import reason as reason
from ._feasibility import tp_problem as tp_problem
from ._feasibility import valid_tp as valid_tp

__all__ = [
    "FEASIBILITY_NAMES",
    "check_domain",
    "check_parallelism",
    "check_vocabulary",
    "reason",
    "tp_problem",
    "valid_tp",
]
