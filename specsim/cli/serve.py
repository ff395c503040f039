"""``specsim serve``: a served model under load, with and without speculative decoding.

With no flags beyond ``--target`` it runs the documented default: one replica on one
H100, Poisson traffic at half the plain engine's saturation rate, prompts and outputs
lognormal (means 512 and 256 tokens, sigma 0.5), an SLO of TTFT <= 1 s and TPOT <= 50 ms
at p90, vLLM-like limits (256 sequences, 8192 tokens per step, chunked prefill, the KV
cache in 90% of the free memory), and speculation by a draft of the target's vocabulary
(Llama-3.2-1B for Llama 3, llama-68m for Llama 2) at acceptance 0.7 with lookahead 3 at
every batch size; it prints goodput, latency percentiles, the largest
rate meeting the SLO and the cost per million tokens with and without speculation.
"""

from __future__ import annotations

import argparse
import math

from ._args import (
    add_json_argument,
    add_overwrite_argument,
    check_plot_path,
    check_vocabulary,
    hardware_label,
    model_label,
    non_negative,
    positive,
    print_json,
    resolve_draft,
)

__all__ = ["add_serve_arguments", "run_serve"]

DEFAULT_LOAD = 0.5


def _fraction(text: str) -> float:
    value = non_negative(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _lookaheads(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers (one per batch bucket), got {text!r}"
        ) from None
    if any(not (math.isfinite(v) and v >= 0) for v in values):
        raise argparse.ArgumentTypeError(f"lookaheads must be >= 0, got {text!r}")
    return values


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``specsim serve``."""
    parser.description = (
        "Throughput, goodput under latency SLOs, TTFT/TPOT/end-to-end percentiles, the largest "
        "rate meeting the SLOs, cost per million output tokens and tokens per joule of a "
        "continuously batching engine at a traffic, with and without speculative decoding "
        "(steady-state model; --des also replays the traffic in the discrete-event simulator). "
        "Default: Poisson traffic at half the plain engine's saturation rate, lognormal "
        "prompts (512) and outputs (256), SLO TTFT <= 1 s and TPOT <= 50 ms at p90."
    )
    model = parser.add_argument_group("deployment")
    model.add_argument(
        "--target",
        default="llama-3-8b",
        help="target model (catalogue name, config.json, folder or cached Hub id)",
    )
    model.add_argument(
        "--hardware", default="h100", help="accelerator: catalogue name or a .toml file"
    )
    model.add_argument(
        "--tp", type=positive(int), default=1, help="chips per replica (tensor parallelism)"
    )
    model.add_argument(
        "--replicas", type=positive(int), default=1, help="engine replicas sharing the traffic"
    )

    spec = parser.add_argument_group("speculative decoding")
    spec.add_argument(
        "--draft",
        default=None,
        help="draft model of the speculative policy (default: as the other commands pick "
        "it, a smaller dense catalogue model with the target's vocabulary, of its family "
        "where one is: llama-68m for Llama 2, Llama-3.2-1B for Llama 3)",
    )
    spec.add_argument(
        "--shared-tokenizer",
        action="store_true",
        help="target and draft vocabularies differ in size but belong to one tokenizer "
        "(padded embedding tables); without it a draft must have the target's vocabulary",
    )
    spec.add_argument(
        "--ngram",
        type=_fraction,
        default=None,
        metavar="MATCH",
        help="speculate by n-gram lookup with this match probability instead of a draft "
        "(default: off, use --draft)",
    )
    spec.add_argument(
        "--alpha", type=_fraction, default=0.7, help="per-token acceptance rate in (0, 1)"
    )
    spec.add_argument(
        "--lookahead",
        type=non_negative,
        default=3,
        help="draft tokens per step at every batch size",
    )
    spec.add_argument(
        "--lookahead-per-bucket",
        type=_lookaheads,
        default=None,
        metavar="K1,K2,...",
        help="one lookahead per decode-batch bucket (<=1, 2, 4, ..., 256, >256: 10 values; "
        "default: --lookahead everywhere)",
    )
    spec.add_argument(
        "--off-above-batch",
        type=positive(int),
        default=None,
        help="no speculation above this decode batch (a bucket bound: 1, 2, 4, ..., 256; "
        "default: none)",
    )

    traffic = parser.add_argument_group("traffic")
    source = traffic.add_mutually_exclusive_group()
    source.add_argument(
        "--rate",
        type=positive(float),
        default=None,
        help=f"Poisson arrivals, requests/s for the fleet (default: {DEFAULT_LOAD:g} x the plain "
        "engine's saturation rate)",
    )
    source.add_argument(
        "--trace",
        default=None,
        help="a trace file (.csv or .jsonl with arrival_s, prompt_tokens, output_tokens): its "
        "rate and lengths (default: none, Poisson at --rate)",
    )
    traffic.add_argument("--prompt", type=positive(float), default=512, help="mean prompt tokens")
    traffic.add_argument(
        "--prompt-sigma",
        type=non_negative,
        default=0.5,
        help="sigma of log prompt length (0: fixed)",
    )
    traffic.add_argument("--output", type=positive(float), default=256, help="mean output tokens")
    traffic.add_argument(
        "--output-sigma",
        type=non_negative,
        default=0.5,
        help="sigma of log output length (0: fixed)",
    )

    slo = parser.add_argument_group("SLO")
    slo.add_argument(
        "--ttft-slo", type=positive(float), default=1.0, help="time-to-first-token target, s"
    )
    slo.add_argument(
        "--tpot-slo", type=positive(float), default=0.05, help="time-per-output-token target, s"
    )
    slo.add_argument(
        "--slo-percentile",
        type=positive(float),
        default=90.0,
        help="share of requests (%%) that must meet each target",
    )

    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--max-num-seqs", type=positive(int), default=256, help="most sequences resident at once"
    )
    engine.add_argument(
        "--max-num-batched-tokens", type=positive(int), default=8192, help="most tokens per step"
    )
    engine.add_argument(
        "--prefill-chunk-tokens",
        type=positive(int),
        default=None,
        help="prompt tokens per step (default: --max-num-batched-tokens)",
    )
    engine.add_argument(
        "--block-size", type=positive(int), default=16, help="tokens per KV-cache block"
    )
    engine.add_argument(
        "--kv-blocks",
        type=positive(int),
        default=None,
        help="KV-cache blocks (default: from the free memory)",
    )
    engine.add_argument(
        "--memory-fraction",
        type=_fraction,
        default=0.9,
        help="share of the free HBM for the KV cache",
    )
    engine.add_argument(
        "--no-chunked-prefill", action="store_true", help="prefill each prompt whole in one step"
    )

    cost = parser.add_argument_group("cost")
    cost.add_argument(
        "--usd-per-chip-hour",
        type=positive(float),
        default=None,
        help="price of one chip (default: the price table's, where it has one)",
    )
    cost.add_argument(
        "--power-w",
        type=positive(float),
        default=None,
        help="board power of one chip, W (default: the hardware catalogue's board_power_w)",
    )
    cost.add_argument(
        "--prices",
        default=None,
        help="a TOML price table overriding specsim's (layout of specsim/serving/prices.toml; "
        "default: none)",
    )

    des = parser.add_argument_group("discrete-event reference")
    des.add_argument(
        "--des",
        action="store_true",
        help="also replay the traffic in the discrete-event simulator (progress bar)",
    )
    des.add_argument(
        "--requests",
        type=positive(int),
        default=2000,
        help="requests to sample for --des (a --trace replays all of its own)",
    )
    des.add_argument("--seed", type=int, default=0, help="random seed of --des")

    add_json_argument(parser)
    parser.add_argument(
        "--plot",
        default=None,
        help="save a throughput-versus-latency plot (.png, .svg or .pdf; default: none)",
    )
    add_overwrite_argument(parser)


def _policies(args, deployment):
    from specsim import models, speculators
    from specsim.serving import SpecPolicy

    if args.ngram is not None:
        if args.draft is not None:
            raise ValueError("give --ngram (n-gram lookup) or --draft (a draft model), not both")
        speculator = speculators.Ngram.create(match_probability=args.ngram)
        name = f"n-gram (match {args.ngram:g})"
    else:
        # serve's way to speculate without a draft model is --ngram
        resolve_draft(args, deployment.target, draft_free="--ngram MATCH, a draft-free speculator")
        speculator = models.load(args.draft)
        check_vocabulary(args, deployment.target, speculator)
        name = f"draft {model_label(args.draft)}"
    if args.lookahead_per_bucket is not None:
        if args.off_above_batch is not None:
            raise ValueError("give --lookahead-per-bucket or --off-above-batch, not both")
        speculative = SpecPolicy.per_bucket(speculator, args.lookahead_per_bucket)
        label = (
            f"{name}, lookahead per bucket {','.join(f'{v:g}' for v in args.lookahead_per_bucket)}"
        )
    else:
        speculative = SpecPolicy.fixed(speculator, args.lookahead, args.off_above_batch)
        above = "" if args.off_above_batch is None else f" up to batch {args.off_above_batch}"
        label = f"{name}, lookahead {args.lookahead:g}{above}"
    return {"plain": SpecPolicy.off(), "speculative": speculative}, label


def _traffic(args, deployment, plain, engine, slo):
    from specsim.serving import LengthDistribution, Traffic, load_trace, steady_state

    if args.trace is not None:
        trace = load_trace(args.trace)
        return Traffic.from_trace(trace), trace, "trace"

    def lengths(mean, sigma):
        return LengthDistribution.lognormal(mean, sigma)

    prompt = lengths(args.prompt, args.prompt_sigma)
    output = lengths(args.output, args.output_sigma)
    if args.rate is not None:
        return Traffic.poisson(args.rate, prompt, output), None, "given"
    probe = steady_state(
        deployment, plain, Traffic.poisson(1.0, prompt, output), engine, slo, replicas=args.replicas
    )
    rate = DEFAULT_LOAD * float(probe.saturation_rate_per_s)
    return Traffic.poisson(rate, prompt, output), None, f"{DEFAULT_LOAD:g} x plain saturation"


def run_serve(args: argparse.Namespace) -> int:
    """Runs ``specsim serve``."""
    import numpy as np

    from specsim import Deployment
    from specsim.serving import (
        SLO,
        ChipPrice,
        EngineConfig,
        chip_price,
        max_slo_rate,
        serving_cost,
        simulate,
        steady_state,
    )

    if args.plot:
        check_plot_path(args.plot, overwrite=args.overwrite)
    deployment = Deployment.create(args.target, args.hardware, acceptance=args.alpha, tp=args.tp)
    engine = EngineConfig.create(
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        prefill_chunk_tokens=args.prefill_chunk_tokens,
        block_size=args.block_size,
        kv_blocks=args.kv_blocks,
        memory_fraction=args.memory_fraction,
        chunked_prefill=not args.no_chunked_prefill,
    )
    slo = SLO.create(ttft_s=args.ttft_slo, tpot_s=args.tpot_slo, percentile=args.slo_percentile)
    policies, spec_label = _policies(args, deployment)
    traffic, trace, rate_source = _traffic(args, deployment, policies["plain"], engine, slo)

    table = (
        chip_price(args.hardware, args.prices)
        if _in_catalogue(args.hardware)
        else ChipPrice.create()
    )
    price = ChipPrice.create(
        float(table.usd_per_hour) if args.usd_per_chip_hour is None else args.usd_per_chip_hour,
        float(table.power_w) if args.power_w is None else args.power_w,
    )
    results = {}
    for name, policy in policies.items():
        report = steady_state(deployment, policy, traffic, engine, slo, replicas=args.replicas)
        cost = serving_cost(report, price, tp=args.tp, replicas=args.replicas)
        rate, _ = max_slo_rate(deployment, policy, traffic, engine, slo, replicas=args.replicas)
        out = {**report.to_dict(), **cost.to_dict(), "max_slo_rate_per_s": rate}
        if args.des:
            result = simulate(
                trace if trace is not None else traffic,
                deployment,
                policy,
                engine,
                n_requests=None if trace is not None else args.requests,
                seed=args.seed,
                progress=not args.json,
            )
            summary = result.summary(slo, warmup_requests=len(result.arrival_s) // 10)
            out["des"] = {
                k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in summary.items()
            }
        results[name] = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }

    if args.plot:
        from specsim.plot import throughput_latency
        from specsim.serving import load_curve

        frame = load_curve(
            deployment,
            {"plain": policies["plain"], spec_label: policies["speculative"]},
            traffic,
            engine,
            slo,
            replicas=args.replicas,
        )
        throughput_latency(frame, "tpot_p50_s", path=args.plot)

    payload = {
        "target": args.target,
        "hardware": args.hardware,
        "tp": args.tp,
        "replicas": args.replicas,
        "rate_per_s": float(np.asarray(traffic.rate_per_s)),
        "rate_source": rate_source,
        "speculative_policy": spec_label,
        "slo": {
            "ttft_s": args.ttft_slo,
            "tpot_s": args.tpot_slo,
            "percentile": args.slo_percentile,
        },
        "usd_per_chip_hour": _finite(float(price.usd_per_hour)),
        "power_w": _finite(float(price.power_w)),
        "plain": results["plain"],
        "speculative": results["speculative"],
    }
    if args.json:
        print_json(payload)
        return 0
    _print(args, payload)
    return 0


def _in_catalogue(name: str) -> bool:
    from specsim import hardware

    try:
        hardware.canonical_name(name)
    except ValueError:
        return False
    return True


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _print(args, p) -> None:
    plain, spec = p["plain"], p["speculative"]
    print(
        f"{model_label(args.target)} on {args.replicas} x {args.tp} x "
        f"{hardware_label(args.hardware)}; "
        f"Poisson {p['rate_per_s']:.3g} requests/s ({p['rate_source']}); "
        f"SLO TTFT <= {args.ttft_slo:g} s, TPOT <= {args.tpot_slo * 1e3:g} ms "
        f"at p{args.slo_percentile:g}"
    )
    print(f"  speculative: {p['speculative_policy']}, acceptance {args.alpha:g}")

    def ms(v):
        return "-" if v is None else f"{v * 1e3:.1f}"

    def num(v, fmt="{:.4g}"):
        return "-" if v is None else fmt.format(v)

    rows = [
        ("goodput (tokens/s)", "goodput_tokens_per_s", num),
        ("throughput (tokens/s)", "throughput_tokens_per_s", num),
        ("SLO met", "slo_met", lambda v: "yes" if v else "no"),
        (
            "TTFT p50 / p90 / p99 (ms)",
            None,
            lambda r: f"{ms(r['ttft_p50_s'])} / {ms(r['ttft_p90_s'])} / {ms(r['ttft_p99_s'])}",
        ),
        (
            "TPOT p50 / p90 / p99 (ms)",
            None,
            lambda r: f"{ms(r['tpot_p50_s'])} / {ms(r['tpot_p90_s'])} / {ms(r['tpot_p99_s'])}",
        ),
        (
            "e2e p50 / p90 (s)",
            None,
            lambda r: f"{num(r['e2e_p50_s'], '{:.2f}')} / {num(r['e2e_p90_s'], '{:.2f}')}",
        ),
        ("largest rate meeting SLO (req/s)", "max_slo_rate_per_s", num),
        ("saturation rate (req/s)", "saturation_rate_per_s", num),
        ("load (of saturation)", "load", lambda v: num(v, "{:.2f}")),
        ("mean decode batch", "decode_batch", lambda v: num(v, "{:.1f}")),
        ("$ per million output tokens", "usd_per_million_tokens", lambda v: num(v, "{:.3f}")),
        ("output tokens per joule", "tokens_per_joule", lambda v: num(v, "{:.3g}")),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"  {'':<{width}}{'plain':>22}{'speculative':>22}")
    for title, key, fmt in rows:
        a = fmt(plain[key]) if key else fmt(plain)
        b = fmt(spec[key]) if key else fmt(spec)
        print(f"  {title:<{width}}{a:>22}{b:>22}")
    for name, r in (("plain", plain), ("speculative", spec)):
        if not r["feasible"]:
            print(
                f"  {name}: INFEASIBLE: the load exceeds the saturation rate ({r['limit']} binds)"
            )
        elif not r["within_approximation"]:
            print(
                f"  {name}: beyond the steady-state approximation (load or a limit > 0.6); "
                "try --des"
            )
        if r["max_slo_rate_per_s"] == 0.0:
            print(f"  {name}: no load meets the SLO (infeasible SLO)")
    if p["usd_per_chip_hour"] is None:
        print("  no price for this chip: give --usd-per-chip-hour for the cost per token")
    if "des" in plain:
        print("  discrete-event replay (first 10% of requests left out of the percentiles):")
        for name, r in (("plain", plain), ("speculative", spec)):
            d = r["des"]
            print(
                f"    {name}: {d['output_tokens_per_s']:.4g} tokens/s, "
                f"goodput {d['goodput_tokens_per_s']:.4g}, "
                f"TTFT p50/p90 {ms(d['ttft_s_p50'])}/{ms(d['ttft_s_p90'])} ms, "
                f"TPOT p50/p90 {ms(d['tpot_s_p50'])}/{ms(d['tpot_s_p90'])} ms"
            )
    gain = None
    if plain["goodput_tokens_per_s"] and spec["goodput_tokens_per_s"] is not None:
        gain = spec["goodput_tokens_per_s"] / plain["goodput_tokens_per_s"]
    if gain is not None:
        print(f"  goodput with speculation / without: {gain:.2f}x")
    if args.plot:
        print(f"  plot: {args.plot}")
