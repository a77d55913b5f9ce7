"""One decoding loop for every architecture: prefill, fork, sample, select.

A ``DecodeState`` is a shared prefix: its KV cache plus the one token not yet fed to the model.
Vanilla decoding, shallow alignment and sentence-level best-of-N (``eta.best_of_n``) all run on it:

* ``prefill`` runs the prompt once.
* ``fork`` makes N rows that share the prefix without recomputing it; the parent is untouched.
* ``sample_continuations`` decodes all rows as one batch until each stops (a stop string found
  through the tokenizer, an end-of-sequence token, or a token budget).
* ``advance`` continues from one row of a decoded batch.

Underneath, a ``Flight`` holds the rows decoding together: rows join (left-padded when their
lengths differ) and leave between steps. ``eta.best_of_n`` uses it to align many inputs in one
batch, each input's N rows forked from its own prefix, inputs joining as others finish.

Token choice and stopping are plain callables (``eta.sampling``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from eta.sampling import StopRule, TokenChooser


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


def state_from_row(template, row_cache: list[tuple], pending: torch.Tensor, length: int,
                   step_extra: dict[str, torch.Tensor]) -> DecodeState:
    """A batch-1 state whose cache layers are one row's tensors (views, never written)."""
    cache = copy.copy(template)
    cache.layers = [copy.copy(layer) for layer in template.layers]
    for layer, (keys, values) in zip(cache.layers, row_cache):
        layer.keys, layer.values = keys, values
    return DecodeState(cache=cache, pending=pending, length=length, step_extra=step_extra)


def advance(cont: Continuations, row: int) -> DecodeState:
    """Continue from ``row`` of a decoded batch: its cache holds the prefix and all its tokens but
    the last, which becomes the pending token."""
    n = int(cont.lengths[row])
    if n == 0:
        raise ValueError("cannot advance on an empty continuation")
    return state_from_row(cont.template, cont.row_caches[row], cont.tokens[row: row + 1, n - 1: n],
                           cont.start_length + n, {k: v[row: row + 1] for k, v in cont.step_extra.items()})


