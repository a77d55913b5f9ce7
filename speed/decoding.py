"""Decoding speed of ETA's aligning phase against plain decoding and the official sequential loop.

Measured in one process, on the same models, each producing the same number of new tokens
(end-of-sequence is ignored so that every variant decodes exactly ``--tokens`` tokens):

  (a) vanilla greedy decoding;
  (b) our deep alignment: N candidates decoded as one batch from a forked KV cache, reward and
      CLIP scores batched (``eta.best_of_n.best_of_n_sentences``);
  (c) the official algorithm as PAPER.md describes it, reimplemented here: the N candidates of a
      sentence are decoded one after another (batch 1, each from its own copy of the prefix
      cache) and scored one by one by the reward model and CLIP;
  (d) the evaluation phase alone: CLIP pre-score and reward post-score of a finished answer.

    python speed/decoding.py                 # embedded SmolLM2-LLaVA + SmolLM2 judge + CLIP twin
    python speed/decoding.py --quick --json  # < 60 s on a 2-core CPU
    python speed/decoding.py --model tiny    # tiny twins
    python speed/decoding.py --model random-7b --device cuda   # LLaVA-1.5-7B-sized random weights
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eta import decoding, sampling  # noqa: E402
from eta.config import ETAConfig  # noqa: E402
from eta.alignment import ETA  # noqa: E402

QUESTION = "Describe this picture and tell me a long story about it."


def build(model: str, device: str, layers: int = 32, dtype: str = "float32"):
    from eta.evaluators import load_clip, load_reward_model
    from eta.models import load_vlm

    if model == "smollm2":
        return (load_vlm("smollm2-llava", device, dtype), load_reward_model("smollm2-judge", device, dtype),
                load_clip("tiny-clip", device, dtype))
    if model == "tiny":
        return (load_vlm("tiny-llava", device, dtype), load_reward_model("tiny-reward", device, dtype),
                load_clip("tiny-clip", device, dtype))
    if model == "random-7b":
        return random_7b(device, layers)
    raise SystemExit(f"unknown --model {model!r}: smollm2, tiny or random-7b")


def random_7b(device: str, layers: int = 32):
    """Random weights at the paper's sizes: LLaVA-1.5-7B (Llama-7B LM + CLIP-L/336 tower), an
    ArmoRM-sized (Llama-3-8B) reward model, and open_clip ViT-L-14-336, all in bf16."""
    import open_clip
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlamaForSequenceClassification,
                              LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

    from eta import twins
    from eta.evaluators import ClipScorer, SequenceClassifierRM
    from eta.models import VLM

    tokenizer = twins.tokenizer_with("<image>")
    dev = torch.device(device)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                       num_attention_heads=32, num_key_value_heads=32, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    with torch.device(dev):
        torch.set_default_dtype(torch.bfloat16)
        vlm_model = LlavaForConditionalGeneration(config)
        rm_config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336,
                                num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=8, num_labels=1,
                                pad_token_id=tokenizer.pad_token_id)
        rm_model = LlamaForSequenceClassification(rm_config)
        torch.set_default_dtype(torch.float32)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=twins.vlm_chat_template("<image>"))
    vlm = VLM(vlm_model.eval(), processor, tokenizer, name="random-llava-7b", stand_in=True)
    rm = SequenceClassifierRM(rm_model.eval(), tokenizer, name="random-rm-8b", stand_in=True)
    clip_model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14-336", pretrained=None, device=dev,
                                                                      precision="bf16")
    clip = ClipScorer(clip_model, preprocess, open_clip.get_tokenizer("ViT-L-14-336"), name="random-clip-l", stand_in=True)
    return vlm, rm, clip


class Timer:
    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start, out


def sequential_official(eta: ETA, inputs, image_embedding, seed: int, tokens: int) -> int:
    """PAPER.md's algorithm as the official code runs it: candidates one at a time, scored one at a
    time, the reward model re-reading the whole response for every candidate."""
    rm = eta.reward_model
    cached, rm.use_prefix_cache = getattr(rm, "use_prefix_cache", False), False
    try:
        return _sequential(eta, inputs, image_embedding, seed, tokens)
    finally:
        rm.use_prefix_cache = cached


def _sequential(eta: ETA, inputs, image_embedding, seed: int, tokens: int) -> int:
    cfg, vlm = eta.cfg, eta.vlm
    sampler = sampling.TopKSampler(cfg.top_k, cfg.temperature, sampling.make_generator(seed, vlm.device))
    prefix_ids = eta._prefix_ids(inputs["input_ids"][0].tolist(), cfg.prefix)
    state = decoding.prefill(vlm, inputs)
    response: list[int] = []
    sentence_idx = 1
    while len(response) < tokens:
        budget = min(cfg.max_sentence_tokens, tokens - len(response))
        runs = []
        for _ in range(cfg.num_candidates):  # one candidate at a time, each on its own cache copy
            cont = decoding.sample_continuations(vlm, decoding.fork(state, 1), max_tokens=budget, choose=sampler,
                                                 stop=eta.stop)
            runs.append(cont)
        scores = []
        for cont in runs:  # one reward call and one CLIP call per candidate
            cand = cont.row(0)
            score = eta.reward_model.score(cfg.prompts.deep, [vlm.decode(prefix_ids + response + cand)])[0]
            if cfg.clip_guide and image_embedding is not None and sentence_idx > 1:
                score += cfg.alpha / sentence_idx * eta.clip.similarity(image_embedding, [vlm.decode(cand)])[0]
            scores.append(score)
        best = max(range(len(runs)), key=scores.__getitem__)
        response += runs[best].row(0)
        state = decoding.advance(runs[best], 0)
        sentence_idx += 1
    return len(response)


def measure(eta: ETA, image, tokens: int, repeats: int, seed: int) -> dict:
    vlm = eta.vlm
    timer = Timer(vlm.device)
    cfg = eta.cfg
    inputs = vlm.encode(QUESTION, image, assistant_prefix=cfg.prefix)
    plain = vlm.encode(QUESTION, image)
    image_embedding = eta.clip.embed_images([image])[0]
    rows = {"vanilla": [], "eta": [], "sequential": [], "evaluation": []}
    counts = {}
    for r in range(repeats):
        t, cont = timer(lambda: decoding.sample_continuations(vlm, decoding.prefill(vlm, plain), max_tokens=tokens,
                                                             choose=sampling.greedy))
        rows["vanilla"].append(t)
        counts["vanilla"] = int(cont.lengths[0])
        answer = vlm.decode(cont.row(0))
        t, n = timer(lambda: eta.align(QUESTION, image, image_embedding, seed + r)[1])
        rows["eta"].append(t)
        counts["eta"] = n
        t, n = timer(lambda: sequential_official(eta, inputs, image_embedding, seed + r, tokens))
        rows["sequential"].append(t)
        counts["sequential"] = n
        t, _ = timer(lambda: eta.evaluate(answer, eta.clip.embed_images([image])[0]))
        rows["evaluation"].append(t)
    med = {k: statistics.median(v) for k, v in rows.items()}
    tps = {k: counts[k] / med[k] for k in ("vanilla", "eta", "sequential")}
    return {
        "tokens": counts,
        "seconds_median": med,
        "seconds_all": rows,
        "tokens_per_s_vanilla": tps["vanilla"],
        "tokens_per_s_eta": tps["eta"],
        "tokens_per_s_sequential": tps["sequential"],
        "speedup_vs_sequential": tps["eta"] / tps["sequential"],
        "cost_vs_vanilla": tps["vanilla"] / tps["eta"],
        "eval_overhead": med["evaluation"] / med["vanilla"],
    }


def load_models(args):
    """The device and the three models a speed script measures, from its common arguments
    (``--threads``, ``--device``, ``--dtype``, ``--model``, ``--layers``). EOS is switched off, so
    every variant decodes exactly the requested number of tokens; ``--dtype auto`` becomes bf16 on
    CPUs with native bf16 matmuls."""
    from eta.models import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.dtype == "auto":
        args.dtype = "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"
    vlm, rm, clip = build(args.model, str(device), args.layers, args.dtype)
    vlm.eos_token_ids = []
    return device, vlm, rm, clip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "tiny", "random-7b"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per variant")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-candidates", type=int, default=5)
    parser.add_argument("--max-sentence-tokens", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=32, help="random-7b: decoder layers (32 = the real size)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="smollm2 / tiny weights; auto: bfloat16 on a CPU with native bf16 matmuls "
                             "(AMX or AVX512-BF16), else float32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--quick", action="store_true", help="48 tokens, 2 repeats (< 60 s on 2 CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.tokens, args.repeats = 48, 2
    from skimage import data
    from PIL import Image

    device, vlm, rm, clip = load_models(args)
    cfg = replace(ETAConfig(), max_new_tokens=args.tokens, num_candidates=args.num_candidates,
                  max_sentence_tokens=args.max_sentence_tokens)
    eta = ETA(vlm, rm, clip, cfg, seed=args.seed)
    image = Image.fromarray(data.chelsea()).convert("RGB")
    measure(eta, image, 8, 1, args.seed)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = measure(eta, image, args.tokens, args.repeats, args.seed)
    result["peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                else peak_rss_mb())
    result["setup"] = {"model": args.model, "device": str(device),
                       "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                       "threads": torch.get_num_threads(), "N": args.num_candidates, "top_k": cfg.top_k,
                       "tokens": args.tokens, "repeats": args.repeats, "vlm": vlm.name, "reward_model": rm.name,
                       "clip": clip.name, "dtype": str(vlm.dtype)}
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 (Linux /proc/cpuinfo flags): bf16 matmuls at full speed, where a batch
    of N candidates costs about what one row costs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(r: dict) -> None:
    s = r["setup"]
    print(f"{s['vlm']} + {s['reward_model']} + {s['clip']} on {s['device_name']} ({s['dtype']}, "
          f"{s['threads']} threads), N={s['N']}, {s['tokens']} new tokens, median of {s['repeats']}")
    print(f"{'variant':<34}{'seconds':>10}{'tokens/s':>12}")
    for key, label in [("vanilla", "(a) vanilla greedy"), ("eta", "(b) ETA deep, batched + forked"),
                       ("sequential", "(c) official, sequential"), ("evaluation", "(d) evaluation phase")]:
        tps = r.get(f"tokens_per_s_{key}")
        print(f"{label:<34}{r['seconds_median'][key]:>10.3f}{(f'{tps:.1f}' if tps else '-'):>12}")
    print(f"speedup_vs_sequential = {r['speedup_vs_sequential']:.2f}   cost_vs_vanilla = {r['cost_vs_vanilla']:.2f}   "
          f"eval_overhead = {r['eval_overhead']:.3f}   peak memory = {r['peak_memory_mb']:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
