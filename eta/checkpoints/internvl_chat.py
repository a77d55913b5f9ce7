"""InternVL-Chat-1.0 (the paper's InternVL-Chat-ViT-6B-Vicuna-7B) on transformers' own classes.

That checkpoint was trained with the LLaVA codebase: a Vicuna-7B (LLaMA) language model, a two-layer
GELU projector (``mm_projector``) and the InternViT-6B vision encoder, whose weights sit in their own
repository. No hub code loads it: it needs that codebase installed. Here its weights are renamed
onto ``LlavaForConditionalGeneration`` whose vision tower is transformers' ``InternVLVisionModel``
(InternViT's architecture: fused qkv split into q/k/v, RMS-normed q and k, layer scale), and the
result is written once as an ordinary checkpoint directory that ``eta.models.load_vlm`` reads.

``convert_state`` is pure (a state dict in, a state dict out); ``build_native`` adds the configs,
the tokenizer with an ``<image>`` token, the Vicuna v1 chat template and the image processor.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

VISION_REPO = "OpenGVLab/InternViT-6B-224px"  # used when the chat config names a local vision tower path
IMAGE_TOKEN = "<image>"
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")
# Vicuna v1 turns as the LLaVA codebase writes them: "<system> USER: <image>\n{question} ASSISTANT:"
VICUNA_TEMPLATE = (
    "{{ bos_token }}" + VICUNA_SYSTEM + " "
    "{%- for message in messages -%}"
    "{{ 'USER: ' if message['role'] == 'user' else 'ASSISTANT: ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image>{{ '\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ ' ' if message['role'] == 'user' else eos_token }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)

# InternViT names (original) -> InternVLVisionModel names; ``qkv`` is split separately.
VISION_RENAMES = [
    (r"^embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"^embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"^embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"^encoder\.layers\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.projection_layer."),
    (r"^encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.", r"encoder.layer.\1.attention.\2."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"encoder.layer.\1.mlp."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"^encoder\.layers\.(\d+)\.ls1$", r"encoder.layer.\1.lambda_1"),
    (r"^encoder\.layers\.(\d+)\.ls2$", r"encoder.layer.\1.lambda_2"),
]
QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")
CHAT_RENAMES = [
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.(embed_tokens|layers|norm)\b", r"model.language_model.\1"),
    (r"^lm_head\.", "lm_head."),
]
CHAT_VISION_PREFIX = "model.vision_tower.vision_tower."  # where a chat checkpoint keeps a saved tower
FILES = ["*.json", "*.safetensors", "*.bin", "tokenizer*", "*.model", "*.txt"]  # never the Python files


def convert_vision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """InternViT weights under ``model.vision_tower.`` of the Llava layout."""
    out = {}
    for key, value in state.items():
        if key.startswith("clip_projector") or key.startswith("head"):
            continue  # InternViT's contrastive head: unused by the chat model
        if match := QKV.fullmatch(key):
            layer, kind = match.groups()
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"model.vision_tower.encoder.layer.{layer}.attention.{name}.{kind}"] = part.clone()
            continue
        out["model.vision_tower." + rename(key, VISION_RENAMES, "InternViT")] = value
    return out


def convert_state(chat: dict[str, torch.Tensor],
                  vision: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The chat checkpoint (and the vision tower's, if the chat one does not hold it) in the Llava layout."""
    own_vision = {k.removeprefix(CHAT_VISION_PREFIX): v for k, v in chat.items() if k.startswith(CHAT_VISION_PREFIX)}
    if not own_vision and vision is None:
        raise ValueError("the chat checkpoint holds no vision tower and none was given")
    out = convert_vision(own_vision or vision)
    for key, value in chat.items():
        if not key.startswith(CHAT_VISION_PREFIX):
            out[rename(key, CHAT_RENAMES, "InternVL-Chat")] = value
    return out


def rename(key: str, rules: list[tuple[str, str]], layout: str) -> str:
    for pattern, replacement in rules:
        new, hits = re.subn(pattern, replacement, key)
        if hits:
            return new
    raise KeyError(f"{layout} weight {key!r} has no counterpart in the native layout")


def vision_config(intern_vit: dict[str, Any]):
    """InternVLVisionConfig from an InternViT ``config.json`` (its own field names)."""
    from transformers import InternVLVisionConfig

    size, patch = intern_vit["image_size"], intern_vit["patch_size"]
    return InternVLVisionConfig(
        hidden_size=intern_vit["hidden_size"],
        intermediate_size=intern_vit["intermediate_size"],
        num_hidden_layers=intern_vit["num_hidden_layers"],
        num_attention_heads=intern_vit["num_attention_heads"],
        attention_bias=intern_vit.get("qkv_bias", False),
        use_qk_norm=intern_vit.get("qk_normalization", False),
        norm_type=intern_vit.get("norm_type", "rms_norm"),
        layer_norm_eps=intern_vit.get("layer_norm_eps", 1e-6),
        layer_scale_init_value=intern_vit.get("initializer_factor", 0.1),
        hidden_act=intern_vit.get("hidden_act", "gelu"),
        image_size=[size, size], patch_size=[patch, patch],
        use_mean_pooling=True,  # no final norm: the chat model reads hidden states of the encoder
    )


