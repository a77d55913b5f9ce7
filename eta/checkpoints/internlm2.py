"""InternLM2 checkpoints (MD-Judge-v0.2, XComposer-2.5's language model) as transformers' Llama.

InternLM2 is Llama with other weight names and a fused attention input projection. Its
``wqkv`` output is laid out per key-value head: for each of the ``num_key_value_heads`` groups,
the group's ``num_attention_heads / num_key_value_heads`` query heads, then its key head, then its
value head, each ``head_dim`` rows; query head ``g * q_per_kv + j`` belongs to key-value head
``g``, which is Llama's grouping. The mapping:

==============================================  ==============================================
InternLM2                                        Llama
==============================================  ==============================================
``model.tok_embeddings``                         ``model.embed_tokens``
``layers.N.attention.wqkv`` (weight, bias)       ``layers.N.self_attn.q_proj`` / ``k_proj`` / ``v_proj``
``layers.N.attention.wo``                        ``layers.N.self_attn.o_proj``
``layers.N.feed_forward.w1`` / ``w3`` / ``w2``   ``layers.N.mlp.gate_proj`` / ``up_proj`` / ``down_proj``
``layers.N.attention_norm`` / ``ffn_norm``       ``layers.N.input_layernorm`` / ``post_attention_layernorm``
``model.norm``, ``output``                       ``model.norm``, ``lm_head``
==============================================  ==============================================

Config: ``bias`` (default true in InternLM2's config class) becomes ``attention_bias``;
``rope_theta`` and ``rope_scaling`` (``{"type": "dynamic" | "linear", "factor"}``) become Llama's
rope parameters (transformers' dynamic NTK is InternLM2's formula; both leave positions below
``max_position_embeddings`` unscaled). The tokenizer is read from ``tokenizer.json`` with its
chat template and special tokens, BOS added as InternLM2's tokenizer class adds it; the
generation config (end-of-turn ids) is kept.
"""

from __future__ import annotations

import json
import logging

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from eta.checkpoints.weights import check_names, checkpoint_dir, read_config, read_tensors, weight_files

log = logging.getLogger(__name__)

LAYER_NAMES = {  # InternLM2 name within a layer -> Llama name (wqkv is split separately)
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def llama_config(config: dict) -> LlamaConfig:
    """A LlamaConfig equal in architecture to an InternLM2 ``config.json``."""
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise KeyError(f"InternLM2 config.json lacks {', '.join(missing)}")
    rope: dict = {"rope_type": "default", "rope_theta": float(config.get("rope_theta", 10000))}
    scaling = config.get("rope_scaling")
    if scaling:
        kind = scaling.get("type", scaling.get("rope_type"))
        if kind not in ("dynamic", "linear"):
            raise ValueError(f"InternLM2 rope_scaling type {kind!r} is not dynamic or linear")
        rope.update(rope_type=kind, factor=float(scaling["factor"]))
    heads = config["num_attention_heads"]
    return LlamaConfig(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        hidden_act=config.get("hidden_act", "silu"),
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        attention_bias=bool(config.get("bias", True)),
        rope_parameters=rope,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
        pad_token_id=config.get("pad_token_id"),
    )


def internlm2_names(config: LlamaConfig) -> set[str]:
    """The weight names an InternLM2 checkpoint of this shape holds."""
    names = {"model.tok_embeddings.weight", "model.norm.weight"}
    if not config.tie_word_embeddings:
        names.add("output.weight")
    per_layer = [f"{name}.weight" for name in ("attention.wqkv", *LAYER_NAMES)]
    if config.attention_bias:
        per_layer += ["attention.wqkv.bias", "attention.wo.bias"]
    for i in range(config.num_hidden_layers):
        names.update(f"model.layers.{i}.{name}" for name in per_layer)
    return names


def split_wqkv(tensor: torch.Tensor, config: LlamaConfig, name: str) -> tuple[torch.Tensor, ...]:
    """Fused (kv_heads * (q_per_kv + 2) * head_dim, ...) -> q, k, v in Llama's row order."""
    kv_heads, head_dim = config.num_key_value_heads, config.head_dim
    q_per_kv = config.num_attention_heads // kv_heads
    rows = kv_heads * (q_per_kv + 2) * head_dim
    if tensor.shape[0] != rows:
        raise ValueError(f"{name} has {tensor.shape[0]} rows; {kv_heads} key-value groups of "
                         f"{q_per_kv} query + 1 key + 1 value heads of {head_dim} make {rows}")
    grouped = tensor.reshape(kv_heads, q_per_kv + 2, head_dim, *tensor.shape[1:])
    q = grouped[:, :q_per_kv].reshape(kv_heads * q_per_kv * head_dim, *tensor.shape[1:])
    k = grouped[:, q_per_kv].reshape(kv_heads * head_dim, *tensor.shape[1:])
    v = grouped[:, q_per_kv + 1].reshape(kv_heads * head_dim, *tensor.shape[1:])
    return q.contiguous(), k.contiguous(), v.contiguous()


def llama_name(name: str) -> str:
    """The Llama name of a non-fused InternLM2 weight."""
    if name == "model.tok_embeddings.weight":
        return "model.embed_tokens.weight"
    if name == "output.weight":
        return "lm_head.weight"
    if name.startswith("model.layers."):
        _, _, index, rest = name.split(".", 3)
        module, kind = rest.rsplit(".", 1)
        return f"model.layers.{index}.{LAYER_NAMES[module]}.{kind}"
    return name  # model.norm.weight


def llama_state_dict(tensors, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """InternLM2 (name, tensor) pairs -> a LlamaForCausalLM state dict."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in tensors:
        if ".attention.wqkv." in name:
            prefix, kind = name.split(".attention.wqkv.")
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), split_wqkv(tensor, config, name)):
                state[f"{prefix}.self_attn.{proj}.{kind}"] = part
        else:
            state[llama_name(name)] = tensor
    return state


def load_internlm2(source: str, dtype: torch.dtype = torch.float32):
    """(LlamaForCausalLM, tokenizer) from an InternLM2 checkpoint directory or hub id."""
    directory = checkpoint_dir(source)
    config = llama_config(read_config(directory))
    files = weight_files(directory)
    check_names(set(files), internlm2_names(config), f"InternLM2 checkpoint {source}")
    log.info("loading InternLM2 %s natively as Llama (%d tensors, %s)", source, len(files), dtype)
    state = llama_state_dict(read_tensors(files, dtype), config)
    model = LlamaForCausalLM.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    if (directory / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model.eval(), internlm2_tokenizer(directory)


def internlm2_tokenizer(directory):
    """The fast tokenizer of ``tokenizer.json`` set up as InternLM2's own tokenizer class sets it
    up: BOS added and EOS not (unless its config says otherwise), left padding."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    settings_file = directory / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    tokenizer.add_bos_token = bool(settings.get("add_bos_token", True))
    tokenizer.add_eos_token = bool(settings.get("add_eos_token", False))
    tokenizer.update_post_processor()
    tokenizer.padding_side = settings.get("padding_side", "left")
    return tokenizer
