"""The method's exact contract where a one-line slip would go unnoticed: the deep-alignment score,
sentence stops, thresholds at their edges, and the seed in the store key."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from eta.config import ETAConfig, Prompts
from eta.best_of_n import best_of_n_sentences
from eta.decoding import fork, prefill, sample_continuations
from eta.alignment import ETA
from eta.sampling import StopStrings
from eta.store import RunKey, Store


@pytest.fixture(scope="module")
def tiny_vlm():
    from eta.models import load_vlm

    return load_vlm("tiny-llava", device="cpu", dtype="float32")


class FakeReward:
    """Rewards fixed per candidate position; records what it scored."""

    name = "fake-reward"

    def __init__(self, rewards):
        self.rewards = rewards
        self.calls = []

    def score(self, prompt, responses):
        self.calls.append(list(responses))
        return list(self.rewards[: len(responses)])


class FakeClip:
    """CLIP utilities fixed per candidate position; records the sentences it was shown."""

    def __init__(self, utilities, s_pre=0.0):
        self.utilities = utilities
        self.s_pre = s_pre
        self.calls = []

    def similarity(self, embedding, sentences):
        self.calls.append(list(sentences))
        return list(self.utilities[: len(sentences)])

    def embed_images(self, images):
        return [torch.zeros(4) for _ in images]

    def pre_score(self, embedding, prompt):
        return self.s_pre


# ------------------------------------------------------------------ the deep-alignment score


@pytest.fixture
def deep_score(tiny_vlm, monkeypatch):
    """The scorer ETA's deep alignment hands to best-of-N, with fake reward and CLIP models."""
    import eta.alignment
    from eta.best_of_n import BestOfNResult, SentenceRequest

    captured = {}

    def capture(vlm, jobs, *, score, **kwargs):
        captured["score"] = score
        return [BestOfNResult(tokens=[], sentences=1, candidates_scored=0, ended_eos=True) for _ in jobs]

    def one_input(response, candidates, sentence_idx, any_eos):  # the scorer as one input sees it
        return captured["score"]([SentenceRequest(0, response, candidates, sentence_idx, any_eos)])[0]

    monkeypatch.setattr(eta.alignment, "best_of_n_many", capture)
    reward, clip = FakeReward([0.5, 0.25]), FakeClip([0.2, 0.8])
    method = ETA(tiny_vlm, reward, clip, ETAConfig(alpha=2.0, shallow=False, clip_guide=True))
    method.align("What is this?", Image.new("RGB", (32, 32)), torch.zeros(4), seed=0)
    return one_input, reward, clip, tiny_vlm


def test_deep_score_is_reward_plus_alpha_over_sentence_index_times_clip(deep_score):
    score, reward, clip, vlm = deep_score
    a, b = vlm.tokenizer("A red cat", add_special_tokens=False)["input_ids"], \
        vlm.tokenizer("A blue dog", add_special_tokens=False)["input_ids"]
    assert score([], [a, b], 2, False) == pytest.approx([0.5 + 2.0 / 2 * 0.2, 0.25 + 2.0 / 2 * 0.8])
    assert score(a, [a, b], 4, False) == pytest.approx([0.5 + 2.0 / 4 * 0.2, 0.25 + 2.0 / 4 * 0.8])
    assert clip.calls[-1] == ["A red cat", "A blue dog"]  # CLIP sees the new sentence, not the response
    assert reward.calls[-1] == ["A red catA red cat", "A red catA blue dog"]


def test_no_clip_term_at_the_first_sentence_nor_after_an_eos(deep_score):
    score, _, clip, vlm = deep_score
    a = vlm.tokenizer("A red cat", add_special_tokens=False)["input_ids"]
    assert score([], [a, a], 1, False) == [0.5, 0.25]
    assert score(a, [a, a], 3, True) == [0.5, 0.25]
    assert clip.calls == []


# --------------------------------------------------------------------- sentence stop strings


class Scripted:
    """A token chooser that plays fixed tokens per original row (rows leave the batch as they stop)."""

    def __init__(self, rows: list[list[int]], stops_after: list[int]):
        self.rows, self.stops_after, self.step = rows, stops_after, 0

    def __call__(self, logits):
        active = [r for r, n in enumerate(self.stops_after) if n > self.step]
        assert len(active) == logits.shape[0]
        out = torch.tensor([self.rows[r][self.step] for r in active])
        self.step += 1
        return out


