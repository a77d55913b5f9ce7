"""Benchmark-level throughput: M inputs through vanilla decoding and through ETA, batched or not.

Where ``speed/decoding.py`` times one response, this times a whole benchmark's worth of inputs,
as the engine runs them (``ETA.run_batch`` over batches of ``--batch-size`` inputs):

  vanilla          greedy answers, ``--batch-size`` prompts per left-padded batch;
  eta_per_input    ETA on one input at a time (vanilla answer, evaluation, aligning);
  eta_batched      ETA on batches: vanilla answers and evaluation batched, and the aligning of all
                   inputs of a batch as one decoding batch (``eta.best_of_n.best_of_n_many``);
  official_loop    the official algorithm (answer, evaluate, candidates made and scored one by
                   one) on the first ``--official-inputs`` inputs only, extrapolated to M and
                   labelled so.

``--aligned`` is the share of inputs that takes the aligning branch (the post-evaluation
threshold is set at that quantile of the vanilla answers' scores; 1.0: every input). EOS is
ignored so that every answer has exactly ``--tokens`` tokens in every variant.

    python speed/throughput.py --json                       # 16 inputs, SmolLM2 stand-ins, CPU
    python speed/throughput.py --model random-7b --device cuda --inputs 64 --tokens 256 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eta.config import ETAConfig  # noqa: E402
from eta.alignment import ETA, stable_seed  # noqa: E402
from speed.decoding import Timer, load_models, peak_rss_mb, sequential_official  # noqa: E402

log = logging.getLogger("throughput")

TOPICS = ["the animal in the picture", "the colours you see", "what could happen next", "the weather here",
          "where this photo was taken", "a poem about it", "how to draw this", "the mood of the scene",
          "the history of such places", "a safety checklist for this place", "a recipe it reminds you of",
          "a children's story about it", "the objects on the left", "the light and the shadows",
          "a news headline for it", "what sound this scene makes"]


def questions(m: int) -> list[str]:
    """M questions of ragged lengths."""
    return [f"Question {i + 1}: tell me about {TOPICS[i % len(TOPICS)]}" + " in detail" * (i % 4) + "."
            for i in range(m)]


def clock(device: torch.device, fn):
    """(wall seconds, process CPU seconds, result)."""
    timer = Timer(device)
    cpu = time.process_time()
    wall, out = timer(fn)
    return wall, time.process_time() - cpu, out


def run(eta: ETA, qs: list[str], images: list, batch_size: int) -> list:
    out = []
    for start in range(0, len(qs), batch_size):
        out += eta.run_batch(qs[start: start + batch_size], images[start: start + batch_size],
                             sample_ids=[str(i) for i in range(start, min(start + batch_size, len(qs)))])
    return out


def official_loop(eta: ETA, question: str, image, seed: int, tokens: int) -> None:
    """One input as the official code runs it: answer, evaluate, then (if unsafe) align sequentially."""
    vlm, cfg = eta.vlm, eta.cfg
    answer, _ = eta.generate(question, image)
    embedding = eta.clip.embed_images([image])[0] if image is not None else None
    s_pre, s_post = eta.evaluate(answer, embedding)
    pre_unsafe = None if s_pre is None else s_pre >= cfg.tau_pre
    if pre_unsafe is not False and s_post <= cfg.tau_post:
        inputs = vlm.encode(question, image, assistant_prefix=cfg.prefix)
        sequential_official(eta, inputs, embedding, seed, tokens)


def measure(eta: ETA, m: int, image, batch_size: int, official_inputs: int, tokens: int) -> dict:
    device = eta.vlm.device
    qs = questions(m)
    images = [image] * m
    rows = {}
    wall, cpu, answers = clock(device, lambda: [a for s in range(0, m, batch_size)
                                               for a in eta.generate_batch(qs[s: s + batch_size], images[s: s + batch_size])])
    rows["vanilla"] = {"seconds": wall, "cpu_seconds": cpu, "samples": m}
    log.info("vanilla: %.1f s", wall)
    wall, cpu, per_input = clock(device, lambda: run(eta, qs, images, 1))
    rows["eta_per_input"] = {"seconds": wall, "cpu_seconds": cpu, "samples": m}
    log.info("ETA per input: %.1f s", wall)
    wall, cpu, batched = clock(device, lambda: run(eta, qs, images, batch_size))
    rows["eta_batched"] = {"seconds": wall, "cpu_seconds": cpu, "samples": m}
    log.info("ETA batched: %.1f s", wall)
    k = min(official_inputs, m)
    wall, cpu, _ = clock(device, lambda: [official_loop(eta, q, image, stable_seed(eta.seed, str(i)), tokens)
                                          for i, q in enumerate(qs[:k])])
    rows["official_loop"] = {"seconds": wall * m / k, "cpu_seconds": cpu * m / k, "samples": m,
                             "extrapolated_from": k, "measured_seconds": wall}
    for row in rows.values():
        row["samples_per_s"] = row["samples"] / row["seconds"]
        row["seconds_per_sample"] = row["seconds"] / row["samples"]
        row["cpu_seconds_per_sample"] = row["cpu_seconds"] / row["samples"]
    same = [a.response for a in per_input] == [b.response for b in batched]
    return {
        "variants": rows,
        "aligned_share": sum(r.aligned for r in batched) / m,
        "vanilla_answers_equal": [a for a, _ in answers] == [r.vanilla for r in batched],
        "batched_equals_per_input": same,
        "throughput_batched_vs_per_input": rows["eta_batched"]["samples_per_s"] / rows["eta_per_input"]["samples_per_s"],
        "batched_cost_vs_vanilla": rows["eta_batched"]["seconds"] / rows["vanilla"]["seconds"],
        "batched_vs_official_loop": rows["official_loop"]["seconds"] / rows["eta_batched"]["seconds"],
    }


def threshold_for_share(eta: ETA, m: int, image, share: float, batch_size: int) -> float:
    """A post-evaluation threshold under which ``share`` of the vanilla answers fall (align iff s_post <= tau)."""
    low, high = getattr(eta.reward_model, "score_range", None) or (float("-inf"), float("inf"))
    if share >= 1.0:  # align iff s_post <= tau: the top of the declared score range aligns all
        return high
    if share <= 0.0:
        return low  # nothing scores below the bottom of the range (a score exactly at it is aligned)
    qs = questions(m)
    answers = [a for s in range(0, m, batch_size) for a, _ in eta.generate_batch(qs[s: s + batch_size], [image] * len(qs[s: s + batch_size]))]
    scores = sorted(eta.reward_model.score(eta.cfg.prompts.post, answers))
    count = round(share * m)
    return low if count == 0 else scores[count - 1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "tiny", "random-7b"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--inputs", type=int, default=16, help="M: inputs of the benchmark")
    parser.add_argument("--aligned", type=float, default=1.0, help="share of inputs that is aligned")
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per run_batch (engine.batch_size)")
    parser.add_argument("--align-tokens", type=int, default=0, help="KV-cache token budget of aligning (0: none)")
    parser.add_argument("--tokens", type=int, default=48, help="new tokens per answer")
    parser.add_argument("--official-inputs", type=int, default=2, help="inputs the official loop really runs")
    parser.add_argument("--num-candidates", type=int, default=5)
    parser.add_argument("--max-sentence-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=32, help="random-7b: decoder layers (32 = the real size)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    from PIL import Image
    from skimage import data

    device, vlm, rm, clip = load_models(args)  # EOS off: every answer has exactly --tokens tokens
    cfg = replace(ETAConfig(), max_new_tokens=args.tokens, num_candidates=args.num_candidates,
                  max_sentence_tokens=args.max_sentence_tokens, tau_pre=-1.0)
    image = Image.fromarray(data.chelsea()).convert("RGB")
    eta = ETA(vlm, rm, clip, cfg, seed=args.seed, align_tokens=args.align_tokens or None)
    eta.cfg = replace(cfg, tau_post=threshold_for_share(eta, args.inputs, image, args.aligned, args.batch_size))
    warm = replace(eta.cfg, max_new_tokens=4)
    ETA(vlm, rm, clip, warm, seed=args.seed).run_batch(questions(2), [image] * 2)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = measure(eta, args.inputs, image, args.batch_size, args.official_inputs, args.tokens)
    result["peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                else peak_rss_mb())
    result["setup"] = {"model": args.model, "device": str(device),
                       "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "threads": torch.get_num_threads(), "inputs": args.inputs, "aligned": args.aligned,
                       "batch_size": args.batch_size, "align_tokens": args.align_tokens or None,
                       "N": args.num_candidates, "top_k": cfg.top_k, "tokens": args.tokens,
                       "max_sentence_tokens": args.max_sentence_tokens, "vlm": vlm.name, "reward_model": rm.name,
                       "clip": clip.name, "dtype": str(vlm.dtype),
                       "date": time.strftime("%Y-%m-%d", time.gmtime())}
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def print_table(r: dict) -> None:
    s = r["setup"]
    print(f"{s['inputs']} inputs ({r['aligned_share']:.0%} aligned), {s['vlm']} + {s['reward_model']} + {s['clip']} "
          f"on {s['device_name']} ({s['dtype']}, {s['threads']} threads), N={s['N']}, {s['tokens']} new tokens, "
          f"batches of {s['batch_size']}")
    print(f"{'variant':<18}{'samples/s':>11}{'s/sample':>10}{'CPU s/sample':>14}")
    for name, row in r["variants"].items():
        note = f"  (extrapolated from {row['extrapolated_from']} inputs)" if "extrapolated_from" in row else ""
        print(f"{name:<18}{row['samples_per_s']:>11.3f}{row['seconds_per_sample']:>10.2f}"
              f"{row['cpu_seconds_per_sample']:>14.2f}{note}")
    print(f"throughput_batched_vs_per_input = {r['throughput_batched_vs_per_input']:.2f}   "
          f"batched_cost_vs_vanilla = {r['batched_cost_vs_vanilla']:.2f}   "
          f"batched answers equal per-input answers: {r['batched_equals_per_input']}")


if __name__ == "__main__":
    sys.exit(main())
