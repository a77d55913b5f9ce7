"""How a decoding step picks its token, and when a row stops.

Both are plain callables, in the manner of transformers' logits processors and stopping criteria:

* a ``TokenChooser`` maps (B, V) logits to (B,) token ids: ``greedy``, or ``TopKSampler`` drawing
  from a seeded generator (``make_generator``);
* a ``StopRule`` maps a row's tokens so far (B, T) to (B,) bools: ``StopStrings`` (any token that
  completes a string, found through the tokenizer) or ``SentenceEndTokens`` (a token that is
  exactly a sentence-end string, the official loop's rule); ``sentence_stop`` picks one by protocol.
"""

from __future__ import annotations

import re
from typing import Callable, Protocol

import torch

TokenChooser = Callable[[torch.Tensor], torch.Tensor]  # (B, V) logits -> (B,) token ids


class StopRule(Protocol):
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B,) bool
        ...


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


class TopKSampler:
    """Sample from the top-k logits at a temperature, from a seeded generator."""

    def __init__(self, top_k: int, temperature: float, generator: torch.Generator | None = None):
        if top_k < 1 or temperature <= 0:
            raise ValueError(f"top_k must be >= 1 and temperature > 0, got {top_k}, {temperature}")
        self.top_k = top_k
        self.temperature = temperature
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        values, indices = logits.float().topk(min(self.top_k, logits.shape[-1]), dim=-1)
        probs = torch.softmax(values / self.temperature, dim=-1)
        if self.generator is not None and self.generator.device != probs.device:
            choice = torch.multinomial(probs.cpu(), 1, generator=self.generator).to(probs.device)
        else:
            choice = torch.multinomial(probs, 1, generator=self.generator)
        return indices.gather(-1, choice).squeeze(-1)


class StopStrings:
    """A sentence ends at the first token that completes one of ``strings`` (found via the tokenizer)."""

    def __init__(self, tokenizer, strings: list[str]):
        from transformers import StopStringCriteria

        if not strings or any(not s for s in strings):
            raise ValueError(f"stop strings must be non-empty, got {strings!r}")
        self.strings = list(strings)
        self._criteria = StopStringCriteria(tokenizer, self.strings)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._criteria(tokens, None)


class SentenceEndTokens:
    """A sentence ends at a sampled token that is, by itself, exactly one of ``strings``.

    The official ETA loop ends a sentence on LLaMA's token 29889 ("."); here the ids are found
    through the tokenizer for any architecture: the vocabulary entries that add exactly the string
    when decoded after other text (byte-fallback pieces excluded). A token that merely contains a
    period (``...``, ``.\u201d``, ``.[``) or carries a leading space (`` .``) ends nothing.
    """

    def __init__(self, tokenizer, strings: list[str]):
        if not strings or any(not s for s in strings):
            raise ValueError(f"sentence-end strings must be non-empty, got {strings!r}")
        self.strings = list(strings)
        self.token_ids = sorted(exact_token_ids(tokenizer, self.strings))
        if not self.token_ids:
            raise ValueError(f"no token of this tokenizer is exactly one of {self.strings!r}")
        self._ids = torch.tensor(self.token_ids, dtype=torch.long)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._ids.device != tokens.device:
            self._ids = self._ids.to(tokens.device)
        return torch.isin(tokens[:, -1], self._ids)


def exact_token_ids(tokenizer, strings: list[str]) -> set[int]:
    """Ids of the tokens that decode to exactly one of ``strings`` in running text."""
    anchor = tokenizer.encode("a", add_special_tokens=False)
    base = tokenizer.decode(anchor)
    special = set(tokenizer.all_special_ids)
    ascii_only = all(s.isascii() for s in strings)
    found = set()
    for piece, token_id in tokenizer.get_vocab().items():
        if token_id in special or re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):
            continue
        if ascii_only and not any(ch in piece for s in strings for ch in s):
            continue  # ASCII is spelled as itself in SentencePiece and byte-level vocabularies
        added = tokenizer.decode(anchor + [token_id])
        if added.startswith(base) and added[len(base):] in strings:
            found.add(token_id)
    return found


def sentence_stop(tokenizer, strings: list[str], protocol: str = "strict") -> StopRule:
    """The sentence end of deep alignment: ``official`` ends on a sampled token that is exactly a
    sentence-end string (the official loop's rule); ``strict`` on any token that completes one."""
    if protocol == "official":
        return SentenceEndTokens(tokenizer, strings)
    if protocol == "strict":
        return StopStrings(tokenizer, strings)
    raise ValueError(f"unknown protocol {protocol!r}; expected 'official' or 'strict'")


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device`` (CPU generators serve devices without their own)."""
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
