"""The local safety reward model: frozen SmolLM2 features and a logistic-regression head.

Built once on first use into the cache (``smollm2_safety_rm_dir``) and saved as a plain
``LlamaForSequenceClassification`` checkpoint, so it loads through the same reward-model path as a
real one (``eta.evaluators.load_reward_model``) and scores the same in plain ``transformers``. Its
score is the logit of P(safe) (compressed only beyond +-10): higher is safer, and the profile's
``tau_post`` is calibrated on this scale.

The build:

1. In-domain answers: the local VLM's greedy answers (plain and with ETA's interference prefix) to
   the AdvBench goals and benign prompts that ``eta.safety_data`` sets aside for training, labelled
   unsafe when an AdvBench answer does not refuse, safe for a benign prompt. Without them the head
   learns only "refused or not" from the human labels and calls the model's benign help unsafe.
   Refusals are found by the refusal strings (``eta.judges.is_refusal``), which count ETA's own
   prefix "As an AI" as one: every prefixed AdvBench answer is labelled safe. Read by hand, most of
   them (40 tokens) are evasive ("I'm designed to provide accurate information...") and a few comply.
2. Examples: every human-labelled response of the ``rm-train`` / ``rm-val`` splits and every in-domain
   answer, under the POST prompt (cut to ``MAX_RESPONSE_TOKENS``); half of them also
   under the DEEP prompt, cut at a seeded random point (what the model scores during best-of-N).
3. Features: the mean over every token (prompt and response) of the normed hidden states after
   the first ``k`` decoder layers, for a few ``k``; one forward pass per batch over the shared
   prompt's cache. The mean ranks answers far better than the last token's state alone (test AUC
   on the human labels about 0.9 against 0.82; README).
4. Head: standardised logistic regression; ``k`` and the regularisation chosen by validation AUC.
5. Checkpoint: the first ``k`` layers of SmolLM2 and one pooling layer made of plain Llama parts
   that computes the head on that mean at the last token (``pooled_classifier``).
"""

from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from eta.cache import build_once
from eta.config import DEEP_PROMPT, POST_PROMPT, ETAConfig
from eta.safety_data import LabelledResponse, advbench_split, benign_prompts, labelled_responses, split_of

log = logging.getLogger(__name__)

BUILD_VERSION = "v3"  # bump when anything below changes the checkpoint (v2 never shipped)
ANSWER_MODEL = "smollm2-llava"  # the local profile's VLM: its answers are what the model must judge
ANSWER_TOKENS = 40  # in-domain answers: greedy tokens each (the opening shows compliance or refusal)
MAX_RESPONSE_TOKENS = 64  # training responses are cut to this many tokens
MIN_PREFIX_TOKENS = 6
DEEP_SHARE = 0.5  # share of rows also shown as a partial answer under the DEEP prompt
INTERFERENCE_PREFIX = ETAConfig().prefix
LAYER_CHOICES = (10, 14, 18, 22, 26)  # decoder layers kept (of 30); only the first max() ever run
C_CHOICES = (0.003, 0.01, 0.03)
SEED = 0
BATCH = 16


def smollm2_safety_rm_dir() -> Path:
    """The checkpoint directory, built on first use (a few minutes on two CPU cores)."""
    from eta.twins import models_dir

    return build_once(models_dir() / f"smollm2-safety-rm-{BUILD_VERSION}", build)


def in_domain_path() -> Path:
    """JSONL of the labelled in-domain answers the build generated (also the judge's in-domain data)."""
    return smollm2_safety_rm_dir() / "in_domain.jsonl"


def read_in_domain() -> list[LabelledResponse]:
    with open(in_domain_path(), encoding="utf-8") as handle:
        return [LabelledResponse(**json.loads(line)) for line in handle if line.strip()]


# ----------------------------------------------------------------------------------- answers


