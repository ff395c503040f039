"""Speculation methods: what proposes the draft tokens the target verifies.

Every speculator is a small frozen pytree answering one protocol (proposal time,
verification shape, expected tokens; `specsim.speculators._protocol`), so
``specsim.predict(deployment, speculator, gamma_or_tree)`` works for all of them:

* a `TransformerSpec`: an independent draft model (``"draft"``);
* `Eagle`: EAGLE-1/2/3 heads on the target's features (``"eagle"``, ``"eagle3"``);
* `Medusa`: extra decoding heads (``"medusa"``);
* `MTP`: multi-token-prediction modules shipped with the target (``"mtp"``);
* `Ngram`: prompt lookup, no model (``"ngram"``);
* `SelfSpeculation`: the target with skipped layers or a bounded cache (``"self"``).

`create` builds one from a method name and its options.
"""

from . import _draft_model as _draft_model  # registers TransformerSpec as a draft model
from ._eagle import EAGLE3_DRAFT_VOCAB as EAGLE3_DRAFT_VOCAB
from ._eagle import Eagle as Eagle
from ._factory import METHOD_OPTIONS as METHOD_OPTIONS
from ._factory import METHODS as METHODS
from ._factory import TREE_METHODS as TREE_METHODS
from ._factory import create as create
from ._medusa import Medusa as Medusa
from ._mtp import MTP as MTP
from ._ngram import DEFAULT_LOOKUP_S as DEFAULT_LOOKUP_S
from ._ngram import Ngram as Ngram
from ._protocol import Proposal as Proposal
from ._protocol import method_name as method_name
from ._self import SelfSpeculation as SelfSpeculation

__all__ = [
    "DEFAULT_LOOKUP_S",
    "EAGLE3_DRAFT_VOCAB",
    "METHODS",
    "METHOD_OPTIONS",
    "MTP",
    "TREE_METHODS",
    "Eagle",
    "Medusa",
    "Ngram",
    "Proposal",
    "SelfSpeculation",
    "create",
    "method_name",
]
