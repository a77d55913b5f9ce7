"""Twins of the checkpoint layouts that ``eta.checkpoints`` reads without hub code.

* ``tiny-armorm``: ArmoRM's hub config keys, state-dict names and shape pattern (a Llama backbone,
  a gated multi-objective head), with the Llama-3 chat template.
* ``tiny-internlm2``: InternLM2's fused ``wqkv`` (4 query heads per key-value head), biases and
  dynamic rope, with its ChatML template and hub tokenizer classes.
* ``tiny-internvl-chat``: InternVL-Chat-1.0 written in the LLaVA-codebase layout (chat repository +
  InternViT repository), then converted by the same code that converts the real checkpoint.

The first two are stored as sharded safetensors with hub-style config files (``_save_hub_checkpoint``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from eta.twins.common import tiny_text_config, write_stand_in
from eta.twins.smollm2 import smollm2_tokenizer

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


def _save_hub_checkpoint(out: Path, state: dict[str, torch.Tensor], config: dict, tokenizer) -> None:
    """Weights in shards, ``config.json`` and the tokenizer's files, as a hub repository holds them."""
    _save_sharded(state, out)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out)


def build_tiny_armorm(out: Path) -> None:
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
    _save_hub_checkpoint(out, state, config, tokenizer)
    write_stand_in(out, "Tiny random-weight twin of ArmoRM's checkpoint layout.")


def build_tiny_internlm2(out: Path) -> None:
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
    _save_hub_checkpoint(out, state, config, tokenizer)
    generation = {"bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id,
                  "eos_token_id": [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")]}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config.update(tokenizer_class="InternLM2Tokenizer", auto_map={"AutoTokenizer": [
        "tokenization_internlm2.InternLM2Tokenizer", "tokenization_internlm2_fast.InternLM2TokenizerFast"]})
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    write_stand_in(out, "Tiny random-weight twin of InternLM2's checkpoint layout.")


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


def build_internvl_chat(out: Path) -> None:
    """Tiny InternVL-Chat-1.0: written in the LLaVA-codebase layout (chat repository + InternViT
    repository), then converted by the same code that converts the real checkpoint."""
    import tempfile

    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    from eta.checkpoints import internvl_chat

    tokenizer = smollm2_tokenizer()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    text_config = tiny_text_config(tokenizer)
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
    write_stand_in(out, "Tiny random-weight InternVL-Chat-1.0 twin, converted from its own layout.")