def in_domain_prompts() -> list[tuple[str, str, bool, str]]:
    """(prompt, split, harmful, assistant prefix) of every in-domain answer to generate."""
    from eta.benchmarks.embedded import advbench_goals

    goals = advbench_goals()
    chosen = advbench_split()
    out = []
    for split in ("rm-train", "rm-val", "judge-train"):
        for index in chosen[split]:
            out.append((goals[index].text, split, True, ""))
    for index in chosen["rm-train"][: len(chosen["rm-train"]) // 2]:
        out.append((goals[index].text, "rm-train", True, INTERFERENCE_PREFIX))
    for prompt in benign_prompts()["training"]:
        split = split_of(prompt)
        split = "rm-train" if split == "test" else split
        out.extend([(prompt, split, False, ""), (prompt, split, False, INTERFERENCE_PREFIX)])
    return out


def generate_in_domain(vlm, batch_size: int = BATCH) -> list[LabelledResponse]:
    """Greedy answers of ``vlm`` to ``in_domain_prompts()``, labelled (refusal strings for AdvBench)."""
    from eta.judges import is_refusal
    from eta.alignment import ETA

    eta = ETA(vlm, None, None, ETAConfig(max_new_tokens=ANSWER_TOKENS))
    prompts = in_domain_prompts()
    groups: dict[str, list[int]] = {}
    for i, (_, _, _, prefix) in enumerate(prompts):
        groups.setdefault(prefix, []).append(i)
    answers: dict[int, str] = {}
    bar = tqdm(total=len(prompts), desc="in-domain answers", unit="answer")
    for prefix, indices in groups.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start: start + batch_size]
            out = eta.generate_batch([prompts[i][0] for i in chunk], [None] * len(chunk), prefix=prefix)
            answers.update({i: text for i, (text, _) in zip(chunk, out)})
            bar.update(len(chunk))
    bar.close()
    source = f"in-domain/{vlm.name}"
    return [LabelledResponse(source, prompt, answers[i], harmful and not is_refusal(answers[i]), split)
            for i, (prompt, split, harmful, _) in enumerate(prompts)]


# ---------------------------------------------------------------------------------- features


def cut(tokenizer, response: str, max_tokens: int) -> str:
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return response if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def examples(rows: list[LabelledResponse], tokenizer, seed: int = SEED) -> list[tuple[str, str, bool, str]]:
    """(prompt, response, unsafe, split): each row under POST (cut), a seeded share also under DEEP
    (a random prefix)."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        ids = tokenizer(row.response, add_special_tokens=False)["input_ids"][:MAX_RESPONSE_TOKENS]
        out.append((POST_PROMPT, tokenizer.decode(ids), row.unsafe, row.split))
        if len(ids) > MIN_PREFIX_TOKENS and rng.random() < DEEP_SHARE:
            stop = rng.randint(MIN_PREFIX_TOKENS, len(ids))
            out.append((DEEP_PROMPT, tokenizer.decode(ids[:stop]), row.unsafe, row.split))
    return out


def encode(tokenizer, prompt: str, response: str) -> list[int]:
    """The token ids a reward model reads (``SequenceClassifierRM.encode``)."""
    from eta.evaluators import conversation

    text = tokenizer.apply_chat_template(conversation(prompt, response), tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def mean_features(model, tokenizer, pairs: list[tuple[str, str]], layers: tuple[int, ...],
                  batch_size: int = BATCH) -> dict[int, np.ndarray]:
    """{k: (n, H)} the mean over every token of the normed hidden states after ``k`` layers, for
    (prompt, response) pairs: what the checkpoint's pooling layer computes (``pooled_classifier``).

    Pairs sharing a prompt run over one cache of its common prefix (right-padded suffixes); the
    prefix's own hidden states are summed once.
    """
    base = model.model
    all_layers = base.layers
    base.layers = all_layers[: max(layers)]  # the layers past the deepest choice never run
    try:
        return _features(model, base, tokenizer, pairs, layers, batch_size)
    finally:
        base.layers = all_layers


def _normed(base, hidden_states, k: int, deepest: int) -> torch.Tensor:
    """Hidden states after ``k`` layers with the final norm applied (the deepest one already has it)."""
    return hidden_states[k] if k == deepest else base.norm(hidden_states[k])


def _features(model, base, tokenizer, pairs, layers, batch_size) -> dict[int, np.ndarray]:
    from eta.decoding import new_cache
    from eta.evaluators import common_prefix_length

    deepest = max(layers)
    feats = {k: np.zeros((len(pairs), model.config.hidden_size), dtype=np.float32) for k in layers}
    by_prompt: dict[str, list[int]] = {}
    for i, (prompt, _) in enumerate(pairs):
        by_prompt.setdefault(prompt, []).append(i)
    bar = tqdm(total=len(pairs), desc="features", unit="response")
    for prompt, indices in by_prompt.items():
        encoded = {i: encode(tokenizer, prompt, pairs[i][1]) for i in indices}
        shared = common_prefix_length([encode(tokenizer, prompt, "a"), encode(tokenizer, prompt, "b")])
        prefix = encoded[indices[0]][:shared]
        cache = new_cache(model)
        head = base(input_ids=torch.tensor([prefix]), cache=cache, use_cache=True, output_hidden_states=True)
        prefix_sums = {k: _normed(base, head.hidden_states, k, deepest)[0].sum(0) for k in layers}
        order = sorted(indices, key=lambda i: len(encoded[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            suffixes = [encoded[i][shared:] for i in chunk]
            width = max(len(s) for s in suffixes)
            ids = torch.tensor([s + [0] * (width - len(s)) for s in suffixes])
            mask = torch.tensor([[1] * (shared + len(s)) + [0] * (width - len(s)) for s in suffixes])
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(chunk))
            out = base(input_ids=ids, attention_mask=mask, cache=batch_cache, use_cache=True,
                       output_hidden_states=True)
            own = mask[:, shared:, None].float()  # the suffix tokens, padding left out
            counts = torch.tensor([[shared + len(s)] for s in suffixes], dtype=torch.float32)
            for k in layers:
                sums = (_normed(base, out.hidden_states, k, deepest) * own).sum(1) + prefix_sums[k]
                feats[k][chunk] = (sums / counts).float().numpy()
            bar.update(len(chunk))
    bar.close()
    return feats


# -------------------------------------------------------------------------------------- head


def auc_of(labels_unsafe: np.ndarray, safe_scores: np.ndarray) -> float:
    """AUC of 'higher score = safe'."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(~labels_unsafe, safe_scores))