class Flight:
    """The rows decoding together: one KV cache, left-padded when rows of different lengths share it.

    Rows join (``join``: a forked state, padded on the left to the batch's width or widening the
    batch) and leave (``leave``: their cache rows are handed back, unpadded on request) between
    steps; ``step`` runs the model once on every row's pending token. Positions come from the
    attention mask, so a padded row sees what it would see alone. Columns that hold padding for
    every row are dropped as rows leave. Cross-attention layers (Mllama's image keys) have a fixed
    length per row and are never padded.
    """

    def __init__(self, vlm):
        self.vlm = vlm
        text_config = vlm.model.config.get_text_config(decoder=True)
        self.cross_layers = set(getattr(text_config, "cross_attention_layers", None) or [])
        self.cache = None
        self.mask: torch.Tensor | None = None  # (rows, width + 1): cache columns and the pending token
        self.pending: torch.Tensor | None = None  # (rows, 1)
        self.extra: dict[str, torch.Tensor] = {}

    @property
    def rows(self) -> int:
        return 0 if self.pending is None else self.pending.shape[0]

    @property
    def width(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1] - 1

    def join(self, state: DecodeState) -> None:
        """Add the rows of ``state`` after the present ones (its cache is taken over)."""
        mask = state.mask if state.mask is not None else torch.ones(
            state.batch_size, state.length + 1, dtype=torch.long, device=state.pending.device)
        if self.rows == 0:
            self.cache, self.mask, self.pending, self.extra = state.cache, mask, state.pending, dict(state.step_extra)
            return
        width = max(self.width, mask.shape[1] - 1)
        old, new = self.rows, state.batch_size
        for i, (mine, theirs) in enumerate(zip(self.cache.layers, state.cache.layers)):
            if mine.keys is None:
                continue
            if i in self.cross_layers:
                mine.keys = torch.cat([mine.keys, theirs.keys])
                mine.values = torch.cat([mine.values, theirs.values])
                continue
            for name in ("keys", "values"):
                a, b = getattr(mine, name), getattr(theirs, name)
                merged = a.new_zeros(old + new, a.shape[1], width, a.shape[3])
                merged[:old, :, width - a.shape[2]:] = a
                merged[old:, :, width - b.shape[2]:] = b
                setattr(mine, name, merged)
        self.mask = torch.cat([_pad_left(self.mask, width + 1), _pad_left(mask, width + 1)])
        self.pending = torch.cat([self.pending, state.pending])
        self.extra = {k: torch.cat([v, state.step_extra[k]]) for k, v in self.extra.items()}

    def step(self) -> torch.Tensor:
        """(rows, V) logits of every row's pending token, which enters the cache."""
        if bool(self.mask.all()):  # nothing padded: the plain path, exactly as a lone batch runs
            logits = self.vlm.forward(self.pending, self.cache, extra=self.extra)
        else:
            logits = self.vlm.forward(self.pending, self.cache, extra=self.extra, attention_mask=self.mask,
                                      position_ids=self.mask.sum(-1, keepdim=True) - 1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        return logits

    def feed(self, tokens: torch.Tensor) -> None:
        """The next pending token of every row."""
        self.pending = tokens[:, None]

    def row_cache(self, position: int, unpad: bool = False) -> list[tuple]:
        """Views of one row's cache (without its padding columns when ``unpad``)."""
        start = self.width - int(self.mask[position, :-1].sum()) if unpad else 0
        return [(None, None) if layer.keys is None else
                (layer.keys[position: position + 1], layer.values[position: position + 1]) if i in self.cross_layers
                else (layer.keys[position: position + 1, :, start:], layer.values[position: position + 1, :, start:])
                for i, layer in enumerate(self.cache.layers)]

    def keep(self, positions: torch.Tensor) -> None:
        """Keep only the rows at ``positions`` (in that order); drop columns padded in all of them."""
        if positions.numel() == 0:
            self.pending = None
            self.mask = None
            return
        self.cache.batch_select_indices(positions)
        self.mask, self.pending = self.mask[positions], self.pending[positions]
        self.extra = {k: v[positions] for k, v in self.extra.items()}
        padded = int((self.mask[:, :-1].sum(0) == 0).long().cumprod(0).sum())
        if padded:
            for i, layer in enumerate(self.cache.layers):
                if layer.keys is not None and i not in self.cross_layers:
                    layer.keys, layer.values = layer.keys[:, :, padded:], layer.values[:, :, padded:]
            self.mask = self.mask[:, padded:]


def _pad_left(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], dim=1)


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
    flight = Flight(vlm)
    flight.join(state)
    template = flight.cache
    steps = 0
    for t in range(max_tokens):
        token = choose(flight.step())
        tokens[active, t] = token
        steps = t + 1
        is_eos = torch.isin(token, eos)
        hit = is_eos if stop is None else is_eos | stop(tokens[active, :steps])
        if not bool(hit.any()):
            flight.feed(token)
            continue
        lengths[active[hit]] = steps
        ended_eos[active[hit]] = is_eos[hit]
        stopped[active[hit]] = True
        for pos in hit.nonzero().flatten().tolist():
            row_caches[active_rows[pos]] = flight.row_cache(pos)
        keep = (~hit).nonzero().flatten()
        flight.keep(keep)
        if keep.numel() == 0:
            break
        active, token = active[keep], token[keep]
        active_rows = [active_rows[p] for p in keep.tolist()]
        flight.feed(token)
    else:  # rows that ran out of budget
        for pos in range(len(active_rows)):
            row_caches[active_rows[pos]] = flight.row_cache(pos)
    return Continuations(tokens=tokens[:, :steps], lengths=lengths, ended_eos=ended_eos, stopped=stopped,
                         start_length=state.length, row_caches=row_caches, template=template,
                         step_extra=state.step_extra)
