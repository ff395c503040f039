"""Serving-engine configurations that load: vLLM, SGLang and TensorRT-LLM, per release.

A `ServingPlan` (speculation method, models by loadable id, lookahead per batch-size
range, TP, method settings) becomes the files one engine release takes (`emit`): a
``vllm serve`` script and ``--speculative-config`` JSON, an SGLang launch script and
adaptive-speculation JSON, a TensorRT-LLM LLM-API snippet and ``trtllm-serve`` YAML. Every
key is checked (`check`) against a schema of that release written from the engine's
source and stored in ``specsim/engines/schemas/`` with the files and release artifacts
read; the files name them in a comment.

Examples:
    >>> from specsim import engines
    >>> plan = engines.ServingPlan.create("eagle3", "meta-llama/Llama-3.1-8B-Instruct",
    ...     [(1, 8, 5), (9, 32, 3), (33, 512, 0)], draft_id="yuhuili/EAGLE3-LLaMA3.1-Instruct-8B")
    >>> sorted(engines.emit(plan, "sglang").files)
    ['adaptive_config.json', 'launch.sh']
"""

from ._emit import emit as emit
from ._emit import write as write
from ._files import EngineFiles as EngineFiles
from ._files import UnsupportedPlan as UnsupportedPlan
from ._plan import METHODS as METHODS
from ._plan import ServingPlan as ServingPlan
from ._plan import is_placeholder as is_placeholder
from ._plan import model_id as model_id
from ._plan import placeholder as placeholder
from ._schema import ENGINES as ENGINES
from ._schema import EngineVersion as EngineVersion
from ._schema import check as check
from ._schema import engine_name as engine_name
from ._schema import resolve_version as resolve_version
from ._schema import versions as versions
from ._tensorrt_llm import tensorrt_llm_schedule as tensorrt_llm_schedule

__all__ = [
    "ENGINES",
    "METHODS",
    "EngineFiles",
    "EngineVersion",
    "ServingPlan",
    "UnsupportedPlan",
    "check",
    "emit",
    "engine_name",
    "is_placeholder",
    "model_id",
    "placeholder",
    "resolve_version",
    "tensorrt_llm_schedule",
    "versions",
    "write",
]
