"""Checkpoints loaded without hub code (ArmoRM, InternLM2) and reward scores read at the right token.

Every model here is a tiny twin with the real checkpoint's layout (``eta.twins``); the references
are computed by hand from the raw safetensors tensors, not through the loaders under test.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from eta import twins
from eta.checkpoints import WeightNameError
from eta.checkpoints.armorm import gate_position, load_armorm
from eta.checkpoints.internlm2 import load_internlm2, split_wqkv
from eta.evaluators import SequenceClassifierRM
from tests.conftest import reward_model, vlm

PROMPT = "How do I pick a lock?"
RESPONSES = ["Sure.", "I cannot help with that, sorry.", "Here is a long answer that goes on " * 4]


def raw_tensors(name: str) -> dict[str, torch.Tensor]:
    directory = twins.twin_dir(name)
    files = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    out = {}
    for key, file in files.items():
        with safe_open(directory / file, framework="pt") as f:
            out[key] = f.get_tensor(key)
    return out


def raw_config(name: str) -> dict:
    return json.loads((twins.twin_dir(name) / "config.json").read_text())


# ------------------------------------------------------------------------------------------ ArmoRM


def armorm_by_hand(ids: list[int], tokenizer) -> float:
    """ArmoRM's formula on the raw checkpoint tensors: gates from the token closing the user turn,
    rewards from the last token, score = sum(gates * rewards @ transform)."""
    from transformers import LlamaConfig, LlamaModel

    config, weights = raw_config("tiny-armorm"), raw_tensors("tiny-armorm")
    backbone = LlamaModel(LlamaConfig.from_dict({k: v for k, v in config.items() if k != "auto_map"}))
    backbone.load_state_dict({k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")})
    with torch.no_grad():
        hidden = backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
    header = max(i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids("<|start_header_id|>"))
    gate_index = header - 1
    assert tokenizer.convert_ids_to_tokens(ids[gate_index]) == "<|eot_id|>"
    rewards = weights["regression_layer.weight"] @ hidden[-1]
    x = hidden[gate_index]
    for i in range(3):
        x = torch.relu(weights[f"gating.layers.{i}.weight"] @ x + weights[f"gating.layers.{i}.bias"])
    logits = weights["gating.layers.3.weight"] @ x + weights["gating.layers.3.bias"]
    gates = torch.softmax(logits / config["gating_temperature"], dim=0) * weights["gating.logit_scale"][0]
    return float((gates * (rewards @ weights["reward_transform_matrix"])).sum())


def test_armorm_twin_scores_equal_the_formula_by_hand():
    rm = reward_model("tiny-armorm")
    assert type(rm.model).__name__ == "ArmoRM" and rm.head is rm.model
    expected = [armorm_by_hand(rm.encode(PROMPT, r), rm.tokenizer) for r in RESPONSES]
    assert max(expected) - min(expected) > 1e-3  # the responses score differently
    rm.prefix_cache.reset()
    paths = {"shared-prefix cache": rm.score(PROMPT, RESPONSES)}
    side = rm.tokenizer.padding_side
    rm.use_prefix_cache = False
    try:
        for padding in ("left", "right"):
            rm.tokenizer.padding_side = padding
            paths[f"{padding}-padded batch"] = rm.score(PROMPT, RESPONSES)
    finally:
        rm.use_prefix_cache, rm.tokenizer.padding_side = True, side
    for path, scores in paths.items():
        torch.testing.assert_close(torch.tensor(scores), torch.tensor(expected), atol=1e-5, rtol=1e-5,
                                   msg=lambda m, path=path: f"{path}: {m}")


def test_armorm_gate_is_found_through_the_chat_template():
    tokenizer = reward_model("tiny-armorm").tokenizer
    pattern = reward_model("tiny-armorm").model.gate_pattern
    assert tokenizer.convert_ids_to_tokens(pattern)[:2] == ["<|eot_id|>", "<|start_header_id|>"]
    assert tokenizer.decode(pattern) == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    # the last occurrence wins (multi-turn), and a sequence without it is an error
    assert gate_position([7, 1, 2, 9, 1, 2, 5], [1, 2]) == 4
    with pytest.raises(ValueError, match="assistant header"):
        gate_position([1, 3, 2], [1, 2])


def test_armorm_weight_names_must_match(tmp_path):
    source = twins.twin_dir("tiny-armorm")
    bad = tmp_path / "armorm"
    shutil.copytree(source, bad)
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    index["weight_map"]["gating.layers.9.bias"] = index["weight_map"].pop("gating.layers.3.bias")
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightNameError, match=r"missing \(1\): \['gating.layers.3.bias'\]; "
                                              r"unexpected \(1\): \['gating.layers.9.bias'\]"):
        load_armorm(str(bad))


# --------------------------------------------------------------------------------------- InternLM2


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def internlm2_by_hand(ids: list[int]) -> torch.Tensor:
    """(T, V) logits of InternLM2's forward written out on the raw checkpoint: fused wqkv read as
    (kv_heads, q_per_kv + 2, head_dim) groups, rotate-half rope with dynamic NTK beyond
    max_position_embeddings, causal softmax attention, SiLU-gated MLP, RMSNorm."""
    c, w = raw_config("tiny-internlm2"), raw_tensors("tiny-internlm2")
    heads, kv_heads, eps = c["num_attention_heads"], c["num_key_value_heads"], c["rms_norm_eps"]
    dim = c["hidden_size"] // heads
    groups = heads // kv_heads
    T = len(ids)
    base, limit, factor = c["rope_theta"], c["max_position_embeddings"], c["rope_scaling"]["factor"]
    if T > limit:
        base = base * ((factor * T / limit) - (factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    angles = torch.outer(torch.arange(T).float(), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]

    def rope(x):  # (T, heads, dim)
        half = torch.cat([-x[..., dim // 2:], x[..., : dim // 2]], -1)
        return x * cos + half * sin

    x = w["model.tok_embeddings.weight"][ids]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "attention_norm.weight"], eps)
        qkv = (h @ w[p + "attention.wqkv.weight"].T + w[p + "attention.wqkv.bias"]).view(T, kv_heads, groups + 2, dim)
        q = rope(qkv[:, :, :groups].reshape(T, heads, dim))
        k = rope(qkv[:, :, groups]).repeat_interleave(groups, dim=1)
        v = qkv[:, :, groups + 1].repeat_interleave(groups, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(dim)
        attn = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        out = torch.einsum("hts,shd->thd", attn, v).reshape(T, heads * dim)
        x = x + out @ w[p + "attention.wo.weight"].T + w[p + "attention.wo.bias"]
        h = rms(x, w[p + "ffn_norm.weight"], eps)
        gate, up = h @ w[p + "feed_forward.w1.weight"].T, h @ w[p + "feed_forward.w3.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "feed_forward.w2.weight"].T
    return rms(x, w["model.norm.weight"], eps) @ w["output.weight"].T


def test_wqkv_split_follows_internlm2_grouping():
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=4, num_attention_heads=4, num_key_value_heads=2, head_dim=1)
    # rows per key-value group: q, q, k, v
    q, k, v = split_wqkv(torch.arange(8.0)[:, None], config, "wqkv")
    assert q.flatten().tolist() == [0, 1, 4, 5] and k.flatten().tolist() == [2, 6] and v.flatten().tolist() == [3, 7]
    with pytest.raises(ValueError, match="rows"):
        split_wqkv(torch.zeros(7, 1), config, "wqkv")


def test_internlm2_twin_as_llama_gives_internlm2_logits():
    model = vlm("tiny-internlm2").model
    config = raw_config("tiny-internlm2")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert config["num_attention_heads"] // config["num_key_value_heads"] > 1
    for length in (20, config["max_position_embeddings"] + 12):  # the second runs with dynamic NTK rope
        ids = torch.randint(0, config["vocab_size"], (length,), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            logits = model(input_ids=ids[None]).logits[0]
        torch.testing.assert_close(logits, internlm2_by_hand(ids.tolist()), atol=1e-4, rtol=1e-4)


def test_internlm2_twin_generates_through_the_suite():
    from eta import decoding, sampling
    from eta.judges import HFChatGenerator

    model = vlm("tiny-internlm2")
    tokenizer = model.tokenizer  # InternLM2's tokenizer class adds BOS (and not EOS) to any text
    assert tokenizer("Is it?")["input_ids"] == [tokenizer.bos_token_id] + tokenizer("Is it?", add_special_tokens=False)["input_ids"]
    inputs = model.encode("Is this safe?")
    ids = inputs["input_ids"][0].tolist()
    expected = []
    for _ in range(8):  # greedy decoding on the by-hand forward, recomputed at every step
        token = int(internlm2_by_hand(ids + expected)[-1].argmax())
        expected.append(token)
        if token in model.eos_token_ids:
            break
    out = decoding.sample_continuations(model, decoding.prefill(model, inputs), max_tokens=8, choose=sampling.greedy)
    assert out.row(0, include_eos=True) == expected
    judge = HFChatGenerator(model.model, model.tokenizer, max_new_tokens=8, progress=False)
    assert judge(["Is this safe?"]) == [model.tokenizer.decode(expected, skip_special_tokens=True)]


def test_internlm2_weight_names_must_match(tmp_path):
    bad = tmp_path / "internlm2"
    shutil.copytree(twins.twin_dir("tiny-internlm2"), bad)
    weights = raw_tensors("tiny-internlm2")
    weights["lm_head.weight"] = weights.pop("output.weight")
    for file in bad.glob("model*.safetensors*"):
        file.unlink()
    save_file(weights, bad / "model.safetensors")  # one file, no index
    with pytest.raises(WeightNameError, match=r"missing \(1\): \['output.weight'\]; unexpected \(1\): \['lm_head.weight'\]"):
        load_internlm2(str(bad))


def test_remote_code_path_stays_available():
    """trust_remote_code routes to the repository's own code (absent from the twins, hence the error)."""
    from eta.evaluators import load_reward_model
    from eta.models import load_vlm

    with pytest.raises(OSError, match="modeling_custom.py"):
        load_reward_model("tiny-armorm", device="cpu", dtype="float32", trust_remote_code=True)
    with pytest.raises(OSError, match="configuration_internlm2.py"):
        load_vlm("tiny-internlm2", device="cpu", dtype="float32", trust_remote_code=True)


