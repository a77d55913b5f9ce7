"""Twins of today's VLM families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma 3, Idefics3, InternVL.

Each builds from the family's own config and processor classes, with SmolLM2's tokenizer grown by
the family's special tokens and a chat template written from the family's documented format.
"""

from __future__ import annotations

from pathlib import Path

import torch

from eta.twins.common import save_twin, tiny_text_config, tiny_text_sizes, vlm_chat_template
from eta.twins.smollm2 import tokenizer_named, tokenizer_with

QWEN_VL_TEMPLATE = (  # Qwen2-VL's ChatML with its default system turn; Qwen3-VL drops that turn
    "{%- if SYSTEM and messages[0]['role'] != 'system' -%}"
    "<|im_start|>system{{ '\\n' }}You are a helpful assistant.<|im_end|>{{ '\\n' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|im_end|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)

QWEN_VL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|video_pad|>")


def _tiny_qwen_vl_text(config_class, tokenizer, **rope):
    """The tiny text config with Qwen-VL's multimodal rope (``rope`` adds to its parameters)."""
    rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **rope}
    return config_class(**tiny_text_sizes(tokenizer, max_position_embeddings=4096, rope_parameters=rope_parameters))


def _qwen_vl_processor(processor_class, image_processor_class, video_processor_class, tokenizer, patch: int,
                       system_turn: bool = True):
    # 64x64 pixels at most: a few dozen patches, merged 2x2 into image tokens.
    size = {"shortest_edge": (2 * patch) ** 2, "longest_edge": 64 * 64}
    return processor_class(
        image_processor=image_processor_class(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2),
        video_processor=video_processor_class(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer,
        chat_template=QWEN_VL_TEMPLATE.replace("SYSTEM", "true" if system_turn else "false"),
    )


def _qwen_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {"image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>")}


def build_qwen2_vl(out: Path) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLTextConfig, Qwen2VLVisionConfig

    tokenizer = tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=_tiny_qwen_vl_text(Qwen2VLTextConfig, tokenizer),
        vision_config=Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=64, num_heads=4, patch_size=8),
        **_qwen_ids(tokenizer),
    )
    model = Qwen2VLForConditionalGeneration(config)
    processor = _qwen_vl_processor(Qwen2VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, tokenizer, 8)
    save_twin(model, out, processor, "Tiny random-weight Qwen2-VL twin.")


def build_qwen2_5_vl(out: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import (
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
    )

    tokenizer = tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config=_tiny_qwen_vl_text(Qwen2_5_VLTextConfig, tokenizer),
        vision_config=Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=4,
                                             patch_size=8, out_hidden_size=64, window_size=32,
                                             fullatt_block_indexes=[1]),
        **_qwen_ids(tokenizer),
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = _qwen_vl_processor(Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, tokenizer, 8)
    save_twin(model, out, processor, "Tiny random-weight Qwen2.5-VL twin.")


def build_qwen3_vl(out: Path) -> None:
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig, Qwen3VLVisionConfig

    tokenizer = tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
    torch.manual_seed(0)
    text = _tiny_qwen_vl_text(Qwen3VLTextConfig, tokenizer, mrope_interleaved=True)
    text.head_dim = 16
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=Qwen3VLVisionConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=4,
                                          patch_size=8, out_hidden_size=64, num_position_embeddings=64,
                                          deepstack_visual_indexes=[0]),
        **_qwen_ids(tokenizer),
    )
    model = Qwen3VLForConditionalGeneration(config)
    processor = _qwen_vl_processor(Qwen3VLProcessor, Qwen2VLImageProcessor, Qwen3VLVideoProcessor, tokenizer, 8,
                                   system_turn=False)
    save_twin(model, out, processor, "Tiny random-weight Qwen3-VL twin.")


GEMMA3_TEMPLATE = (  # Gemma's turns; the model answers in the "model" role
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}{{ '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<start_of_image>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<end_of_turn>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<start_of_turn>model{{ '\\n' }}{%- endif -%}"
)


def build_gemma3(out: Path) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor
    from transformers import Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig

    tokenizer = tokenizer_named(
        {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"},
        ("<start_of_turn>", "<end_of_turn>"),
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    text = Gemma3TextConfig(**tiny_text_sizes(
        tokenizer, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096,
    ))
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8, vision_use_head=False)
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer, image_seq_length=4, chat_template=GEMMA3_TEMPLATE,
    )
    save_twin(model, out, processor, "Tiny random-weight Gemma 3 twin (a sliding-window layer of 16 tokens).",
              extra_eos=["<end_of_turn>"])


IDEFICS3_TEMPLATE = (  # "User:...<end_of_utterance>\nAssistant:" turns
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ message['role'] | capitalize }}:"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<end_of_utterance>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)


def build_idefics3(out: Path) -> None:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor
    from transformers import Idefics3Processor, Idefics3VisionConfig

    grid = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
    tokenizer = tokenizer_with("<image>", ("<fake_token_around_image>", "<end_of_utterance>", "<global-img>",
                                            *grid))
    torch.manual_seed(0)
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=32, patch_size=8),
        text_config=tiny_text_config(tokenizer),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Idefics3ForConditionalGeneration(config)
    # Images split into 32-pixel tiles (at most 2x2) plus a global view; 4 tokens per tile.
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    save_twin(model, out, processor, "Tiny random-weight Idefics3 twin (SmolVLM's first architecture).",
              extra_eos=["<end_of_utterance>"])


INTERNVL_TEMPLATE = vlm_chat_template("<IMG_CONTEXT>")


def build_internvl(out: Path) -> None:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration
    from transformers import InternVLProcessor, InternVLVideoProcessor, InternVLVisionConfig

    tokenizer = tokenizer_named({"start_image_token": "<img>", "end_image_token": "</img>",
                                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    torch.manual_seed(0)
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=[32, 32], patch_size=[8, 8]),
        text_config=tiny_text_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    model = InternVLForConditionalGeneration(config)
    # Dynamic tiling: up to 4 tiles of 32 pixels plus a thumbnail; 4 tokens per tile.
    image_processor = GotOcr2ImageProcessor(size={"height": 32, "width": 32}, crop_to_patches=True,
                                            min_patches=1, max_patches=4)
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                  video_processor=InternVLVideoProcessor(size={"height": 32, "width": 32}),
                                  image_seq_length=4, chat_template=INTERNVL_TEMPLATE)
    save_twin(model, out, processor, "Tiny random-weight InternVL (transformers-native) twin.")
