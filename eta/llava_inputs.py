"""LLaVA-1.5's inputs as its official evaluation builds them, where they differ from the
processor's chat template: LLaVA's conversation modes (system prompt and roles), images padded to
a square of the image processor's mean colour, and the prompt tokenized piece by piece around the
image placeholder (``tokenizer_image_token``). ``eta.models.VLM`` uses them under the official
protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
