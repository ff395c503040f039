"""Transformer architectures: ``TransformerSpec``, presets and Hugging Face configs."""

from ._catalog import canonical_name as canonical_name
from ._catalog import get as get
from ._catalog import info as info
from ._catalog import names as names
from ._catalog import train_tokens as train_tokens
from ._formats import BYTES_PER_ELEMENT as BYTES_PER_ELEMENT
from ._hf import SUPPORTED_MODEL_TYPES as SUPPORTED_MODEL_TYPES
from ._hf import from_hf_config as from_hf_config
from ._hub_ids import hub_id as hub_id
from ._lookup import ModelSource as ModelSource
from ._lookup import hub_cache_dir as hub_cache_dir
from ._lookup import load as load
from ._lookup import locate as locate
from ._moe import experts_touched as experts_touched
from ._spec import TransformerSpec as TransformerSpec
from ._spec import active_parameter_count as active_parameter_count
from ._spec import layer_weight_count as layer_weight_count
from ._spec import mtp_parameter_count as mtp_parameter_count
from ._spec import parameter_count as parameter_count

__all__ = [
    "BYTES_PER_ELEMENT",
    "SUPPORTED_MODEL_TYPES",
    "ModelSource",
    "TransformerSpec",
    "active_parameter_count",
    "canonical_name",
    "experts_touched",
    "from_hf_config",
    "get",
    "hub_cache_dir",
    "hub_id",
    "info",
    "layer_weight_count",
    "load",
    "locate",
    "mtp_parameter_count",
    "names",
    "parameter_count",
    "train_tokens",
]
