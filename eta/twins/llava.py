"""Twins of the paper's transformers-native VLM architectures, and the SmolLM2-LLaVA stand-in.

* ``tiny-llava``, ``tiny-llava-next``, ``tiny-llava-onevision``: one tiny CLIP tower and Llama
  language model in each family's config, model and processor classes (``_llava_config`` and
  ``_llava_processor`` hold what the three share).
* ``tiny-mllama``: Llama 3.2 Vision's cross-attention layout, tiled images.
* ``smollm2_llava_dir``: a LLaVA-architecture VLM whose language model is SmolLM2 and whose vision
  tower is untrained; the projector's last layer is zero, so image tokens carry no signal.
"""

from __future__ import annotations

from pathlib import Path

import torch

from eta.cache import build_once
from eta.twins.common import TWIN_VERSION, models_dir, save_twin, tiny_text_config, tiny_text_sizes
from eta.twins.common import tiny_vision_config, vlm_chat_template
from eta.twins.smollm2 import smollm2_dir, tokenizer_with

# The image grids (in pixels) that the LlavaNext and LlavaOnevision twins tile images into.
PINPOINTS = [[32, 32], [32, 64], [64, 32]]


def _llava_config(config_class, tokenizer, text_config=None, image_size: int = 32, patch: int = 8, **extra):
    """A LLaVA-family config: a tiny CLIP tower read at its second-to-last layer without CLS."""
    if text_config is None:
        text_config = tiny_text_config(tokenizer)
    return config_class(
        vision_config=tiny_vision_config(image_size, patch),
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        **extra,
    )


def _llava_processor(processor_class, image_processor, tokenizer, patch: int = 8):
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=vlm_chat_template("<image>"),
    )


def _square_crop(image_size: int) -> dict:
    """CLIP-style preprocessing sizes: the shortest edge resized to ``image_size``, then a square crop."""
    return {"size": {"shortest_edge": image_size}, "crop_size": {"height": image_size, "width": image_size}}


def build_llava(out: Path, *, text_config=None, text_weights=None, image_size=32, patch=8) -> None:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = tokenizer_with("<image>")
    torch.manual_seed(0)
    if text_config is not None:
        text_config = text_config.__class__.from_dict(text_config.to_dict())
        text_config.vocab_size = len(tokenizer)
        text_config.tie_word_embeddings = False  # the grown vocabulary gets its own output layer
    model = LlavaForConditionalGeneration(_llava_config(LlavaConfig, tokenizer, text_config, image_size, patch))
    if text_weights is not None:
        _copy_language_weights(model, text_weights)
    processor = _llava_processor(LlavaProcessor, CLIPImageProcessor(**_square_crop(image_size)), tokenizer, patch)
    note = "Tiny random-weight Llava twin." if text_weights is None else (
        "LLaVA architecture with SmolLM2-135M-Instruct as language model; the vision tower is "
        "random and the projector's last layer is zero, so images carry no signal."
    )
    save_twin(model, out, processor, note)


@torch.no_grad()
def _copy_language_weights(vlm, text_model) -> None:
    """Put a causal LM's weights into a VLM's language model; silence the projector."""
    source = text_model.model.state_dict()
    target = vlm.model.language_model
    embed = source.pop("embed_tokens.weight")
    missing, unexpected = target.load_state_dict(source, strict=False)
    if unexpected or set(missing) - {"embed_tokens.weight"}:
        raise RuntimeError(f"language weights do not fit: missing {missing}, unexpected {unexpected}")
    new_embed = target.get_input_embeddings().weight
    new_embed.zero_()
    new_embed[: embed.shape[0]] = embed
    new_embed[embed.shape[0]:] = embed.mean(0)
    lm_head = vlm.lm_head.weight
    lm_head.copy_(new_embed)
    vlm.config.tie_word_embeddings = False
    vlm.config.text_config.tie_word_embeddings = False
    projector = vlm.model.multi_modal_projector
    projector.linear_2.weight.zero_()
    projector.linear_2.bias.zero_()


def smollm2_llava_dir() -> Path:
    """LLaVA with SmolLM2 as its language model and an untrained, silenced vision tower."""
    return build_once(models_dir() / f"smollm2-llava-v{TWIN_VERSION}", _build_smollm2_llava)


def _build_smollm2_llava(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    text_model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), dtype=torch.float32)
    build_llava(out, text_config=text_model.config, text_weights=text_model, image_size=32, patch=8)


def build_llava_next(out: Path) -> None:
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor
    from transformers import LlavaNextProcessor

    tokenizer = tokenizer_with("<image>")
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(
        _llava_config(LlavaNextConfig, tokenizer, image_grid_pinpoints=PINPOINTS)
    )
    image_processor = LlavaNextImageProcessor(**_square_crop(32), image_grid_pinpoints=PINPOINTS)
    processor = _llava_processor(LlavaNextProcessor, image_processor, tokenizer)
    save_twin(model, out, processor, "Tiny random-weight LlavaNext twin.")


def build_llava_onevision(out: Path) -> None:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = tokenizer_with("<image>", ("<video>",))
    torch.manual_seed(0)
    config = _llava_config(
        LlavaOnevisionConfig,
        tokenizer,
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=PINPOINTS,
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    image_processor = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=PINPOINTS)
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        num_image_tokens=(32 // 8) ** 2 + 1,  # patches + CLS; the "default" strategy drops CLS
        vision_feature_select_strategy="default",
        chat_template=vlm_chat_template("<image>"),
    )
    save_twin(model, out, processor, "Tiny random-weight LlavaOnevision twin.")


def build_mllama(out: Path) -> None:
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor
    from transformers import MllamaProcessor
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig

    tokenizer = tokenizer_with("<|image|>", ("<|python_tag|>",))
    torch.manual_seed(0)
    text_config = MllamaTextConfig(**tiny_text_sizes(tokenizer, num_hidden_layers=4, cross_attention_layers=[1, 3]))
    vision_config = MllamaVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_global_layers=1,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        max_num_tiles=2,
        vision_output_dim=64,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    config = MllamaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    model = MllamaForConditionalGeneration(config)
    image_processor = MllamaImageProcessor(size={"height": 32, "width": 32}, max_image_tiles=2)
    processor = MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=vlm_chat_template("<|image|>")
    )
    save_twin(model, out, processor, "Tiny random-weight Mllama twin.")
