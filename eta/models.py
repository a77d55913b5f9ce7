"""Loading a VLM, and the one wrapper that turns any supported VLM into prompt tensors and logits.

Model-specific knowledge lives here: how a question and an image become a prompt (the processor's
chat template, or LLaVA-1.5's official inputs from ``eta.llava_inputs``), which processor outputs
belong to prefill only, and what each family feeds its model at every decode step. Decoding itself
(``eta.decoding``) is architecture-agnostic. Names resolve through ``eta.model_registry``;
``pick_device`` and ``pick_dtype`` serve every loader.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from eta.llava_inputs import LLAVA_CONVERSATIONS, check_conversation, chunked_ids, pad_to_square
from eta.model_registry import check_remote_code, local_path, resolve

log = logging.getLogger(__name__)


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
