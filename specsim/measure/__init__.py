"""Real networks on the local device: flax transformers, speculative decoding, timings."""

from ._device import device_kind as device_kind
from ._device import local_hardware as local_hardware
from ._drafts import layer_skip_draft as layer_skip_draft
from ._drafts import tiny_spec as tiny_spec
from ._model import KVCache as KVCache
from ._model import Model as Model
from ._model import ModelConfig as ModelConfig
from ._model import build_model as build_model
from ._model import forward as forward
from ._model import init_cache as init_cache
from ._speculative import DecodeResult as DecodeResult
from ._speculative import SpeculativeResult as SpeculativeResult
from ._speculative import generate as generate
from ._speculative import speculative_generate as speculative_generate
