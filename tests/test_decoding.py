"""The decoding loop on tiny twins: forking, equivalence with full recomputation, vanilla parity."""

import pytest
import torch

from eta import best_of_n, decoding, sampling
from tests.conftest import vlm as load

ARCHS = ["tiny-llava", "tiny-llava-next", "tiny-llava-onevision", "tiny-mllama"]


def encoded(model, photo, question="Describe the picture.", prefix=""):
    return model.encode(question, photo if model.multimodal else None, assistant_prefix=prefix)


def snapshot(cache):
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers if layer.keys is not None]


@pytest.mark.parametrize("arch", ARCHS)
def test_fork_never_mutates_the_parent(arch, photo):
    model = load(arch)
    parent = decoding.prefill(model, encoded(model, photo))
    before = snapshot(parent.cache)
    length = parent.cache.get_seq_length()
    child = decoding.fork(parent, 3)
    decoding.sample_continuations(model, child, max_tokens=5, choose=sampling.greedy)
    assert parent.cache.get_seq_length() == length
    for (k0, v0), (k1, v1) in zip(before, snapshot(parent.cache)):
        assert torch.equal(k0, k1) and torch.equal(v0, v1)
    assert child.cache.get_seq_length() == length + 5


@pytest.mark.parametrize("arch", ARCHS)
def test_forked_logits_equal_full_recomputation(arch, photo):
    """Candidates teacher-forced on a fork of the shared prefix give the logits of a full forward
    pass over prompt + candidate (fp32, atol 1e-4)."""
    model = load(arch)
    inputs = encoded(model, photo)
    state = decoding.fork(decoding.prefill(model, inputs), 2)
    gen = torch.Generator().manual_seed(0)
    cands = torch.randint(0, 1000, (2, 4), generator=gen)
    fed = torch.cat([state.pending, cands[:, :-1]], dim=1)
    forked = model.forward(fed, state.cache, extra={k: v.expand(-1, fed.shape[1], *v.shape[2:])
                                                    for k, v in state.step_extra.items()}, all_logits=True)
    for row in range(2):
        full_inputs = dict(inputs)
        full_inputs["input_ids"] = torch.cat([inputs["input_ids"], cands[row:row + 1, :-1]], dim=1)
        for key, value in inputs.items():  # per-token inputs grow with the sequence
            if key != "input_ids" and value.dim() >= 2 and value.shape[:2] == inputs["input_ids"].shape:
                full_inputs[key] = torch.cat([value, value[:, -1:].expand(-1, 3, *value.shape[2:])], dim=1)
        full_inputs.pop("attention_mask", None)
        full = model.model(**full_inputs, use_cache=False).logits[0, -4:]
        torch.testing.assert_close(forked[row], full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS + ["smollm2"])
def test_one_greedy_candidate_reproduces_vanilla(arch, photo):
    """With N=1, greedy choice and no prefix, sentence-by-sentence decoding (short sentences, so the
    cache is cut and advanced many times) equals plain greedy decoding token for token."""
    model = load(arch)
    inputs = encoded(model, photo, "Write three sentences about cats.")
    vanilla = decoding.sample_continuations(model, decoding.prefill(model, inputs), max_tokens=30,
                                            choose=sampling.greedy).row(0)
    stop = sampling.StopStrings(model.tokenizer, [".", ","])
    result = best_of_n.best_of_n_sentences(
        model, decoding.prefill(model, inputs), num_candidates=1, choose=sampling.greedy, stop=stop,
        score=lambda *a: pytest.fail("one candidate is never scored"), max_new_tokens=30,
        max_sentence_tokens=4,
    )
    assert result.tokens == vanilla
    assert result.sentences > 3


def test_best_of_n_keeps_the_best_scored_candidate(photo):
    model = load("tiny-llava")
    inputs = encoded(model, photo)
    seen = []

    def score(response, candidates, idx, any_eos):
        seen.append((list(response), candidates))
        return [float(sum(c)) for c in candidates]  # prefer the largest token ids

    sampler = sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(1))
    result = best_of_n.best_of_n_sentences(
        model, decoding.prefill(model, inputs), num_candidates=4, choose=sampler,
        stop=sampling.StopStrings(model.tokenizer, ["."]), score=score, max_new_tokens=12, max_sentence_tokens=4)
    rebuilt = []
    for response, candidates in seen:
        assert response == rebuilt  # the scorer sees the winners so far
        rebuilt += max(candidates, key=sum)
    assert result.tokens == rebuilt[:len(result.tokens)] and len(result.tokens) == 12


def test_stop_strings_and_eos_end_rows():
    model = load("tiny-llava")
    tok = model.tokenizer
    stop = sampling.StopStrings(tok, ["."])
    ids = [tok("Hello world.", add_special_tokens=False).input_ids, tok("Hello world", add_special_tokens=False).input_ids]
    width = max(map(len, ids))
    batch = torch.tensor([[tok.eos_token_id] * (width - len(x)) + x for x in ids])
    assert stop(batch).tolist() == [True, False]
    with pytest.raises(ValueError):
        sampling.StopStrings(tok, [""])


def test_top_k_sampler_stays_in_the_top_k_and_is_seeded():
    logits = torch.arange(100.0).repeat(64, 1)
    a = sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(3))(logits)
    b = sampling.TopKSampler(5, 1.5, torch.Generator().manual_seed(3))(logits)
    assert torch.equal(a, b)
    assert set(a.tolist()) <= set(range(95, 100)) and len(set(a.tolist())) > 1
    with pytest.raises(ValueError):
        sampling.TopKSampler(0, 1.0)


@pytest.mark.parametrize("arch", ["tiny-llava", "tiny-mllama", "smollm2"])
def test_left_padded_batch_equals_one_by_one(arch, photo):
    """Vanilla decoding of prompts of different lengths as one left-padded batch gives, token for
    token, what each prompt gives alone."""
    from eta.config import ETAConfig
    from eta.alignment import ETA
    from tests.conftest import clip, reward_model

    model = load(arch)
    eta = ETA(model, reward_model("tiny-reward"), clip(), ETAConfig(max_new_tokens=12))
    questions = ["Hi.", "Tell me a long story about a cat who went to the sea and back again.", "Why?"]
    images = [photo if model.multimodal else None] * 3
    batched = eta.generate_batch(questions, images)
    alone = [eta.generate(q, i) for q, i in zip(questions, images)]
    assert batched == alone
