"""Re-fit stored CPU validation runs with the current physics, without measuring again.

`specsim validate` measures a grid of forward passes and speculative-decoding runs, fits
the hardware on half of the passes and predicts the rest. Timing again on a loaded shared
machine adds its own noise; this script replays the stored measurements
(``benchmarks/results/<prefix>.steps.csv`` and ``.sd.csv``) through the current cost model:
the same split, the same fit (``LOCAL_FIT``), the same acceptance and workload per run.

    python benchmarks/revalidate_stored.py validate_cpu validate_cpu_seed1

Prints the held-out step-time MAPE, the speculative tokens/s MAPE and the bias of the
predicted speedup at batch 1 and 4 (predicted / measured - 1, mean over runs).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd

import specsim
from specsim._calibrate import LOCAL_FIT
from specsim.measure._timing import config_from_columns
from specsim.validate._local import loop_predictions, network_label

RESULTS = Path(__file__).resolve().parent / "results"
# The CPU grids' speculative runs (specsim.measure.speculative_configs on a CPU).
PROMPT_TOKENS, NEW_TOKENS = 32, 96


def replay(prefix: str) -> None:
    stored = specsim.hardware.get(str(RESULTS / f"{prefix}.hardware.toml"))
    nominal = stored.replace(  # the run's micro-benchmarked peaks; what is fitted starts at 1/0
        compute_efficiency=1.0,
        memory_efficiency=1.0,
        attention_efficiency=1.0,
        attention_compute_efficiency=1.0,
        kernel_launch_s=0.0,
        step_overhead_s=0.0,
        gemm_weight_passes=0.0,
    )
    steps = pd.read_csv(RESULTS / f"{prefix}.steps.csv")
    train = (steps["split"] == "train").to_numpy()
    fit = specsim.calibrate(steps[train], nominal, fit=LOCAL_FIT, time_column="p10_s")
    held = specsim.StepTimeData.from_frame(steps[~train], time_column="p10_s")
    predicted = np.asarray(specsim.predict_step_times(held, fit.hardware, fit.smooth))
    step_mape = 100 * np.mean(np.abs(predicted / steps["p10_s"][~train].to_numpy() - 1))
    networks = {}
    for _, row in steps.iterrows():
        config = config_from_columns(row)
        networks[network_label(config)] = config
    rows = []
    for _, run in pd.read_csv(RESULTS / f"{prefix}.sd.csv").iterrows():
        config = networks[run["target"]]
        loop = types.SimpleNamespace(
            batch=int(run["batch"]),
            prompt_tokens=PROMPT_TOKENS,
            new_tokens=NEW_TOKENS,
            gamma=int(run["gamma"]),
        )
        report, baseline = loop_predictions(
            config.to_spec(),
            config.with_layers(int(run["draft_layers"])).to_spec(),
            fit.hardware,
            loop,
            float(np.clip(run["alpha"], 1e-3, 1 - 1e-3)),
            fit.smooth,
        )
        rows.append(
            {
                "name": run["name"],
                "batch": int(run["batch"]),
                "tokens_per_s_err": 100
                * (float(report.tokens_per_s) / run["measured_tokens_per_s"] - 1),
                "baseline_err": 100 * (baseline / run["measured_baseline_tokens_per_s"] - 1),
                "speedup_err": 100
                * (float(report.tokens_per_s) / baseline / run["measured_speedup"] - 1),
                "stored_speedup_err": 100
                * (run["predicted_speedup"] / run["measured_speedup"] - 1),
            }
        )
    runs = pd.DataFrame(rows)
    print(f"## {prefix}")
    print(f"fitted: { {k: round(v, 4) for k, v in fit.parameters().items()} }")
    print(runs.round(1).to_string(index=False))
    bias = runs.groupby("batch")[["speedup_err", "stored_speedup_err"]].mean().round(1)
    print(
        f"held-out step MAPE {step_mape:.1f}%, SD tokens/s MAPE "
        f"{runs.tokens_per_s_err.abs().mean():.1f}%; speedup bias by batch (now, stored):"
    )
    print(bias.to_string())
    print()


if __name__ == "__main__":
    for prefix in sys.argv[1:] or ["validate_cpu", "validate_cpu_seed1"]:
        replay(prefix)
