"""Today's VLM families on tiny twins: the decoding loop's and ETA's twin tests, run on each.

The twins (``eta.twins``) are built from each family's config and processor classes; the tests
are those of ``tests/test_decoding.py`` and ``tests/test_method.py``, so every family meets the
same bar: forked-cache logits equal full recomputation, N=1 greedy equals vanilla token for token,
left-padded batches equal one-by-one, ETA end to end.
"""

import pytest
import torch

import tests.test_decoding as decoding_tests
import tests.test_method as method_tests
from eta import decoding
from eta.method import ETA
from eta.models import MultimodalRotaryInputs, list_models
from tests.conftest import clip, reward_model
from tests.conftest import vlm as load

FAMILIES = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-idefics3", "tiny-gemma3", "tiny-internvl"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_forked_logits_equal_full_recomputation(arch, photo):
    decoding_tests.test_forked_logits_equal_full_recomputation(arch, photo)


@pytest.mark.parametrize("arch", FAMILIES)
def test_one_greedy_candidate_reproduces_vanilla(arch, photo):
    decoding_tests.test_one_greedy_candidate_reproduces_vanilla(arch, photo)


@pytest.mark.parametrize("arch", FAMILIES)
def test_left_padded_batch_equals_one_by_one(arch, photo):
    decoding_tests.test_left_padded_batch_equals_one_by_one(arch, photo)


@pytest.mark.parametrize("arch", FAMILIES)
def test_eta_runs_on_every_family(arch, photo):
    """As ``test_eta_runs_on_every_twin``; a template whose answer follows a colon (Idefics3's
    ``Assistant:``) keeps the space before the prefix in the decoded response."""
    eta = ETA(load(arch), reward_model("tiny-reward"), clip(), method_tests.small())
    r = eta.run("What is in this image?", photo)
    assert r.aligned and r.branch == "shallow+deep" and r.pre_unsafe and r.post_unsafe
    assert r.response.lstrip().startswith("As an AI assistant")
    assert 0 < r.response_tokens <= 12 and r.sentences >= 1 and r.candidates_scored >= 5
    assert -1.0 <= r.s_pre <= 1.0


def test_every_family_twin_is_listed_with_a_hub_checkpoint():
    listed = {m["name"]: m for m in list_models()}
    assert set(FAMILIES) <= set(listed)
    hub = {m["source"] for m in listed.values() if not m["stand_in"] and m["kind"] == "vlm"}
    for repo in ("Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-8B-Instruct",
                 "HuggingFaceM4/Idefics3-8B-Llama3", "google/gemma-3-12b-it", "OpenGVLab/InternVL3-8B-hf"):
        assert repo in hub


def test_qwen_positions_follow_the_row_not_the_model(photo):
    """M-RoPE offsets travel with each row: decoding two prompts (image + text, and text alone) as
    one batch and dropping a row midway gives each prompt's own answer; the model holds no state
    from an earlier prompt."""
    model = load("tiny-qwen2-vl")
    assert isinstance(model.decode_inputs, MultimodalRotaryInputs)
    with_image = model.encode("Describe the picture.", photo)
    state = decoding.prefill(model, with_image)
    delta = int(state.step_extra["rope_deltas"])
    assert delta != 0  # image tokens take fewer text positions than tokens
    alone = decoding.sample_continuations(model, decoding.prefill(model, with_image), max_tokens=8,
                                          choose=decoding.greedy).row(0)
    decoding.prefill(model, model.encode("Something else entirely, and longer than that.", photo))
    again = decoding.sample_continuations(model, state, max_tokens=8, choose=decoding.greedy).row(0)
    assert again == alone
    # A delta of zero (plain token counts) changes the answer: the offset is doing work.
    plain = decoding.prefill(model, with_image)
    plain.step_extra["rope_deltas"] = torch.zeros_like(plain.step_extra["rope_deltas"])
    logits_plain = model.forward(plain.pending, plain.cache, extra=plain.step_extra)
    fresh = decoding.prefill(model, with_image)
    logits = model.forward(fresh.pending, fresh.cache, extra=fresh.step_extra)
    assert not torch.allclose(logits, logits_plain)
