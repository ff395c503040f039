"""specsim: a differentiable JAX simulator of speculative-decoding throughput.

The front doors:

* ``specsim.throughput(target, draft, hardware, workload, gamma, acceptance)``, or
  ``specsim.predict(deployment, speculator, gamma_or_tree)`` with a ``specsim.Deployment``
  and any method of ``specsim.speculators`` (draft model, EAGLE, Medusa, MTP, n-gram,
  self-speculation), drafting a chain or a ``TokenTree`` / ``DynamicTree``;
  ``specsim.Evaluator(deployment, speculator)`` compiles it once for many single calls
* ``specsim.optimize_draft(...)`` for the best draft and lookahead, by gradient descent
* ``specsim.hardware.get(name)`` / ``specsim.models.get(name)``
* ``specsim.forward_cost`` / ``specsim.step_time`` for one forward pass, under a software
  stack's overheads (``specsim.runtime.get(name)``)
* ``specsim.saturated_throughput`` for a continuously batching engine at full load
* ``specsim.theory`` for hardware-free closed forms
* ``specsim.calibrate(...)`` to fit a `HardwareSpec` to measured step times
  (``specsim.measure`` runs the real networks; ``specsim.measure_and_calibrate`` does
  both on this device, ``specsim.validate`` checks predictions against measurements)

Smaller public modules: ``specsim.feasibility`` (can a setup be served: tensor-parallel
splits, vocabularies), ``specsim.limits`` (the largest inputs a call accepts),
``specsim.outputs`` (atomic output files), ``specsim.messages`` (the one style of
bad-input messages). ``specsim.SWEEP_AXES`` names the axes of `sweep` in row order, and
``DEFAULT_OPTIMIZER`` (Adam with ``DEFAULT_LEARNING_RATE``), ``DEFAULT_STEPS`` and
``DEFAULT_RESTARTS`` are the search settings of `optimize_draft` and `optimize_scenarios`;
``DEFAULT_RANK_DECAY`` is the rank decay `AcceptanceStats.tree` assumes for a token tree.

Names are imported on first use (PEP 562), so ``import specsim`` and the ``specsim``
command's start-up do not pay for JAX, pandas or matplotlib until something needs them.

Examples:
    >>> import specsim
    >>> specsim.DEFAULT_STEPS, specsim.DEFAULT_RESTARTS, specsim.DEFAULT_LEARNING_RATE
    (100, 4, 0.08)
    >>> specsim.DEFAULT_RANK_DECAY
    0.55
    >>> specsim.SWEEP_AXES[:4], specsim.SWEEP_AXES[-1]
    (('hardware', 'target', 'draft', 'tp'), 'gamma')
"""

