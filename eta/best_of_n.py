"""Sentence-level best-of-N: a response grown sentence by sentence, the best of N candidates kept.

Each sentence's N candidates are decoded as one batch forked from the response so far
(``eta.decoding``); a scorer picks the winner, whose cache row becomes the next prefix.
``best_of_n_many`` aligns many inputs in one left-padded batch (a ``Flight``), each input's N rows
forked from its own prefix, inputs joining as others finish and their sentences scored together;
``best_of_n_sentences`` is the same for one input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from eta.decoding import DecodeState, Flight, fork, prefill, state_from_row
from eta.sampling import StopRule, TokenChooser

SentenceScorer = Callable[[list[int], list[list[int]], int, bool], list[float]]
"""(response so far, candidate token lists, sentence index from 1, any candidate ended with EOS) -> scores"""


@dataclass
class SentenceRequest:
    """The candidates of one input's sentence, waiting for their scores."""

    job: int  # index of the input among the jobs
    response: list[int]  # the response so far
    candidates: list[list[int]]
    sentence_idx: int  # from 1
    any_eos: bool  # some candidate ended with EOS


BatchScorer = Callable[[list[SentenceRequest]], list[list[float]]]
"""Scores for the sentences of several inputs at once (one list per request)."""


@dataclass
class AlignJob:
    """One input of a best-of-N run: its prompt (prefilled when it joins, or already) and its own
    token chooser (so that its samples come from its own generator, whatever runs beside it)."""

    prompt: dict[str, Any] | DecodeState  # ``vlm.encode`` output (batch 1) or a prefilled state
    choose: TokenChooser
    name: str = ""  # named in errors

    @property
    def prompt_tokens(self) -> int:
        if isinstance(self.prompt, DecodeState):
            return self.prompt.length + 1
        return int(self.prompt["input_ids"].shape[1])


@dataclass
class BestOfNResult:
    tokens: list[int]  # the response (EOS excluded)
    sentences: int
    candidates_scored: int
    ended_eos: bool


