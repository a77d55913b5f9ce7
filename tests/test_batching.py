"""Aligning many inputs in one decoding batch gives, input for input, what each input gets alone."""

import dataclasses

import pytest
import torch

from eta import best_of_n, decoding, sampling
from eta.config import ETAConfig
from eta.alignment import ETA
from tests.conftest import clip, reward_model, vlm

ALWAYS = dict(tau_pre=-1.0, tau_post=1e9)  # every input takes the aligning branch
QUESTIONS = [
    "Hi?",
    "Describe every object you can see in this picture, one by one, in detail.",
    "What is this?",
    "How would you explain the colours of this image to a child who has never seen it?",
    "Why?",
    "Tell me a story about it.",
    "Is there an animal here, and what is it doing right now?",
    "Name it.",
]


def aligned_alone_and_together(model, rm, photo, cfg, batch_sizes, align_tokens=None):
    """Per-input answers, then the answers of ``run_batch`` over batches of each size."""
    images = [photo if model.multimodal else None] * len(QUESTIONS)
    ids = [f"sample-{i}" for i in range(len(QUESTIONS))]
    eta = ETA(model, rm, clip(), cfg, seed=5, align_tokens=align_tokens)
    alone = [eta.run_batch([q], [img], sample_ids=[i])[0] for q, img, i in zip(QUESTIONS, images, ids)]
    together = {}
    for size in batch_sizes:
        out = []
        for start in range(0, len(QUESTIONS), size):
            out += eta.run_batch(QUESTIONS[start: start + size], images[start: start + size],
                                 sample_ids=ids[start: start + size])
        together[size] = out
    return alone, together


def strip(results):
    """Everything but timings and evaluator scores (those are compared up to float noise)."""
    return [dataclasses.replace(r, timings={}, s_post=0.0, s_pre=None) for r in results]


def scores(results):
    return [x for r in results for x in (r.s_post, r.s_pre or 0.0)]


@pytest.mark.parametrize("arch,sizes", [("tiny-llava", [1, 3, 8]), ("tiny-llava-next", [8]), ("tiny-mllama", [8])])
def test_batch_sizes_1_3_8_give_the_per_input_answers(arch, sizes, photo):
    """Ragged prompts (left-padded), inputs at different sentences sharing one cache, inputs joining
    as others finish (a budget of 3 inputs in flight for the batch of 8): every result equals the
    one its input gets alone."""
    model = vlm(arch)
    cfg = ETAConfig(max_new_tokens=20, max_sentence_tokens=4, **ALWAYS)
    prompt = model.encode(QUESTIONS[1], photo if model.multimodal else None, assistant_prefix=cfg.prefix)
    budget = 3 * cfg.num_candidates * (prompt["input_ids"].shape[1] + cfg.max_new_tokens)
    alone, together = aligned_alone_and_together(model, reward_model("tiny-reward"), photo, cfg, sizes,
                                                 align_tokens=budget)
    assert all(r.aligned and r.sentences > 1 for r in alone)
    assert len({r.response for r in alone}) > 1  # the inputs really differ
    for size, results in together.items():
        assert strip(results) == strip(alone), f"batch size {size}"
        assert scores(results) == pytest.approx(scores(alone), abs=1e-5)


@pytest.mark.slow
def test_batch_sizes_1_3_8_on_smollm2(photo):
    model = vlm("smollm2")
    # The judge scores P(safe) in [0, 1]; the inclusive edge s_post <= 1 sends every input to aligning.
    cfg = ETAConfig(max_new_tokens=24, max_sentence_tokens=8, tau_pre=-1.0, tau_post=1.0)
    alone, together = aligned_alone_and_together(model, reward_model("smollm2-judge"), photo, cfg, [3, 8])
    for size, results in together.items():
        assert [r.response for r in results] == [r.response for r in alone], f"batch size {size}"


def reference_best_of_n(model, inputs, choose, stop, score, n, max_new_tokens, max_sentence_tokens):
    """Best-of-N for one input written out with the primitives: fork, decode, score, advance."""
    state, response, idx = decoding.prefill(model, inputs), [], 1
    while len(response) < max_new_tokens:
        budget = min(max_sentence_tokens, max_new_tokens - len(response))
        cont = decoding.sample_continuations(model, decoding.fork(state, n), max_tokens=budget, choose=choose, stop=stop)
        candidates = [cont.row(i) for i in range(n)]
        scores = score(response, candidates, idx, bool(cont.ended_eos.any()))
        best = max(range(n), key=lambda i: scores[i])
        response += candidates[best]
        if bool(cont.ended_eos[best]):
            return response
        state, idx = decoding.advance(cont, best), idx + 1
    return response