import importlib as _importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (relative to this package).
_EXPORTS = {
    "engines": ".engines",
    "hardware": ".hardware",
    "models": ".models",
    "plot": ".plot",
    "serving": ".serving",
    "runtime": ".runtime",
    "speculators": ".speculators",
    "theory": ".theory",
    "feasibility": ".feasibility",
    "limits": ".limits",
    "messages": ".messages",
    "outputs": ".outputs",
    "ConstantAcceptance": "._acceptance",
    "PositionalAcceptance": "._acceptance",
    "SDSLAcceptance": "._acceptance",
    "TreeAcceptance": "._acceptance",
    "acceptance_rate": "._acceptance",
    "expected_tokens_per_step": "._acceptance",
    "enable_compilation_cache": "._compilation_cache",
    "enable_compilation_cache_from_environment": "._compilation_cache",
    "CalibrationResult": "._calibrate",
    "StepTimeData": "._calibrate",
    "calibrate": "._calibrate",
    "load_hardware": ".hardware",
    "predict_step_times": "._calibrate",
    "save_hardware": ".hardware",
    "LocalCalibration": "._local_calibration",
    "measure_and_calibrate": "._local_calibration",
    "STEP_BOUND_NAMES": "._cost",
    "ForwardCost": "._cost",
    "MemoryFootprint": "._cost",
    "StepTime": "._cost",
    "fits": "._cost",
    "forward_cost": "._cost",
    "memory_footprint": "._cost",
    "step_time": "._cost",
    "pass_time": "._cost",
    "Deployment": "._deployment",
    "AcceptanceStats": "._measured_acceptance",
    "DEFAULT_RANK_DECAY": "._measured_acceptance",
    "acceptance_from_counts": "._measured_acceptance",
    "acceptance_from_histogram": "._measured_acceptance",
    "acceptance_from_tau": "._measured_acceptance",
    "load_acceptance": "._measured_acceptance",
    "DraftBounds": "._draft",
    "DraftParams": "._draft",
    "DraftTemplate": "._draft",
    "buildable_draft": "._draft",
    "Evaluator": "._evaluator",
    "GridResult": "._optimize",
    "Histogram": "._reduce",
    "Quantiles": "._reduce",
    "TopK": "._reduce",
    "OptimizeResult": "._optimize",
    "DEFAULT_LEARNING_RATE": "._optimize",
    "DEFAULT_OPTIMIZER": "._optimize",
    "DEFAULT_RESTARTS": "._optimize",
    "DEFAULT_STEPS": "._optimize",
    "Scenario": "._optimize",
    "grid_search": "._optimize",
    "grid_search_scenarios": "._optimize",
    "optimize_draft": "._optimize",
    "optimize_scenarios": "._optimize",
    "BatchingLimits": "._saturation",
    "SaturationReport": "._saturation",
    "saturated_throughput": "._saturation",
    "trtllm_bench_limits": "._saturation",
    "Schedule": "._schedule",
    "speculation_schedule": "._schedule",
    "SweepResult": "._sweep",
    "SWEEP_AXES": "._sweep:AXES",
    "sweep": "._sweep",
    "sweep_methods": "._method_sweep",
    "ThroughputReport": "._throughput",
    "crossover_batch": "._throughput",
    "predict": "._throughput",
    "throughput": "._throughput",
    "DynamicTree": "._tree",
    "TokenTree": "._tree",
    "best_tree": "._tree",
    "ChainSearchResult": "._tree_search",
    "TreeSearchResult": "._tree_search",
    "count_tree_profiles": "._tree_search",
    "exact_tree_search": "._tree_search",
    "optimize_chain": "._tree_search",
    "optimize_tree": "._tree_search",
    "random_tree_search": "._tree_search",
    "tree_profiles": "._tree_search",
    "tree_expected_tokens": "._tree",
    "Workload": "._workload",
    "HardwareSpec": ".hardware",
    "TransformerSpec": ".models",
    "RuntimeProfile": ".runtime",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'specsim' has no attribute {name!r}")
    if module == f".{name}":  # a subpackage or public module
        value = _importlib.import_module(module, __name__)
    else:  # "._module" or "._module:its_name"
        module, _, attribute = module.partition(":")
        value = getattr(_importlib.import_module(module, __name__), attribute or name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_OPTIMIZER",
    "DEFAULT_RANK_DECAY",
    "DEFAULT_RESTARTS",
    "DEFAULT_STEPS",
    "STEP_BOUND_NAMES",
    "SWEEP_AXES",
    "AcceptanceStats",
    "BatchingLimits",
    "CalibrationResult",
    "ChainSearchResult",
    "ConstantAcceptance",
    "Deployment",
    "DraftBounds",
    "DraftParams",
    "DraftTemplate",
    "DynamicTree",
    "Evaluator",
    "ForwardCost",
    "GridResult",
    "HardwareSpec",
    "Histogram",
    "LocalCalibration",
    "MemoryFootprint",
    "OptimizeResult",
    "PositionalAcceptance",
    "Quantiles",
    "RuntimeProfile",
    "SDSLAcceptance",
    "SaturationReport",
    "Scenario",
    "Schedule",
    "StepTime",
    "StepTimeData",
    "SweepResult",
    "ThroughputReport",
    "TokenTree",
    "TopK",
    "TransformerSpec",
    "TreeAcceptance",
    "TreeSearchResult",
    "Workload",
    "acceptance_from_counts",
    "acceptance_from_histogram",
    "acceptance_from_tau",
    "acceptance_rate",
    "best_tree",
    "buildable_draft",
    "calibrate",
    "count_tree_profiles",
    "crossover_batch",
    "enable_compilation_cache",
    "enable_compilation_cache_from_environment",
    "engines",
    "exact_tree_search",
    "expected_tokens_per_step",
    "feasibility",
    "fits",
    "forward_cost",
    "grid_search",
    "grid_search_scenarios",
    "hardware",
    "limits",
    "load_acceptance",
    "load_hardware",
    "measure_and_calibrate",
    "memory_footprint",
    "messages",
    "models",
    "optimize_chain",
    "optimize_draft",
    "optimize_scenarios",
    "optimize_tree",
    "outputs",
    "pass_time",
    "plot",
    "predict",
    "predict_step_times",
    "random_tree_search",
    "runtime",
    "saturated_throughput",
    "save_hardware",
    "serving",
    "speculation_schedule",
    "speculators",
    "step_time",
    "sweep",
    "sweep_methods",
    "theory",
    "throughput",
    "tree_expected_tokens",
    "tree_profiles",
    "trtllm_bench_limits",
]
