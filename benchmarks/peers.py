"""specsim beside other LLM-inference performance modellers, on the same configurations.

Evaluates plain decoding and speculative decoding (SD) of Llama-3.1-8B (draft Llama-3.2-1B,
lookahead 4, acceptance 0.8) on one H100 SXM, bf16, 512 prompt and 256 generated tokens,
at several batch sizes, with specsim and with each peer that is installed:

* GenZ (``genz-llm``, ``GenZ.decode_moddeling`` / ``GenZ.spec_decode_modeling``),
* MLSys-im (``mlsysim``, ``ServingModel.solve``, with ``draft_model`` for SD),
* llm-analysis (``llm-analysis``, ``llm_analysis.analysis.infer``; no SD mode).

It installs nothing: ``pip install -e ".[peers]"`` installs the peers; a peer that is not
importable is reported and skipped. For every tool it prints the predicted tokens/s of
each configuration and how many configurations per second the tool evaluates (the
configurations evaluated one by one, best of ``--repeats`` passes after a warm-up;
specsim also as one vmapped ``specsim.sweep`` over a large grid). Each tool runs with
its own defaults (efficiencies, overheads, hardware numbers): the point is the side-by-side
view, not a verdict on accuracy, which ``specsim validate`` measures against
measurements.

Usage: ``python benchmarks/peers.py [--repeats N] [--out FILE]`` from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT, GENERATE, GAMMA, ALPHA = 512, 256, 4, 0.8
DECODE_BATCHES = (1, 8, 32, 128)
SD_BATCHES = (1, 8, 32)

# Llama-3.2-1B (draft) and Llama-3.1-8B (target), from their Hugging Face config.json.
LLAMA_3_2_1B = dict(layers=16, hidden=2048, heads=32, kv_heads=8, ffn=8192, vocab=128256)
LLAMA_3_1_8B = dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256)


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration: plain decoding (gamma 0) or speculative decoding."""

    batch: int
    gamma: int

    @property
    def label(self) -> str:
        kind = "decode" if self.gamma == 0 else f"SD gamma {self.gamma}"
        return f"{kind}, batch {self.batch}"


CONFIGS = [Config(b, 0) for b in DECODE_BATCHES] + [Config(b, GAMMA) for b in SD_BATCHES]


@dataclasses.dataclass
class Peer:
    """A tool: its distribution, and a function from a `Config` to tokens/s (or None)."""

    name: str
    distribution: str
    make: Callable[[], Callable[[Config], float | None]]
    note: str = ""


# --------------------------------------------------------------------------- the tools


def _specsim():
    import specsim
    from specsim import hardware, models

    target, draft = models.get("llama-3.1-8b"), models.get("llama-3.2-1b")
    chip = hardware.get("h100")
    acceptance = specsim.ConstantAcceptance.create(ALPHA)

    def evaluate(config: Config) -> float:
        workload = specsim.Workload.create(config.batch, PROMPT, GENERATE)
        report = specsim.throughput(target, draft, chip, workload, config.gamma, acceptance)
        field = report.baseline_tokens_per_s if config.gamma == 0 else report.tokens_per_s
        return float(field)

    return evaluate


def _genz():
    from GenZ import decode_moddeling
    from GenZ.LLM_inference.llm_spec_decode import spec_decode_modeling

    common = dict(
        batch_size=0,
        input_tokens=PROMPT,
        output_tokens=GENERATE,
        system_name="H100_GPU",
        bits="bf16",
    )

    def evaluate(config: Config) -> float:
        kwargs = {**common, "batch_size": config.batch}
        if config.gamma == 0:
            out = decode_moddeling(model="meta-llama/Llama-3.1-8B", **kwargs)
        else:
            out = spec_decode_modeling(
                model="meta-llama/Llama-3.1-8B",
                draft_model="meta-llama/Llama-3.2-1B",
                token_acceptance_rate=ALPHA,
                num_parallel_tokens=config.gamma,
                **kwargs,
            )
        # A dict subclass: the attribute of the same name is a class default of 0.
        return float(out["Throughput"])

    return evaluate


def _mlsysim():
    from mlsysim import Hardware, Models
    from mlsysim.core.units import Q_
    from mlsysim.engine import calibration
    from mlsysim.engine.solvers.serving import ServingModel
    from mlsysim.models.types import TransformerWorkload

    target = Models.Language.Llama3_8B
    draft = TransformerWorkload(
        name="Llama-3.2-1B",
        architecture="Transformer",
        parameters=Q_(1.236e9, "param"),
        layers=LLAMA_3_2_1B["layers"],
        hidden_dim=LLAMA_3_2_1B["hidden"],
        heads=LLAMA_3_2_1B["heads"],
        kv_heads=LLAMA_3_2_1B["kv_heads"],
    )
    chip = Hardware.Cloud.H100
    solver = ServingModel()
    if calibration.SPECULATIVE_GAMMA != GAMMA:
        raise RuntimeError(f"mlsysim's lookahead is fixed at {calibration.SPECULATIVE_GAMMA}")

    def evaluate(config: Config) -> float:
        result = solver.solve(
            target,
            chip,
            seq_len=PROMPT + GENERATE,
            batch_size=config.batch,
            precision="fp16",
            draft_model=draft if config.gamma else None,
            draft_acceptance_rate=ALPHA,
        )
        return config.batch / result.itl.to("s").magnitude

    return evaluate