class CacheBudgetError(ValueError):
    """One input's candidates alone need more KV-cache tokens than the budget allows."""


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
    (``best_of_n_many`` with one job.)
    """
    def score_one(requests: list[SentenceRequest]) -> list[list[float]]:
        return [score(r.response, r.candidates, r.sentence_idx, r.any_eos) for r in requests]

    return best_of_n_many(vlm, [AlignJob(state, choose)], num_candidates=num_candidates, stop=stop, score=score_one,
                          max_new_tokens=max_new_tokens, max_sentence_tokens=max_sentence_tokens)[0]


@dataclass
class _Run:
    """Book-keeping of one job in flight: its response and the sentence its rows are decoding."""

    job: AlignJob
    state: DecodeState | None = None  # the prefix the next sentence forks from
    response: list[int] = field(default_factory=list)
    sentence_idx: int = 1
    scored: int = 0
    ended: bool = False
    tokens: torch.Tensor | None = None  # (N, budget) this sentence's tokens
    lengths: list[int] = field(default_factory=list)
    ended_eos: list[bool] = field(default_factory=list)
    row_caches: list[list[tuple] | None] = field(default_factory=list)
    active: list[int] = field(default_factory=list)  # candidates still decoding, in order
    steps: int = 0
    budget: int = 0


@torch.inference_mode()
def best_of_n_many(
    vlm,
    jobs: list[AlignJob],
    *,
    num_candidates: int,
    stop: StopRule,
    score: BatchScorer,
    max_new_tokens: int,
    max_sentence_tokens: int,
    max_cache_tokens: int | None = None,
    on_done: Callable[[int, BestOfNResult], None] | None = None,
) -> list[BestOfNResult]:
    """Sentence-level best-of-N for many inputs in one decoding batch (continuous batching).

    Every input in flight holds N rows; inputs are at different sentences and their rows share
    one left-padded cache (``Flight``). When the last of an input's N rows stops, its sentence is
    done: the sentences finished at that step are scored together (``score`` gets them all), each
    winner's row becomes its input's prefix and N new rows forked from it join the batch. An input
    that ends leaves; the next one waiting joins as soon as the cache budget allows:
    ``max_cache_tokens`` bounds rows x padded width (None: no bound), counting each input at its
    widest (prompt + ``max_new_tokens``). Each input draws its tokens with its own chooser on its
    own rows, in the order a lone run would, so its result does not depend on what runs beside it.
    """
    n = num_candidates
    if n < 1:
        raise ValueError("num_candidates must be at least 1")
    widths = [j.prompt_tokens + max_new_tokens for j in jobs]
    if max_cache_tokens is not None:
        for job, width in zip(jobs, widths):
            if n * width > max_cache_tokens:
                raise CacheBudgetError(
                    f"input {job.name or jobs.index(job)} alone needs {n} candidates x ({job.prompt_tokens} prompt + "
                    f"{max_new_tokens} new) = {n * width} KV-cache tokens, more than the budget of {max_cache_tokens} "
                    "(engine.align_tokens): raise it or lower eta.max_new_tokens")
    device = vlm.device
    eos = torch.tensor(vlm.eos_token_ids, device=device, dtype=torch.long)
    results: list[BestOfNResult | None] = [None] * len(jobs)
    runs: dict[int, _Run] = {}
    flight = Flight(vlm)
    owners: list[tuple[int, int]] = []  # (job, candidate) of each flight row
    waiting = list(range(len(jobs)))

    def fits(j: int) -> bool:
        if max_cache_tokens is None or not runs:
            return True
        rows = n * (len(runs) + 1)
        return rows * max(widths[i] for i in [*runs, j]) <= max_cache_tokens

    def start_sentence(j: int) -> None:
        run = runs[j]
        run.budget = min(max_sentence_tokens, max_new_tokens - len(run.response))
        run.tokens = torch.zeros(n, run.budget, dtype=torch.long, device=device)
        run.lengths, run.ended_eos = [run.budget] * n, [False] * n
        run.row_caches, run.active, run.steps = [None] * n, list(range(n)), 0
        flight.join(fork(run.state, n))
        owners.extend((j, c) for c in range(n))

    def finish_sentence(j: int, scores: list[float] | None) -> None:
        run = runs[j]
        best = 0 if scores is None else max(range(n), key=lambda i: scores[i])
        keep = run.lengths[best] - (1 if run.ended_eos[best] else 0)
        run.response.extend(run.tokens[best, :keep].tolist())
        if run.ended_eos[best]:
            run.ended = True
        elif len(run.response) < max_new_tokens:
            length = run.lengths[best]
            run.state = state_from_row(flight.cache, run.row_caches[best], run.tokens[best: best + 1, length - 1: length],
                                        run.state.length + length, run.state.step_extra)
            run.sentence_idx += 1
            start_sentence(j)
            return
        else:
            run.sentence_idx += 1
        results[j] = BestOfNResult(tokens=run.response, sentences=run.sentence_idx, candidates_scored=run.scored,
                                   ended_eos=run.ended)
        del runs[j]
        if on_done is not None:
            on_done(j, results[j])

    while waiting or runs:
        while waiting and fits(waiting[0]):
            j = waiting.pop(0)
            job = jobs[j]
            state = job.prompt if isinstance(job.prompt, DecodeState) else prefill(vlm, job.prompt)
            runs[j] = _Run(job=job, state=state)
            start_sentence(j)
        logits = flight.step()
        token = torch.empty(flight.rows, dtype=torch.long, device=device)
        positions: dict[int, list[int]] = {}
        for pos, (j, _) in enumerate(owners):
            positions.setdefault(j, []).append(pos)
        hit = torch.zeros(flight.rows, dtype=torch.bool, device=device)
        for j, pos in positions.items():
            run = runs[j]
            index = torch.tensor(pos, device=device)
            chosen = run.job.choose(logits[index])
            token[index] = chosen
            run.tokens[run.active, run.steps] = chosen
            run.steps += 1
            is_eos = torch.isin(chosen, eos)
            ended = is_eos | stop(run.tokens[run.active, :run.steps])
            if run.steps == run.budget:
                ended = torch.ones_like(ended)
            hit[index] = ended
            for k in ended.nonzero().flatten().tolist():
                c = run.active[k]
                run.lengths[c], run.ended_eos[c] = run.steps, bool(is_eos[k])
                # a copy: a view would keep the whole batch tensor of this step alive
                run.row_caches[c] = [(None, None) if keys is None else (keys.clone(), values.clone())
                                     for keys, values in flight.row_cache(pos[k], unpad=True)]
            run.active = [c for c, e in zip(run.active, ended.tolist()) if not e]
        done = [j for j in positions if not runs[j].active]
        if bool(hit.any()):
            keep = (~hit).nonzero().flatten()
            owners[:] = [owners[p] for p in keep.tolist()]
            flight.keep(keep)
            token = token[keep]
        if flight.rows:
            flight.feed(token)
        if not done:
            continue
        to_score = [j for j in done if n > 1]
        requests = [SentenceRequest(job=j, response=list(runs[j].response),
                                    candidates=[runs[j].tokens[c, :runs[j].lengths[c] - (1 if runs[j].ended_eos[c] else 0)]
                                                .tolist() for c in range(n)],
                                    sentence_idx=runs[j].sentence_idx, any_eos=any(runs[j].ended_eos))
                    for j in to_score]
        scores = dict(zip(to_score, score(requests))) if requests else {}
        for j in done:
            if j in scores:
                runs[j].scored += n
            finish_sentence(j, scores.get(j))
    return results  # type: ignore[return-value]
