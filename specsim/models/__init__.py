"""Transformer architectures: ``TransformerSpec``, presets and Hugging Face configs."""

from ._catalog import get as get
from ._catalog import info as info
from ._catalog import names as names
from ._catalog import train_tokens as train_tokens
from ._hf import SUPPORTED_MODEL_TYPES as SUPPORTED_MODEL_TYPES
from ._hf import from_hf_config as from_hf_config
from ._spec import TransformerSpec as TransformerSpec
from ._spec import layer_weight_count as layer_weight_count
from ._spec import parameter_count as parameter_count

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "TransformerSpec",
    "from_hf_config",
    "get",
    "info",
    "layer_weight_count",
    "names",
    "parameter_count",
    "train_tokens",
]
