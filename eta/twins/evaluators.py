"""Twins of the evaluators read with their library's own loaders (``eta.evaluators``).

* ``tiny-reward``: a tiny ``LlamaForSequenceClassification`` reward model with one label.
* ``tiny-clip`` / ``tiny-siglip``: tiny open_clip models (the second with SigLIP's learnt logit bias),
  read through open_clip's ``local-dir:`` with the real CLIP BPE tokenizer.

The reward models whose hub checkpoints ship their own code (ArmoRM, InternLM2) have layout twins
in ``eta.twins.layouts``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from eta.twins.common import tiny_text_config, write_stand_in
from eta.twins.smollm2 import padded, smollm2_tokenizer


def build_tiny_reward(out: Path) -> None:
    from transformers import LlamaForSequenceClassification

    tokenizer = padded(smollm2_tokenizer())
    torch.manual_seed(0)
    config = tiny_text_config(tokenizer)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_stand_in(out, "Tiny random-weight sequence-classification reward model.")


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def build_tiny_clip(out: Path, model_cfg: dict | None = None) -> None:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = model_cfg or TINY_CLIP_CONFIG
    torch.manual_seed(0)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
        },
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    model = open_clip.CLIP(**model_cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "open_clip_model.safetensors")
    kind = "sigmoid-trained (SigLIP-style logit bias)" if "init_logit_bias" in model_cfg else "open_clip"
    write_stand_in(out, f"Tiny random-weight {kind} model (real CLIP BPE tokenizer).")


def build_tiny_siglip(out: Path) -> None:
    """A tiny CLIP with SigLIP's learnt logit bias (its scale and bias at SigLIP's initial values)."""
    build_tiny_clip(out, {**TINY_CLIP_CONFIG, "init_logit_bias": -10.0})
