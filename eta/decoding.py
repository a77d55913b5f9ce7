"""One decoding loop for every architecture: prefill, fork, sample, select.

A ``DecodeState`` is a shared prefix: its KV cache plus the one token not yet fed to the model.
Vanilla decoding, shallow alignment and sentence-level best-of-N all run on it:

* ``prefill`` runs the prompt once.
* ``fork`` makes N rows that share the prefix without recomputing it; the parent is untouched.
* ``sample_continuations`` decodes all rows as one batch until each stops (a stop string found
  through the tokenizer, an end-of-sequence token, or a token budget).
* ``advance`` continues from one row of a decoded batch.

Token choice and stopping are plain callables, in the manner of transformers' logits processors
and stopping criteria.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

TokenChooser = Callable[[torch.Tensor], torch.Tensor]  # (B, V) logits -> (B,) token ids


class StopRule(Protocol):
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B,) bool
        ...


@dataclass
class DecodeState:
    cache: Any
    pending: torch.Tensor  # (B, 1): the next token to feed; not yet in the cache
    length: int  # tokens held by the cache
    step_extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-token model inputs (B, 1, ...)
    mask: torch.Tensor | None = None  # (B, length + 1) for left-padded batches; None when unpadded

    @property
    def batch_size(self) -> int:
        return self.pending.shape[0]


@dataclass
class Continuations:
    tokens: torch.Tensor  # (B, steps) sampled tokens; positions past a row's length are filler
    lengths: torch.Tensor  # (B,) tokens each row produced, its stop token included
    ended_eos: torch.Tensor  # (B,) bool: the row stopped on an end-of-sequence token
    stopped: torch.Tensor  # (B,) bool: the row stopped on EOS or a stop string (not the budget)
    start_length: int  # tokens in the cache before decoding
    row_caches: list[list[tuple]]  # per row, per cache layer: (keys, values) once the row ended
    template: Any  # the batch's cache object, to build per-row caches like it
    step_extra: dict[str, torch.Tensor]

    def row(self, i: int, include_eos: bool = False) -> list[int]:
        n = int(self.lengths[i]) - (0 if include_eos or not bool(self.ended_eos[i]) else 1)
        return self.tokens[i, :n].tolist()


def new_cache(model) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config.get_text_config(decoder=True))


def split_inputs(inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
    """Split processor outputs into prompt ids, prefill-only kwargs and per-step kwargs.

    A tensor aligned with ``input_ids`` on its first two dimensions (Mllama's cross-attention mask)
    is a per-token input: the prefill gets all but its last row and every later step repeats the
    last row, as transformers' own generation does.
    """
    input_ids = inputs["input_ids"]
    prefill_kwargs: dict[str, Any] = {}
    step_extra: dict[str, torch.Tensor] = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask"):
            continue
        aligned = isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[:2] == input_ids.shape
        if aligned:
            prefill_kwargs[key] = value[:, :-1]
            step_extra[key] = value[:, -1:]
        else:
            prefill_kwargs[key] = value
    return input_ids, prefill_kwargs, step_extra


@torch.inference_mode()
def prefill(vlm, inputs: dict[str, Any]) -> DecodeState:
    """Run the prompt (all but its last token) once; the last token is left pending.

    ``vlm.split_inputs`` sorts the processor outputs into prefill-only kwargs and per-row step
    inputs (``split_inputs`` here, plus whatever the model's family needs at each step)."""
    input_ids, prefill_kwargs, step_extra = vlm.split_inputs(inputs)
    if input_ids.shape[0] != 1 or input_ids.shape[1] < 2:
        raise ValueError(f"prefill takes one prompt of at least 2 tokens, got shape {tuple(input_ids.shape)}")
    cache = new_cache(vlm.model)
    vlm.forward(input_ids[:, :-1], cache, extra=prefill_kwargs)
    return DecodeState(cache=cache, pending=input_ids[:, -1:], length=input_ids.shape[1] - 1,
                       step_extra=step_extra)


@torch.inference_mode()
def prefill_batch(vlm, inputs: dict[str, Any]) -> DecodeState:
    """Prefill several left-padded prompts (``vlm.encode_batch``) as one batch."""
    input_ids, prefill_kwargs, step_extra = vlm.split_inputs(inputs)
    mask = inputs.get("attention_mask")
    if mask is None or bool(mask.all()):
        if input_ids.shape[0] == 1:
            return prefill(vlm, inputs)
        mask = torch.ones_like(input_ids)
    if not bool(mask[:, -1].all()):
        raise ValueError("batched prompts must be left-padded")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = new_cache(vlm.model)
    vlm.forward(input_ids[:, :-1], cache, extra=prefill_kwargs, attention_mask=mask[:, :-1],
                position_ids=positions[:, :-1])
    return DecodeState(cache=cache, pending=input_ids[:, -1:], length=input_ids.shape[1] - 1,
                       step_extra=step_extra, mask=mask)


def fork(state: DecodeState, n: int) -> DecodeState:
    """N rows sharing the prefix of a batch-1 state; the parent's tensors are never written."""
    if state.batch_size != 1 or state.mask is not None:
        raise ValueError("fork takes an unpadded batch-1 state")
    child = copy.copy(state.cache)
    child.layers = [copy.copy(layer) for layer in state.cache.layers]
    child.batch_repeat_interleave(n)  # assigns new tensors on the copied layers
    return DecodeState(
        cache=child,
        pending=state.pending.repeat(n, 1),
        length=state.length,
        step_extra={k: v.repeat_interleave(n, dim=0) for k, v in state.step_extra.items()},
    )


def _row_slices(cache, positions: list[int]) -> list[list[tuple]]:
    """Views of the cache rows at ``positions`` (kept alive after the batch cache moves on)."""
    return [[(layer.keys[p: p + 1], layer.values[p: p + 1]) if layer.keys is not None else (None, None)
             for layer in cache.layers] for p in positions]


def advance(cont: Continuations, row: int) -> DecodeState:
    """Continue from ``row`` of a decoded batch: its cache holds the prefix and all its tokens but
    the last, which becomes the pending token."""
    n = int(cont.lengths[row])
    if n == 0:
        raise ValueError("cannot advance on an empty continuation")
    cache = copy.copy(cont.template)
    cache.layers = [copy.copy(layer) for layer in cont.template.layers]
    for layer, (keys, values) in zip(cache.layers, cont.row_caches[row]):
        layer.keys, layer.values = keys, values
    return DecodeState(
        cache=cache,
        pending=cont.tokens[row: row + 1, n - 1: n],
        length=cont.start_length + n,
        step_extra={k: v[row: row + 1] for k, v in cont.step_extra.items()},
    )


@torch.inference_mode()
def sample_continuations(
    vlm,
    state: DecodeState,
    *,
    max_tokens: int,
    choose: TokenChooser,
    stop: StopRule | None = None,
) -> Continuations:
    """Decode every row of ``state`` as one batch until each row stops or ``max_tokens``.

    A row that stops leaves the batch at once (its cache rows are kept aside), so the remaining
    rows decode at the cost of a smaller batch. The state's cache is consumed (fork first to keep
    a parent).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    batch = state.batch_size
    device = state.pending.device
    eos = torch.tensor(vlm.eos_token_ids, device=device, dtype=torch.long)
    tokens = torch.zeros(batch, max_tokens, dtype=torch.long, device=device)
    lengths = torch.full((batch,), max_tokens, dtype=torch.long, device=device)
    ended_eos = torch.zeros(batch, dtype=torch.bool, device=device)
    stopped = torch.zeros(batch, dtype=torch.bool, device=device)
    row_caches: list[list[tuple] | None] = [None] * batch
    active = torch.arange(batch, device=device)  # original row of each batch position
    active_rows = list(range(batch))
    cache, extra, next_input, mask = state.cache, dict(state.step_extra), state.pending, state.mask
    steps = 0
    for t in range(max_tokens):
        if mask is None:
            logits = vlm.forward(next_input, cache, extra=extra)
        else:
            logits = vlm.forward(next_input, cache, extra=extra, attention_mask=mask,
                                 position_ids=mask.sum(-1, keepdim=True) - 1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        token = choose(logits)
        tokens[active, t] = token
        steps = t + 1
        is_eos = torch.isin(token, eos)
        hit = is_eos if stop is None else is_eos | stop(tokens[active, :steps])
        if not bool(hit.any()):
            next_input = token[:, None]
            continue
        lengths[active[hit]] = steps
        ended_eos[active[hit]] = is_eos[hit]
        stopped[active[hit]] = True
        ended = hit.nonzero().flatten().tolist()
        for pos, rows in zip(ended, _row_slices(cache, ended)):
            row_caches[active_rows[pos]] = rows
        keep = (~hit).nonzero().flatten()
        if keep.numel() == 0:
            break
        cache.batch_select_indices(keep)
        active, token = active[keep], token[keep]
        active_rows = [active_rows[p] for p in keep.tolist()]
        extra = {k: v[keep] for k, v in extra.items()}
        mask = mask[keep] if mask is not None else None
        next_input = token[:, None]
    else:  # rows that ran out of budget
        for pos, rows in enumerate(_row_slices(cache, list(range(len(active_rows))))):
            row_caches[active_rows[pos]] = rows
    return Continuations(tokens=tokens[:, :steps], lengths=lengths, ended_eos=ended_eos, stopped=stopped,
                         start_length=state.length, row_caches=row_caches, template=cache,
                         step_extra=state.step_extra)


# ------------------------------------------------------------------------- token choice and stops


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


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device`` (CPU generators serve devices without their own)."""
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


# ------------------------------------------------------------------------ sentence-level best-of-N

SentenceScorer = Callable[[list[int], list[list[int]], int, bool], list[float]]
"""(response so far, candidate token lists, sentence index from 1, any candidate ended with EOS) -> scores"""


@dataclass
class BestOfNResult:
    tokens: list[int]  # the response (EOS excluded)
    sentences: int
    candidates_scored: int
    ended_eos: bool


def best_of_n_sentences(
    vlm,
    state: DecodeState,
    *,
    num_candidates: int,
    choose: TokenChooser,
    stop: StopRule,
    score: SentenceScorer,
    max_new_tokens: int,
    max_sentence_tokens: int,
) -> BestOfNResult:
    """Grow a response sentence by sentence, keeping the best of N sampled candidates each time.

    The N candidates of a sentence are decoded as one batch from a fork of the shared prefix;
    the winner's cache row becomes the next prefix. With one candidate nothing is scored.
    """
    response: list[int] = []
    sentence_idx = 1
    scored = 0
    ended = False
    while len(response) < max_new_tokens:
        budget = min(max_sentence_tokens, max_new_tokens - len(response))
        cont = sample_continuations(vlm, fork(state, num_candidates), max_tokens=budget, choose=choose, stop=stop)
        if num_candidates == 1:
            best = 0
        else:
            candidates = [cont.row(i) for i in range(num_candidates)]
            scores = score(response, candidates, sentence_idx, bool(cont.ended_eos.any()))
            scored += len(candidates)
            best = max(range(num_candidates), key=lambda i: scores[i])
        response.extend(cont.row(best))
        if bool(cont.ended_eos[best]):
            ended = True
            break
        state = advance(cont, best)
        sentence_idx += 1
    return BestOfNResult(tokens=response, sentences=sentence_idx, candidates_scored=scored, ended_eos=ended)
