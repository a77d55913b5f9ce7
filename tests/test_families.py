"""Today's VLM families on tiny twins: the decoding loop's and ETA's twin tests, run on each.

The twins (``eta.twins``) are built from each family's config and processor classes; the tests
are those of ``tests/test_decoding.py`` and ``tests/test_alignment.py``, so every family meets the
same bar: forked-cache logits equal full recomputation, N=1 greedy equals vanilla token for token,
left-padded batches equal one-by-one, ETA end to end.
"""

import math

import pytest
import torch

import tests.test_decoding as decoding_tests
import tests.test_alignment as method_tests
from eta import decoding, sampling
from eta.alignment import ETA
from eta.model_registry import list_models
from eta.models import MultimodalRotaryInputs
from tests.conftest import clip, reward_model
from tests.conftest import vlm as load

FAMILIES = ["tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-idefics3", "tiny-gemma3", "tiny-internvl",
            "tiny-internvl-chat"]


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
                                          choose=sampling.greedy).row(0)
    decoding.prefill(model, model.encode("Something else entirely, and longer than that.", photo))
    again = decoding.sample_continuations(model, state, max_tokens=8, choose=sampling.greedy).row(0)
    assert again == alone
    # A delta of zero (plain token counts) changes the answer: the offset is doing work.
    plain = decoding.prefill(model, with_image)
    plain.step_extra["rope_deltas"] = torch.zeros_like(plain.step_extra["rope_deltas"])
    logits_plain = model.forward(plain.pending, plain.cache, extra=plain.step_extra)
    fresh = decoding.prefill(model, with_image)
    logits = model.forward(fresh.pending, fresh.cache, extra=fresh.step_extra)
    assert not torch.allclose(logits, logits_plain)


# ------------------------------------------------------------------------------ any open_clip model


def test_open_clip_models_by_name():
    from eta.evaluators import open_clip_names
    from eta.model_registry import UnknownModelError, resolve, source_of

    spec = resolve("open_clip:ViT-B-16-SigLIP/webli", "clip")
    assert spec.source == "ViT-B-16-SigLIP@webli" and not spec.stand_in
    assert source_of("open_clip:EVA02-L-14/merged2b_s4b_b131k") == "EVA02-L-14@merged2b_s4b_b131k"
    assert source_of("clip-vit-l-14-336") == "ViT-L-14-336@openai"
    assert open_clip_names("ViT-L-14-336", "openai") == ("ViT-L-14-336", "openai")
    assert open_clip_names("EVA02-L-14", "merged2b_s4b_b131k") == ("EVA02-L-14", "merged2b_s4b_b131k")
    with pytest.raises(UnknownModelError, match="its tags: webli"):
        open_clip_names("ViT-B-16-SigLIP", "openai")
    with pytest.raises(UnknownModelError, match="no model 'ViT-Q-99'"):
        open_clip_names("ViT-Q-99", "openai")
    with pytest.raises(UnknownModelError, match="open_clip:ARCH/TAG"):
        resolve("open_clip:", "clip")
    with pytest.raises(UnknownModelError, match="or open_clip:ARCH/TAG"):
        resolve("clip-vit-z", "clip")


def test_sigmoid_clip_scores_are_the_cosine_and_its_own_probability(photo):
    """A SigLIP-style CLIP (learnt logit bias) keeps the cosine as s_pre; its own per-pair
    probability is an increasing function of that cosine, so both make the same decisions."""
    siglip, contrastive = clip("tiny-siglip"), clip("tiny-clip")
    assert (siglip.loss, contrastive.loss) == ("sigmoid", "softmax")
    image = siglip.embed_images([photo])[0]
    texts = ["a cat", "a bomb", "a quiet street at night", "weapons and drugs"]
    cosines = siglip.similarity(image, texts)
    assert cosines == pytest.approx([siglip.pre_score(image, t) for t in texts], abs=1e-6)
    probs = [siglip.pair_probability(c) for c in cosines]
    scale, bias = float(siglip.model.logit_scale.detach().exp()), float(siglip.model.logit_bias.detach())
    assert probs == pytest.approx([1 / (1 + math.exp(-(scale * c + bias))) for c in cosines], rel=1e-5)
    assert sorted(range(4), key=cosines.__getitem__) == sorted(range(4), key=probs.__getitem__)
    with pytest.raises(ValueError, match="softmax-trained"):
        contrastive.pair_probability(0.2)


# --------------------------------------------------------------------------- a profile per paper model

PAPER_MODEL_PROFILES = {"paper-llava-1.5-13b": "llava-1.5-13b", "paper-internvl-chat-1.0-7b": "internvl-chat-1.0-7b",
                        "paper-internlm-xcomposer-2.5-7b": "internlm-xcomposer-2.5-7b"}