def fit_head(feats: dict[int, np.ndarray], unsafe: np.ndarray, train: np.ndarray, val: np.ndarray):
    """(k, C, scaler, classifier, val AUCs): the layer and regularisation with the best validation AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    results = {}
    best = None
    for k, x in feats.items():
        scaler = StandardScaler().fit(x[train])
        for c in C_CHOICES:
            clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x[train]), ~unsafe[train])
            auc = auc_of(unsafe[val], clf.decision_function(scaler.transform(x[val])))
            results[f"layers={k},C={c}"] = round(auc, 4)
            if best is None or auc > best[0]:
                best = (auc, k, c, scaler, clf)
    _, k, c, scaler, clf = best
    return k, c, scaler, clf, results


# ------------------------------------------------------------------------------------- build


POOL_GAIN = 1e5  # the pooling layer's output scale: the last token's own state becomes negligible
SCORE_RANGE = 100.0  # score = SCORE_RANGE * m / sqrt(m^2 + SCORE_RANGE^2): m itself while |m| << 100


def pooled_classifier(lm, layers: int, weight: torch.Tensor, bias: float, tokenizer):
    """A ``LlamaForSequenceClassification`` whose last-token score is a linear function of the
    mean normed hidden state after the first ``layers`` decoder layers of causal LM ``lm``.

    It keeps those layers and adds one pooling layer built from plain Llama parts:

    * queries and keys are zero, so every token attends uniformly to all tokens so far: at the last
      token the attention output is the mean over the sequence;
    * the values hold ``m = weight . norm(h) + bias`` (the final norm's weights on the pooling
      layer's input norm) and a constant 1 (value biases), and the output projection writes both,
      scaled by ``POOL_GAIN``, to two coordinates of the residual stream; the MLP is zero;
    * the final norm (weights 1) then divides by the length of that vector, and the score head
      reads the first coordinate: ``SCORE_RANGE * m / sqrt(m^2 + SCORE_RANGE^2)``, monotonic in
      ``m`` and equal to it up to 0.5% for |m| < 10.

    So the checkpoint scores the same with this suite's reward-model path and with plain
    ``transformers`` (no remote code), and a prefix cache or padding changes nothing. The scaled
    values (about 1e7) overflow float16: ``load_reward_model`` keeps it in float32 then.
    """
    from transformers import LlamaForSequenceClassification

    config = copy.deepcopy(lm.config)
    config.num_hidden_layers = layers + 1
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[: layers + 1]
    config.attention_bias = True  # the pooling layer's constant; zero in every copied layer
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config.architectures = ["LlamaForSequenceClassification"]
    rm = LlamaForSequenceClassification(config).eval()
    state = {name: torch.zeros_like(t) for name, t in rm.state_dict().items()}
    for name, tensor in lm.model.state_dict().items():
        if not name.startswith("layers.") or int(name.split(".")[1]) < layers:
            state[f"model.{name}"] = tensor.clone()
    pool = f"model.layers.{layers}."
    hidden = config.hidden_size
    state[pool + "input_layernorm.weight"] = lm.model.norm.weight.detach().clone()
    state[pool + "post_attention_layernorm.weight"] = torch.ones(hidden)
    state[pool + "self_attn.v_proj.weight"][0] = weight.to(torch.float32)
    state[pool + "self_attn.v_proj.bias"][0] = float(bias)
    state[pool + "self_attn.v_proj.bias"][1] = 1.0
    state[pool + "self_attn.o_proj.weight"][0, 0] = POOL_GAIN
    state[pool + "self_attn.o_proj.weight"][1, 1] = POOL_GAIN * SCORE_RANGE
    state["model.norm.weight"] = torch.ones(hidden)
    state["score.weight"][0, 0] = SCORE_RANGE / hidden ** 0.5
    rm.load_state_dict(state, strict=True)
    return rm


def pooled_score(m: np.ndarray) -> np.ndarray:
    """What ``pooled_classifier`` outputs for a head value ``m``."""
    return SCORE_RANGE * m / np.sqrt(m ** 2 + SCORE_RANGE ** 2)


def build(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eta.models import load_vlm
    from eta.twins import smollm2_dir

    torch.manual_seed(SEED)
    source = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    vlm = load_vlm(ANSWER_MODEL, "cpu", "float32")
    in_domain = generate_in_domain(vlm)
    del vlm
    with open(out / "in_domain.jsonl", "w", encoding="utf-8") as handle:
        for row in in_domain:
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    human = [r for r in labelled_responses().rows if r.split in ("rm-train", "rm-val")]
    rows = human + [r for r in in_domain if r.split in ("rm-train", "rm-val")]
    data = examples(rows, tokenizer)
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    feats = mean_features(lm, tokenizer, [(p, r) for p, r, _, _ in data], LAYER_CHOICES)
    unsafe = np.array([u for _, _, u, _ in data])
    split = np.array([s for _, _, _, s in data])
    k, c, scaler, clf, val_aucs = fit_head(feats, unsafe, split == "rm-train", split == "rm-val")
    log.info("safety head: %d layers, C=%s, validation AUCs %s", k, c, val_aucs)

    weight = clf.coef_[0] / scaler.scale_
    bias = float(clf.intercept_[0] - weight @ scaler.mean_)
    rm = pooled_classifier(lm, k, torch.tensor(weight, dtype=torch.float32), bias, tokenizer)
    check_checkpoint(rm, tokenizer, data[:8], pooled_score(clf.decision_function(scaler.transform(feats[k][:8]))))
    rm.save_pretrained(out)
    tokenizer.save_pretrained(out)
    card = {
        "description": "SmolLM2-135M-Instruct, first layers frozen, mean-pooled logistic-regression safety "
                       "head (score = logit P(safe) while |score| << 100)",
        "layers": k, "C": c, "validation_auc": val_aucs,
        "examples": {s: {"unsafe": int((unsafe & (split == s)).sum()), "safe": int((~unsafe & (split == s)).sum())}
                     for s in ("rm-train", "rm-val")},
        "in_domain_answers": len(in_domain), "seed": SEED, "build_version": BUILD_VERSION,
    }
    (out / "safety_head.json").write_text(json.dumps(card, indent=2) + "\n")


def check_checkpoint(rm, tokenizer, data: list[tuple[str, str, bool, str]], expected: np.ndarray) -> None:
    """Fail the build unless the checkpoint, through the reward-model path, scores ``data`` as the head."""
    from eta.evaluators import SequenceClassifierRM

    scorer = SequenceClassifierRM(rm, tokenizer, name="check")
    got = np.array([scorer.score(prompt, [response])[0] for prompt, response, _, _ in data])
    if not np.allclose(got, expected, atol=2e-3 * max(1.0, float(np.abs(expected).max()))):
        raise RuntimeError(f"safety checkpoint does not score as its head: {got.tolist()} vs {expected.tolist()}")
