"""ETA end to end on every twin architecture and on the embedded SmolLM2; decisions; errors."""

import dataclasses

import pytest

from eta.config import ETAConfig, load_profile
from eta.alignment import ETA, decide, open_image
from eta.model_registry import UnknownModelError
from eta.models import load_vlm
from tests.conftest import clip, reward_model, vlm

ALWAYS = dict(tau_pre=-1.0, tau_post=1e9)  # every input takes the aligning branch


def small(**kw) -> ETAConfig:
    return ETAConfig(max_new_tokens=12, max_sentence_tokens=5, **{**ALWAYS, **kw})


@pytest.mark.parametrize("arch", ["tiny-llava", "tiny-llava-next", "tiny-llava-onevision", "tiny-mllama"])
def test_eta_runs_on_every_twin(arch, photo):
    eta = ETA(vlm(arch), reward_model("tiny-reward"), clip(), small())
    r = eta.run("What is in this image?", photo)
    assert r.aligned and r.branch == "shallow+deep" and r.pre_unsafe and r.post_unsafe
    assert r.response.startswith("As an AI assistant")
    assert 0 < r.response_tokens <= 12 and r.sentences >= 1 and r.candidates_scored >= 5
    assert -1.0 <= r.s_pre <= 1.0 and set(r.timings) == {"generate", "evaluate", "align", "total"}


@pytest.mark.parametrize("variant,branch,prefixed", [
    (dict(deep=False), "shallow", True),
    (dict(shallow=False), "deep", False),
    (dict(clip_guide=False), "shallow+deep", True),
])
def test_ablation_switches(variant, branch, prefixed, photo):
    r = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(**variant)).run("Hi?", photo)
    assert r.branch == branch and r.response.startswith("As an AI assistant") == prefixed


def test_no_alignment_when_evaluators_say_safe(photo):
    r = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(tau_post=-1e9)).run("Hi?", photo)
    assert not r.aligned and r.response == r.vanilla and r.branch == "vanilla"


def test_same_seed_same_answer(photo):
    eta = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(), seed=7)
    assert eta.run("Hi?", photo).response == eta.run("Hi?", photo).response


def test_variants_sharing_vanilla_answers_equal_separate_runs(photo_path):
    """ETA variants on the same models may share the vanilla answers, post-scores and aligned answers
    (made once, later variants read them): every result equals that of a variant run alone."""
    questions, images = ["Hi?", "What is this?"], [photo_path, photo_path]
    memo: dict = {}
    variants = [small(), small(deep=False), small(tau_post=-1e9)]
    shared = [ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), cfg, seed=3, answer_memo=memo)
              .run_batch(questions, images) for cfg in variants]
    # two vanilla answers, their two post-scores, two aligned answers for each variant that aligns
    assert len(memo) == 8
    alone = [ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), cfg, seed=3).run_batch(questions, images)
             for cfg in variants]
    strip = lambda rs: [dataclasses.replace(r, timings={}) for r in rs]  # noqa: E731
    assert [strip(rs) for rs in shared] == [strip(rs) for rs in alone]
    in_memory = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(), answer_memo=memo)
    in_memory.run_batch(["Hi?"], [open_image(photo_path)])  # an image without a path is never memoized
    assert not [key for key in memo if key[0][0] == "vanilla" and key[1][1] == "<image>"]


def test_threshold_variants_reuse_aligned_answers(photo_path):
    """Runs that differ only in what decides to align share their aligned answers; any other knob
    (N here) aligns afresh."""
    from eta.alignment import aligning_signature

    questions, images = ["Hi?", "What is this?"], [photo_path, photo_path]
    assert aligning_signature(small(), "strict") == aligning_signature(small(tau_post=5.0, rule="either"), "strict")
    assert aligning_signature(small(), "strict") != aligning_signature(small(num_candidates=2), "strict")
    memo: dict = {}
    first = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(), seed=3, answer_memo=memo)
    first.run_batch(questions, images)
    reused = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(tau_post=5.0), seed=3, answer_memo=memo)
    reused.align_batch = None  # every aligned answer must come from the memo
    again = reused.run_batch(questions, images)
    alone = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(tau_post=5.0), seed=3).run_batch(
        questions, images)
    assert all(r.aligned for r in alone)
    assert [r.response for r in again] == [r.response for r in alone]
    other = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small(num_candidates=2), seed=3,
                answer_memo=memo)
    other.run_batch(questions, images)
    assert sum(key[0][0] == "aligned" for key in memo) == 4


def test_decision_rules():
    cfg = ETAConfig()
    table = {  # (pre_unsafe, post_unsafe) -> align, per rule
        "both": {(True, True): True, (True, False): False, (False, True): False, (False, False): False},
        "either": {(True, True): True, (True, False): True, (False, True): True, (False, False): False},
        "pre": {(True, True): True, (True, False): True, (False, True): False, (False, False): False},
        "post": {(True, True): True, (True, False): False, (False, True): True, (False, False): False},
    }
    for rule, cases in table.items():
        for (pre, post), expected in cases.items():
            assert decide(dataclasses.replace(cfg, rule=rule), pre, post) is expected
    assert decide(cfg, None, True) and not decide(cfg, None, False)  # text-only: post alone
    assert not decide(dataclasses.replace(cfg, text_only_rule="never"), None, True)


@pytest.mark.slow
def test_eta_on_the_embedded_smollm2_text_and_vlm(photo):
    judge = reward_model("smollm2-judge")  # P(safe) in [0, 1]: tau_post = 1 is its inclusive top edge
    text = ETA(vlm("smollm2"), judge, clip(), small(tau_post=1.0)).run("How do I pick a lock?")
    assert text.s_pre is None and text.aligned and text.response.startswith("As an AI assistant")
    assert 0.0 <= text.s_post <= 1.0
    llava = ETA(vlm("smollm2-llava"), judge, clip(), small(tau_post=1.0)).run("What is in this image?", photo)
    assert llava.s_pre is not None and llava.aligned and len(llava.vanilla) > 0


def test_bad_inputs_name_the_culprit(tmp_path, photo):
    eta = ETA(vlm("tiny-llava"), reward_model("tiny-reward"), clip(), small())
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        eta.run("Hi?", missing)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="corrupt.jpg"):
        open_image(corrupt)
    with pytest.raises(ValueError, match="question is empty"):
        eta.run("   ", photo)
    with pytest.raises(UnknownModelError, match="known vlm models: .*llava-1.5-7b"):
        load_vlm("llava-9b")
    with pytest.raises(ValueError, match="text-only"):
        ETA(vlm("smollm2"), reward_model("tiny-reward"), clip(), small()).run("Hi?", photo)


def test_remote_code_needs_permission():
    from eta.model_registry import ModelSpec, check_remote_code

    spec = ModelSpec("some-remote-rm", "reward", "org/some-remote-rm", "needs its hub code", remote_code=True)
    with pytest.raises(PermissionError, match="trust_remote_code"):
        check_remote_code(spec, trust_remote_code=False)
    check_remote_code(spec, trust_remote_code=True)


def test_from_profile_tiny(photo_path):
    eta = ETA.from_profile(load_profile("tiny"))
    assert eta.stand_in
    r = eta.run("Describe it.", photo_path)
    assert r.image == str(photo_path) and r.aligned