def llava_config(chat: dict[str, Any], vision, image_token_id: int, vocab_size: int):
    """The Llava config of the native model from the chat ``config.json`` (LLaVA codebase fields)."""
    from transformers import LlamaConfig, LlavaConfig

    projector = chat.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ValueError(f"InternVL-Chat projector {projector!r} is not supported natively (only mlp2x_gelu)")
    feature = chat.get("mm_vision_select_feature", "patch")
    text_fields = {k: v for k, v in chat.items()
                   if not k.startswith("mm_") and k not in ("architectures", "model_type")}
    text = LlamaConfig(**{**text_fields, "vocab_size": vocab_size})
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id,
        vision_feature_layer=chat.get("mm_vision_select_layer", -1),
        vision_feature_select_strategy="default" if feature == "patch" else "full",
        projector_hidden_act="gelu", image_seq_length=(vision.image_size[0] // vision.patch_size[0]) ** 2,
    )


def build_native(chat_dir: Path, vision_dir: Path | None, out: Path) -> None:
    """Write the native checkpoint directory from the two downloaded repositories."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    chat_cfg = json.loads((chat_dir / "config.json").read_text())
    vision_cfg = json.loads(((vision_dir or chat_dir) / "config.json").read_text())
    vision_cfg = vision_cfg.get("vision_config", vision_cfg)
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    vision = vision_config(vision_cfg)
    config = llava_config(chat_cfg, vision, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), len(tokenizer))
    vision_weights = read_weights(vision_dir, load_file) if vision_dir else None
    state = convert_state(read_weights(chat_dir, load_file), vision_weights)
    grow_embeddings(state, len(tokenizer))
    model = LlavaForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"InternVL-Chat weights do not fit the native layout: missing {missing[:8]}, "
                           f"unexpected {unexpected[:8]}")
    size = vision.image_size[0]
    image_processor = CLIPImageProcessor(  # the LLaVA codebase's InternViT preprocessing (ImageNet statistics)
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=vision.patch_size[0], vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=VICUNA_TEMPLATE)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def read_weights(directory: Path, load_file) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(f).items()}
    files = sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"no weights (*.safetensors, pytorch_model*.bin) in {directory}")
    return {k: v for f in files for k, v in torch.load(f, map_location="cpu", weights_only=True).items()}


@torch.no_grad()
def grow_embeddings(state: dict[str, torch.Tensor], vocab_size: int) -> None:
    """Rows for the added ``<image>`` token (and padding): the mean of the trained rows. The image
    token's row is replaced by image features before the model sees it."""
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        weight = state[key]
        if weight.shape[0] < vocab_size:
            extra = weight.mean(0, keepdim=True).expand(vocab_size - weight.shape[0], -1)
            state[key] = torch.cat([weight, extra], dim=0)


def native_dir(repo_id: str) -> Path:
    """Download (once) the chat checkpoint and its vision tower, convert, and return the directory."""
    from huggingface_hub import snapshot_download

    from eta.cache import build_once, cache_dir

    def build(out: Path) -> None:
        chat_dir = Path(snapshot_download(repo_id, allow_patterns=FILES))
        tower = json.loads((chat_dir / "config.json").read_text()).get("mm_vision_tower", VISION_REPO)
        tower = tower if re.fullmatch(r"[\w.-]+/[\w.-]+", tower or "") else VISION_REPO
        has_tower = any(k.startswith(CHAT_VISION_PREFIX) for k in weight_names(chat_dir))
        vision_dir = None if has_tower else Path(snapshot_download(tower, allow_patterns=FILES))
        log.info("converting %s (vision tower %s) to the native Llava layout (once)", repo_id,
                 "inside the checkpoint" if has_tower else tower)
        build_native(chat_dir, vision_dir, out)

    return build_once(cache_dir() / "models" / ("native-" + repo_id.replace("/", "--")), build)


def weight_names(directory: Path) -> list[str]:
    index = next(iter(sorted(directory.glob("*.index.json"))), None)
    if index is not None:
        return list(json.loads(index.read_text())["weight_map"])
    from safetensors import safe_open

    names: list[str] = []
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(f, "pt") as handle:
            names.extend(handle.keys())
    return names
