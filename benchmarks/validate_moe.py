"""A real mixture-of-experts network on this device: timed, calibrated, predicted.

Times the forward passes of `specsim.measure.moe_calibration_points` (a small top-2 of 8
MoE network and its dense twin: decodes at batch 1-8, verifications, prefills), fits
this device's `HardwareSpec` on a balanced half of the MoE network's points (every
phase) and predicts the other half, and does the same fitting both networks at once;
then runs real speculative decoding with the MoE network as the target (a
layer-skipping draft). Prints the held-out errors of the MoE network's step times.

On a CPU the session runs XLA single-threaded and reads the process clock, so other
programs on a shared machine do not enter the timings (see
`specsim.measure.configure_measurement`); the lower decile (p10) of each point's samples
is fitted.

Usage: python benchmarks/validate_moe.py [--repeats 16] [--rounds 4] [--json] [--csv FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=16, help="timed samples per pass")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved sweeps")
    parser.add_argument("--seed", type=int, default=0, help="weights, order and split")
    parser.add_argument("--splits", type=int, default=5, help="random balanced halves fitted")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--csv", default=None, help="also write the timed passes to this file")
    parser.add_argument("--from-csv", default=None, help="fit passes timed before (--csv)")
    args = parser.parse_args(argv)

    from specsim.measure._session import configure_measurement

    clock = configure_measurement("process")  # before JAX starts: single-threaded XLA
    import jax
    import numpy as np
    import pandas as pd

    from specsim import calibrate
    from specsim._calibrate import LOCAL_FIT, StepTimeData, predict_step_times
    from specsim._local_calibration import split_train_test
    from specsim.measure import (
        build_model,
        layer_skip_draft,
        local_hardware,
        measure_speculative,
        measure_step_times,
        moe_calibration_points,
    )

    start = time.perf_counter()
    points = moe_calibration_points()
    if args.from_csv:
        frame = pd.read_csv(args.from_csv)
    else:
        frame = measure_step_times(
            points,
            repeats=args.repeats,
            rounds=args.rounds,
            seed=args.seed,
            clock=clock,
            progress=False,
        )
    frame["model"] = np.where(frame["n_moe_layers"] > 0, "moe", "dense")
    if args.csv:
        frame.to_csv(args.csv, index=False)
    column = "p10_s"
    data = StepTimeData.from_frame(frame, column)
    nominal = local_hardware("fp32")
    is_moe = (frame["model"] == "moe").to_numpy()

    def held_out(rows):
        """Fits on a balanced half of ``rows`` (a mask), ``args.splits`` times; the MoE
        network's held-out relative errors of each split."""
        splits = []
        for split in range(args.splits):
            train = np.zeros(len(frame), dtype=bool)
            train[rows] = split_train_test(frame[rows], seed=args.seed + split)
            result = calibrate(frame[train], nominal, fit=LOCAL_FIT, time_column=column, seed=split)
            predicted = np.asarray(predict_step_times(data, result.hardware, result.smooth))
            error = predicted / frame[column].to_numpy() - 1.0
            splits.append((rows & ~train & is_moe, predicted, error))
        return splits

    # The MoE network's own calibration (half its passes fit, the other half predicted),
    # and one calibration of both networks. The joint fit is the harder bar on a CPU: the
    # dense twin's weights (a quarter of the MoE's) stay in cache between passes, the
    # MoE's expert pool does not, and one memory bandwidth cannot fit both.
    splits = held_out(is_moe)
    joint = held_out(np.ones(len(frame), dtype=bool))
    held_out_moe, predicted, error = splits[0]
    moe_errors = [float(np.mean(np.abs(e[keep]))) for keep, _, e in splits]
    joint_errors = [float(np.mean(np.abs(e[keep]))) for keep, _, e in joint]

    target = build_model(points[0].config, args.seed)
    speculative = measure_speculative(
        target, layer_skip_draft(target, 2), 2, 16, 32, 3, repeats=2, seed=args.seed, clock=clock
    )
    out = {
        "device": jax.devices()[0].device_kind,
        "points": len(frame),
        "held_out_moe_points": int(held_out_moe.sum()),
        "held_out_moe_mean_abs_error": float(np.mean(moe_errors)),
        "held_out_moe_mean_abs_error_per_split": moe_errors,
        "held_out_moe_max_abs_error": float(max(np.max(np.abs(e[k])) for k, _, e in splits)),
        "held_out_moe_mean_abs_error_joint_fit": float(np.mean(joint_errors)),
        "held_out_moe_mean_abs_error_joint_fit_per_split": joint_errors,
        "held_out_moe_rows": [
            {
                "phase": r.phase,
                "batch": int(r.batch),
                "new_tokens": int(r.new_tokens),
                "measured_ms": 1e3 * float(r[column]),
                "predicted_ms": 1e3 * float(p),
                "error": float(e),
            }
            for (_, r), p, e, keep in zip(
                frame.iterrows(), predicted, error, held_out_moe, strict=True
            )
            if keep
        ],
        "speculative_tokens_per_s": speculative.tokens_per_s,
        "speculative_alpha": speculative.alpha,
        "speculative_tokens_per_step": speculative.tokens_per_step,
        "seconds": time.perf_counter() - start,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['points']} passes on {out['device']}, {out['seconds']:.0f} s in all")
    print(
        f"held-out MoE step times: mean |error| {out['held_out_moe_mean_abs_error']:.1%}, "
        f"max {out['held_out_moe_max_abs_error']:.1%} (fitted on the MoE network's other "
        f"half); fitted with its dense twin: {out['held_out_moe_mean_abs_error_joint_fit']:.1%}"
    )
    for row in out["held_out_moe_rows"]:
        print(
            f"  {row['phase']:8s} batch {row['batch']:2d} x {row['new_tokens']:2d} tokens: "
            f"measured {row['measured_ms']:.3f} ms, predicted {row['predicted_ms']:.3f} ms "
            f"({row['error']:+.1%})"
        )
    print(
        f"speculative decoding with the MoE target: {out['speculative_tokens_per_s']:.0f} "
        f"tokens/s, alpha {out['speculative_alpha']:.2f}, "
        f"{out['speculative_tokens_per_step']:.2f} tokens per step"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