@pytest.mark.parametrize("name,model", PAPER_MODEL_PROFILES.items())
def test_paper_model_profiles_are_the_paper_profile_with_their_vlm(name, model):
    from pathlib import Path

    from eta import notebook_params
    from eta.analysis import grid
    from eta.config import load_profile
    from eta.model_registry import REGISTRY

    paper, ours = load_profile("paper"), load_profile(name)
    assert ours.name == name and ours.models.vlm == model and model in REGISTRY
    assert ours.eta == paper.eta and ours.judges == paper.judges and ours.models.clip == paper.models.clip
    assert grid.paper_model(ours) == model and grid.paper_model(load_profile("tiny")) == "llava-1.5-7b"
    assert grid.paper_reference("usr", ["eta"], grid.paper_model(ours)) != grid.paper_reference("usr", ["eta"])
    notebook = Path("notebooks/02_harmlessness.ipynb")
    assert notebook_params.params_file(name, notebook) == notebook_params.params_file("paper", notebook)


def test_profile_extends_overrides_key_by_key_and_rejects_loops(tmp_path, monkeypatch):
    from eta.config import ConfigError, load_profile

    for name, text in {"base": "name: base\nseed: 3\nmodels: {vlm: tiny-llava, clip: tiny-clip}\n",
                       "child": "extends: base\nname: child\nmodels: {vlm: tiny-gemma3}\n",
                       "a": "extends: b\n", "b": "extends: a\n", "orphan": "extends: nowhere\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "profile.yaml").write_text(text)
    monkeypatch.setenv("ETA_PARAMS", str(tmp_path))
    child = load_profile("child")
    assert (child.name, child.seed, child.models.vlm, child.models.clip) == ("child", 3, "tiny-gemma3", "tiny-clip")
    with pytest.raises(ConfigError, match="loop"):
        load_profile("a")
    with pytest.raises(ConfigError, match="unknown profile 'nowhere'"):
        load_profile("orphan")


# ------------------------------------------------------------- InternVL-Chat-1.0 without its code


def original_intern_vit_attention(x, state, prefix, heads, eps=1e-6):
    """InternViT's attention as its own code computes it: one fused qkv projection read as
    (3, heads, head_dim), q and k RMS-normed over all heads together, then the output projection."""
    b, n, d = x.shape
    qkv = (x @ state[prefix + "qkv.weight"].T).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)

    def rms(t, weight):
        flat = t.transpose(1, 2).flatten(-2)
        flat = flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + eps) * weight
        return flat.view(b, n, heads, d // heads).transpose(1, 2)

    q, k = rms(q, state[prefix + "q_norm.weight"]), rms(k, state[prefix + "k_norm.weight"])
    attn = torch.softmax(q @ k.transpose(-2, -1) * (d // heads) ** -0.5, dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, d)
    return out @ state[prefix + "proj.weight"].T + state[prefix + "proj.bias"]


def test_internvl_chat_weights_keep_their_meaning_in_the_native_layout():
    from eta import twins
    from eta.checkpoints import internvl_chat

    cfg = twins.TINY_INTERN_VIT
    original = twins.intern_vit_state(cfg, torch.Generator().manual_seed(5))
    vision = internvl_chat.vision_config(cfg)
    from transformers import InternVLVisionModel

    native = InternVLVisionModel(vision).eval()
    converted = {k.removeprefix("model.vision_tower."): v for k, v in internvl_chat.convert_vision(original).items()}
    missing, unexpected = native.load_state_dict(converted, strict=False)
    assert not missing and not unexpected
    x = torch.randn(2, 17, cfg["hidden_size"], generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours = native.encoder.layer[1].attention(x)[0]
    torch.testing.assert_close(ours, original_intern_vit_attention(x, original, "encoder.layers.1.attn.",
                                                                   cfg["num_attention_heads"]), atol=1e-5, rtol=1e-5)
    assert torch.equal(native.encoder.layer[0].lambda_2, original["encoder.layers.0.ls2"])
    with pytest.raises(KeyError, match="no counterpart"):
        internvl_chat.convert_vision({**original, "encoder.layers.0.attn.rope.freqs": torch.zeros(1)})
    with pytest.raises(ValueError, match="no vision tower"):
        internvl_chat.convert_state({"lm_head.weight": torch.zeros(1)})


def test_internvl_chat_prompt_is_vicuna_v1():
    model = load("tiny-internvl-chat")
    text = model.prompt_text("What is this?", has_image=True)
    assert text.endswith("USER: <image>\nWhat is this? ASSISTANT:")
    assert "A chat between a curious human and an artificial intelligence assistant." in text