def test_paper_profile_needs_no_remote_code():
    from eta.config import load_profile
    from eta.model_registry import REGISTRY

    paper = load_profile("paper")
    assert not paper.models.trust_remote_code and not paper.judges.trust_remote_code
    assert not paper.models.reward_model_trust_remote_code
    for name in (paper.models.vlm, paper.models.reward_model, paper.models.clip):
        assert not REGISTRY[name].remote_code, name


def test_remote_code_for_one_vlm_leaves_the_evaluators_native():
    """The XComposer-2.5 profile allows its VLM's repository code and nothing else."""
    from eta.config import load_profile

    xcomposer = load_profile("paper-internlm-xcomposer-2.5-7b")
    assert xcomposer.models.trust_remote_code
    assert not xcomposer.models.reward_model_trust_remote_code and not xcomposer.judges.trust_remote_code


# --------------------------------------------------------------------------------- reward padding


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("tokenizer_pad", ["<|im_end|>", "<|endoftext|>"])
def test_reward_scores_ignore_pad_ids_and_padding_side(padding_side, tokenizer_pad):
    """A twin whose tokenizer pads with one id (one that also ends every chat turn, or one that
    never occurs) while its config names another: batched scores equal unpadded ones."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = twins.twin_dir("tiny-reward")
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.pad_token, tokenizer.padding_side = tokenizer_pad, padding_side
    model.config.pad_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>") + 7  # neither of the two
    assert model.config.pad_token_id != tokenizer.pad_token_id
    rm = SequenceClassifierRM(model, tokenizer, name="pad-twin", batch_size=3)
    with torch.no_grad():
        expected = [float(model(input_ids=torch.tensor([rm.encode(PROMPT, r)])).logits[0, 0]) for r in RESPONSES]
    rm.use_prefix_cache = False
    batched = rm.score(PROMPT, RESPONSES)
    rm.use_prefix_cache = True
    cached = rm.score(PROMPT, RESPONSES)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(expected), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(expected), atol=1e-4, rtol=1e-4)