def _llm_analysis():
    from llm_analysis.analysis import infer

    # Its MLP has two matrices of ffn_embed_dim; Llama's gated MLP has three of d_ff, so
    # the same weights are 1.5 x d_ff (expansion_ratio given: not a whole multiple).
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "llama-3.1-8b.json")
    ffn = 3 * LLAMA_3_1_8B["ffn"] // 2
    with open(path, "w") as f:
        json.dump(
            {
                "name": "llama-3.1-8b",
                "num_layers": LLAMA_3_1_8B["layers"],
                "n_head": LLAMA_3_1_8B["heads"],
                "hidden_dim": LLAMA_3_1_8B["hidden"],
                "vocab_size": LLAMA_3_1_8B["vocab"],
                "max_seq_len": 131072,
                "num_key_value_heads": LLAMA_3_1_8B["kv_heads"],
                "ffn_embed_dim": ffn,
                "expansion_ratio": ffn / LLAMA_3_1_8B["hidden"],
                "model_type": "llama",
            },
            f,
        )

    def evaluate(config: Config) -> float | None:
        if config.gamma:
            return None  # no speculative-decoding mode
        summary = infer(
            model_name=path,
            gpu_name="h100-sxm-80gb",
            dtype_name="w16a16e16",
            log_level="ERROR",
            batch_size_per_gpu=config.batch,
            seq_len=PROMPT,
            num_tokens_to_generate=GENERATE,
        )
        return float(summary["decode_tokens_per_sec"])

    return evaluate


PEERS = [
    Peer("specsim", "specsim-jax", _specsim, "exact roofline, catalogue efficiencies"),
    Peer("GenZ", "genz-llm", _genz, "verification at the final context; tokens capped at gamma"),
    Peer("mlsysim", "mlsysim", _mlsysim, "lookahead fixed at 4; verification = one decode step"),
    Peer("llm-analysis", "llm-analysis", _llm_analysis, "decode only"),
]


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _quiet():
    """Peers print and warn freely; keep the table readable."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "from this checkout"


def run_peer(peer: Peer, repeats: int):
    """(tokens/s per config, configs/s) or the reason it could not run."""
    try:
        with _quiet():
            evaluate = peer.make()
            values = [evaluate(c) for c in CONFIGS]  # warm-up (and JAX compilation)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                for config in CONFIGS:
                    evaluate(config)
                best = min(best, time.perf_counter() - start)
    except ImportError as e:
        return f"not installed ({e.name}); pip install -e '.[peers]'"
    except Exception as e:  # a peer failing on this configuration must not stop the others
        return f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return values, len(CONFIGS) / best


def specsim_sweep_rate() -> tuple[int, float]:
    """Points per second of one vmapped sweep over batch x gamma x alpha x prompt."""
    import specsim

    grid = dict(
        hardware="h100",
        target="llama-3.1-8b",
        draft="llama-3.2-1b",
        batch=list(range(1, 257)),
        gamma=list(range(0, 17)),
        alpha=[0.5 + 0.05 * i for i in range(10)],
        prompt_tokens=[128, 512, 2048, 8192],
        generate_tokens=GENERATE,
        columns=["tokens_per_s"],
        progress=False,
    )
    specsim.sweep(**grid)  # compile
    start = time.perf_counter()
    frame = specsim.sweep(**grid)
    return len(frame), len(frame) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (default 3)")
    parser.add_argument("--out", default=None, help="also write the output to this file")
    args = parser.parse_args()

    lines = []
    say = lines.append
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    say(
        f"Llama-3.1-8B (draft Llama-3.2-1B for SD, gamma {GAMMA}, alpha {ALPHA}) on one H100 "
        f"SXM, bf16, prompt {PROMPT}, generate {GENERATE}; predicted tokens/s"
    )
    say(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load}, Python {platform.python_version()}"
    )
    say("")
    results, columns = {}, []
    for peer in PEERS:
        outcome = run_peer(peer, args.repeats)
        version = _version(peer.distribution)
        if isinstance(outcome, str):
            say(f"{peer.name} ({peer.distribution} {version}): skipped, {outcome}")
            continue
        results[peer.name] = outcome
        columns.append(peer)
        say(f"{peer.name} ({peer.distribution} {version}): {peer.note}")
    say("")
    width = max(len(c.label) for c in CONFIGS)
    say(f"{'configuration':<{width}}" + "".join(f"{p.name:>14s}" for p in columns))
    for i, config in enumerate(CONFIGS):
        cells = []
        for peer in columns:
            value = results[peer.name][0][i]
            cells.append(f"{'-':>14s}" if value is None else f"{value:14,.1f}")
        say(f"{config.label:<{width}}" + "".join(cells))
    say(f"{'configurations/s':<{width}}" + "".join(f"{results[p.name][1]:14,.0f}" for p in columns))
    points, rate = specsim_sweep_rate()
    say("")
    say(
        f"specsim.sweep, one vmapped grid of {points:,} points on this CPU: {rate:,.0f} "
        "points/s (after compilation)"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