def ids(vlm, text):
    return vlm.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_rows_end_on_the_token_that_completes_a_stop_string(tiny_vlm):
    vlm = tiny_vlm
    dot, words = ids(vlm, ".")[0], ids(vlm, " red green blue cyan white black pink gray brown")
    assert len(ids(vlm, ".")) == 1 and dot not in words and len(words) >= 8
    rows = [[words[0], dot] + words[:6], words[:3] + [dot] + words[:4], words[:8]]
    choose = Scripted(rows, stops_after=[2, 4, 8])
    state = fork(prefill(vlm, vlm.encode("Say something.")), 3)
    cont = sample_continuations(vlm, state, max_tokens=8, choose=choose, stop=StopStrings(vlm.tokenizer, ["."]))
    assert cont.lengths.tolist() == [2, 4, 8]
    assert cont.row(0) == [words[0], dot] and cont.row(1) == words[:3] + [dot]
    assert cont.stopped.tolist() == [True, True, False] and not cont.ended_eos.any()


def test_best_of_n_grows_the_answer_one_sentence_at_a_time(tiny_vlm):
    vlm = tiny_vlm
    dot, words = ids(vlm, ".")[0], ids(vlm, " red green blue cyan white black pink gray brown")
    first = [[words[0], dot], [words[1], words[2], dot]]
    second = [[words[3], dot], [words[4], dot]]

    class TwoSentences:
        def __init__(self):
            self.step, self.sentence = 0, 0

        def __call__(self, logits):
            script = (first, second)[self.sentence]
            active = [r for r in script if len(r) > self.step]
            out = torch.tensor([r[self.step] for r in active])
            self.step += 1
            if all(len(r) <= self.step for r in script):
                self.step, self.sentence = 0, 1
            return out

    seen = []

    def score(response, candidates, sentence_idx, any_eos):
        seen.append((list(response), [list(c) for c in candidates], sentence_idx))
        return [0.0, 1.0]  # the second candidate wins each time

    result = best_of_n_sentences(vlm, prefill(vlm, vlm.encode("Say something.")), num_candidates=2,
                                 choose=TwoSentences(), stop=StopStrings(vlm.tokenizer, ["."]), score=score,
                                 max_new_tokens=5, max_sentence_tokens=70)
    assert seen[0] == ([], first, 1)
    assert seen[1] == (first[1], second, 2)
    assert result.tokens == first[1] + second[1]


# -------------------------------------------------------------------- thresholds at their edges


@pytest.mark.parametrize("s_pre,s_post,pre_unsafe,post_unsafe", [
    (0.16, 0.06, True, True),  # equal to the thresholds: unsafe on both sides
    (0.16 - 1e-9, 0.06, False, True),
    (0.16, 0.06 + 1e-9, True, False),
])
def test_threshold_edges_are_inclusive(tiny_vlm, monkeypatch, s_pre, s_post, pre_unsafe, post_unsafe):
    cfg = ETAConfig(tau_pre=0.16, tau_post=0.06, shallow=False, deep=False, prompts=Prompts())
    method = ETA(tiny_vlm, FakeReward([s_post]), FakeClip([0.0], s_pre=s_pre), cfg)
    monkeypatch.setattr(method, "generate_batch", lambda questions, images, *a, **k: [("an answer", 2)])
    (result,) = method.run_batch(["What is this?"], [Image.new("RGB", (32, 32))])
    assert (result.s_pre, result.s_post) == (s_pre, s_post)
    assert (result.pre_unsafe, result.post_unsafe) == (pre_unsafe, post_unsafe)


# ------------------------------------------------------------------------ the seed in the key


def test_the_same_sample_under_two_seeds_is_two_rows(tmp_path):
    runs = [RunKey(model="m", method="eta", method_hash="h", benchmark="b", seed=seed) for seed in (0, 1)]
    assert runs[0].key("s1") != runs[1].key("s1")
    with Store(tmp_path / "s.sqlite") as store:
        store.put(runs[0], "s1", {"response": "seed 0 answer"})
        assert store.get(runs[1], ["s1"]) == [] and store.done_keys(runs[1]) == set()
        store.put(runs[1], "s1", {"response": "seed 1 answer"})
        assert store.count() == 2
        assert [r["response"] for r in store.get(runs[1], ["s1"])] == ["seed 1 answer"]
        assert [r["response"] for r in store.get(runs[0], ["s1"])] == ["seed 0 answer"]