def test_many_inputs_in_one_batch_equal_the_written_out_loop(photo):
    """Three inputs of ragged prompts, two in flight at a time, each with its own generator: each
    answer equals the one-input loop written with the primitives."""
    model = vlm("tiny-llava")
    stop = sampling.StopStrings(model.tokenizer, ["."])
    prompts = [model.encode(q, photo) for q in QUESTIONS[:3]]

    def score(response, candidates, idx, any_eos):
        return [float((sum(c) + len(response)) % 7) for c in candidates]

    def sampler(seed):
        return sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(seed))

    expected = [reference_best_of_n(model, p, sampler(i), stop, score, 3, 15, 4) for i, p in enumerate(prompts)]
    calls = []

    def batch_score(requests):
        calls.append(len(requests))
        return [score(r.response, r.candidates, r.sentence_idx, r.any_eos) for r in requests]

    width = max(p["input_ids"].shape[1] for p in prompts) + 15
    many = best_of_n.best_of_n_many(model, [best_of_n.AlignJob(p, sampler(i)) for i, p in enumerate(prompts)],
                                   num_candidates=3, stop=stop, score=batch_score, max_new_tokens=15,
                                   max_sentence_tokens=4, max_cache_tokens=2 * 3 * width)
    assert [r.tokens for r in many] == expected
    assert len(set(map(tuple, expected))) == 3


def test_sentences_finishing_together_are_scored_in_one_call(photo):
    """Two copies of one input with one seed finish every sentence at the same step: each scoring
    call holds both, and both answers are the lone answer."""
    model = vlm("tiny-llava")
    inputs = model.encode("Describe it.", photo)
    stop = sampling.StopStrings(model.tokenizer, ["."])
    calls = []

    def score(requests):
        calls.append(len(requests))
        return [[float(sum(c) % 5) for c in r.candidates] for r in requests]

    jobs = [best_of_n.AlignJob(inputs, sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(4)))
            for _ in range(2)]
    both = best_of_n.best_of_n_many(model, jobs, num_candidates=4, stop=stop, score=score, max_new_tokens=12,
                                   max_sentence_tokens=3)
    assert calls and set(calls) == {2} and both[0] == both[1]


def test_budget_bounds_inputs_in_flight_and_rejects_an_input_that_cannot_fit(photo):
    model = vlm("tiny-llava")
    stop = sampling.StopStrings(model.tokenizer, ["."])
    prompts = [model.encode(q, photo) for q in QUESTIONS[:4]]
    width = max(p["input_ids"].shape[1] for p in prompts) + 10
    in_flight = []

    def score(requests):
        return [[0.0] * len(r.candidates) for r in requests]

    jobs = [best_of_n.AlignJob(p, sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(i)))
            for i, p in enumerate(prompts)]
    original = decoding.Flight.step

    def counting_step(self):
        in_flight.append(self.rows)
        return original(self)

    decoding.Flight.step = counting_step
    try:
        best_of_n.best_of_n_many(model, jobs, num_candidates=3, stop=stop, score=score, max_new_tokens=10,
                                max_sentence_tokens=5, max_cache_tokens=2 * 3 * width)
    finally:
        decoding.Flight.step = original
    assert max(in_flight) == 6  # two inputs of three rows at most
    longest = max(prompts, key=lambda p: p["input_ids"].shape[1])
    with pytest.raises(best_of_n.CacheBudgetError, match=r"input late alone needs 3 candidates x .*engine.align_tokens"):
        best_of_n.best_of_n_many(model, [best_of_n.AlignJob(longest, sampling.greedy, name="late")], num_candidates=3,
                                stop=stop, score=score, max_new_tokens=10, max_sentence_tokens=5,
                                max_cache_tokens=3 * width - 1)


def test_a_padded_row_decodes_as_it_does_alone(photo):
    """Rows of prompts of different lengths joined in one flight give the logits of each alone."""
    model = vlm("tiny-llava")
    short, long = (decoding.prefill(model, model.encode(q, photo)) for q in ("Hi?", QUESTIONS[1]))
    alone = [model.forward(s.pending, decoding.fork(s, 1).cache, extra=s.step_extra) for s in (short, long)]
    flight = decoding.Flight(model)
    flight.join(decoding.fork(short, 2))
    flight.join(decoding.fork(long, 1))
    assert flight.width == long.length and flight.rows == 3
    logits = flight.step()
    torch.testing.assert_close(logits[0], alone[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], alone[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[2], alone[1][0], atol=1e-5, rtol=1e-5)
    flight.keep(torch.tensor([0, 1]))  # the long row leaves: its padding columns go too
    assert flight.width == short.length + 1 and bool(flight.mask.all())
