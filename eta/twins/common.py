"""What every twin builder shares: where twins live, their build version, tiny configs and saving.

* ``models_dir`` and ``TWIN_VERSION``: the cache folder of built models and the version in a twin's
  folder name (bumped when a builder changes, so older builds are not reused).
* ``CHATML_VLM_TEMPLATE`` / ``vlm_chat_template``: SmolLM2's ChatML turns with image parts.
* ``tiny_text_sizes``: the tiny language model's sizes and special token ids, in the keywords that
  the text configs of Llama and of the other VLM families share.
* ``tiny_text_config`` / ``tiny_vision_config``: the tiny Llama language model and CLIP vision tower
  most twins are made of.
* ``save_twin`` and ``write_stand_in``: a built twin written as ``from_pretrained`` reads it, with
  its ``STAND_IN.md`` note.
"""

from __future__ import annotations

from pathlib import Path

from eta.cache import cache_dir

# Bump when a builder changes, so caches built by older code are not reused.
TWIN_VERSION = 2

# A ChatML template (SmolLM2's own turn markers) that also accepts structured content with
# image parts, as the processors' templates of real VLM checkpoints do.
CHATML_VLM_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}IMAGE_TOKEN{{ '\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|im_end|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)


def vlm_chat_template(image_token: str) -> str:
    return CHATML_VLM_TEMPLATE.replace("IMAGE_TOKEN", image_token)


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_text_sizes(tokenizer, **overrides) -> dict:
    """Text-config keywords of the tiny language model: the tokenizer's vocabulary and special ids,
    width 64, 2 layers of 4 query heads sharing 2 key-value heads; ``overrides`` add or replace keys."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **overrides,
    }


def tiny_text_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(**tiny_text_sizes(tokenizer, max_position_embeddings=2048, tie_word_embeddings=False))


def tiny_vision_config(image_size: int, patch: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )


def write_stand_in(out: Path, note: str) -> None:
    """The ``STAND_IN.md`` every built stand-in carries: one line on what it is."""
    (out / "STAND_IN.md").write_text(note + "\n")


def save_twin(model, out: Path, processor, note: str, extra_eos: tuple[str, ...] | list[str] = ()) -> None:
    """Save a twin VLM and its processor, with a generation config that stops on EOS (and ``extra_eos``)."""
    from transformers import GenerationConfig

    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    eos = [tok.eos_token_id, *tok.convert_tokens_to_ids(list(extra_eos))] if extra_eos else tok.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_stand_in(out, note)
