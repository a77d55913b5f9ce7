"""Whether a question fits the model's context window, checked before decoding.

A prompt (chat template, image tokens, question) plus ``max_new_tokens`` must fit the language
model's ``max_position_embeddings``; past it a model runs on positions it was never trained on and
answers silently worse. ``fit_questions`` refuses such a question with the token counts, or, when
``engine.long_question`` is ``truncate``, cuts the question's end until it fits.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class ContextTooLongError(ValueError):
    """A question does not fit the model's context; the message gives the token counts."""


def context_length(vlm) -> int | None:
    """The language model's context window in tokens, or None when its config does not say."""
    config = vlm.model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if value else None


def prompt_lengths(vlm, questions: list[str], images: list) -> list[int]:
    """Tokens of each question's full prompt (template and image tokens included)."""
    inputs = vlm.encode_batch(questions, images)
    mask = inputs.get("attention_mask")
    if mask is None:
        return [int(inputs["input_ids"].shape[1])] * len(questions)
    return [int(n) for n in mask.sum(-1).tolist()]


def fit_questions(vlm, questions: list[str], images: list, max_new_tokens: int, truncate: bool = False,
                  names: list[str] | None = None) -> list[str]:
    """``questions`` unchanged when each prompt plus ``max_new_tokens`` fits the context; else a
    :class:`ContextTooLongError` naming the question, or (``truncate``) the question cut to fit."""
    limit = context_length(vlm)
    if limit is None:
        return list(questions)
    lengths = prompt_lengths(vlm, questions, images)
    out = list(questions)
    for i, length in enumerate(lengths):
        if length + max_new_tokens <= limit:
            continue
        name = names[i] if names else f"question {i}"
        what = (f"{name}: the prompt is {length} tokens and max_new_tokens is {max_new_tokens}, "
                f"more than the model's context of {limit} tokens")
        if not truncate:
            raise ContextTooLongError(f"{what}; shorten the question, lower max_new_tokens, or set "
                                      f"engine.long_question=truncate")
        out[i] = _truncate(vlm, questions[i], images[i], limit - max_new_tokens, what)
        log.warning("%s: question cut to fit", what)
    return out


def _truncate(vlm, question: str, image, budget: int, what: str) -> str:
    """The longest start of ``question`` whose prompt has at most ``budget`` tokens."""
    tokens = vlm.tokenizer(question, add_special_tokens=False)["input_ids"]
    overhead = prompt_lengths(vlm, [question], [image])[0] - len(tokens)
    keep = budget - overhead
    while keep > 0:
        text = vlm.tokenizer.decode(tokens[:keep], skip_special_tokens=True).strip()
        if text and prompt_lengths(vlm, [text], [image])[0] <= budget:
            return text
        keep -= 1  # a decoded cut can re-tokenize a little longer
    raise ContextTooLongError(f"{what}; even an empty question does not fit ({overhead} tokens of template "
                              f"and image), so it cannot be truncated")
