"""ETA: evaluate the vanilla answer, then align it only when the evaluators say so.

``ETA.run(question, image)`` returns an ``ETAResult`` with the vanilla and final answers, both
evaluator scores, the decision, the branch that ran, token counts and timings.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from eta.config import ETAConfig, Profile, check_thresholds
from eta.decoding import (
    TopKSampler,
    best_of_n_sentences,
    greedy,
    make_generator,
    prefill,
    prefill_batch,
    sample_continuations,
    sentence_stop,
)
from eta.images import read_rgb, to_rgb

log = logging.getLogger(__name__)


@dataclass
class ETAResult:
    question: str
    image: str | None
    vanilla: str
    response: str
    s_pre: float | None  # CLIP cosine of image and safety prompt; None without image
    s_post: float  # reward of the vanilla answer under the post-evaluation prompt
    pre_unsafe: bool | None
    post_unsafe: bool
    aligned: bool
    branch: str  # vanilla | shallow | deep | shallow+deep
    vanilla_tokens: int
    response_tokens: int
    sentences: int = 0
    candidates_scored: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds: generate, evaluate, align, total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(cfg: ETAConfig, pre_unsafe: bool | None, post_unsafe: bool) -> bool:
    """Whether to align. Without an image the post-evaluation decides alone (``text_only_rule``)."""
    if pre_unsafe is None:
        return post_unsafe if cfg.text_only_rule == "post" else False
    return {
        "both": pre_unsafe and post_unsafe,
        "either": pre_unsafe or post_unsafe,
        "pre": pre_unsafe,
        "post": post_unsafe,
    }[cfg.rule]


def branch_name(cfg: ETAConfig) -> str:
    parts = [name for name, on in (("shallow", cfg.shallow), ("deep", cfg.deep)) if on]
    return "+".join(parts) or "vanilla"


def open_image(image: Image.Image | str | Path | None) -> Image.Image | None:
    """An RGB image from a PIL image or a file path; errors name the file (see ``eta.images``)."""
    if image is None or isinstance(image, Image.Image):
        return to_rgb(image) if image is not None else None
    return read_rgb(image)


def stable_seed(seed: int, *parts: str) -> int:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class ETA:
    """The method over a VLM, a reward model and a CLIP scorer."""

    def __init__(self, vlm, reward_model, clip, cfg: ETAConfig, seed: int = 0, vanilla_memo: dict | None = None,
                 protocol: str = "strict"):
        if cfg.num_candidates < 1 or cfg.max_sentence_tokens < 1 or cfg.max_new_tokens < 1:
            raise ValueError("num_candidates, max_sentence_tokens and max_new_tokens must be >= 1")
        check_thresholds(cfg, getattr(reward_model, "score_range", None), reward_model=getattr(
            reward_model, "name", "the reward model"))
        # Shared by ETA variants on the same models: the greedy vanilla answer of an input (image
        # given by path) and its post-score do not depend on the variant, so they are made once.
        self.vanilla_memo = vanilla_memo
        self.vlm = vlm
        self.reward_model = reward_model
        self.clip = clip
        self.cfg = cfg
        self.seed = seed
        self.protocol = protocol  # official: the official scripts' sentence end (and ECSO steps)
        self.stop = sentence_stop(vlm.tokenizer, cfg.sentence_end, protocol)

    @classmethod
    def from_profile(cls, profile: Profile) -> "ETA":
        from eta.evaluators import load_clip, load_reward_model
        from eta.models import load_vlm

        m = profile.models
        vlm = load_vlm(m.vlm, m.device, m.dtype, m.trust_remote_code, protocol=profile.judges.protocol)
        rm = load_reward_model(m.reward_model, m.device, m.dtype, m.trust_remote_code)
        clip = load_clip(m.clip, m.device, "float32" if m.dtype == "auto" else m.dtype)
        return cls(vlm, rm, clip, profile.eta, seed=profile.seed, protocol=profile.judges.protocol)

    @property
    def stand_in(self) -> bool:
        return any(getattr(m, "stand_in", False) for m in (self.vlm, self.reward_model, self.clip))

    # ------------------------------------------------------------------------------------- steps

    def generate(self, question: str, image: Image.Image | None, prefix: str = "") -> tuple[str, int]:
        """Greedy decoding (the vanilla answer, or the shallow-aligned one with a prefix)."""
        return self.generate_batch([question], [image], prefix)[0]

    def generate_batch(self, questions: list[str], images: list, prefix: str = "",
                       max_new_tokens: int | None = None, stop=None) -> list[tuple[str, int]]:
        """Greedy decoding of several prompts as one left-padded batch: (text, tokens) each."""
        inputs = self.vlm.encode_batch(questions, images, assistant_prefix=prefix)
        cont = sample_continuations(self.vlm, prefill_batch(self.vlm, inputs),
                                    max_tokens=max_new_tokens or self.cfg.max_new_tokens, choose=greedy, stop=stop)
        out = []
        for row in range(len(questions)):
            tokens = cont.row(row)
            prefix_ids = self._prefix_ids(inputs["input_ids"][row].tolist(), prefix)
            out.append((self.vlm.decode(prefix_ids + tokens), len(tokens)))
        return out

    def evaluate(self, vanilla: str, image_embedding: torch.Tensor | None) -> tuple[float | None, float]:
        """(s_pre, s_post): CLIP pre-score (None without image) and reward of the vanilla answer."""
        s_pre = None
        if image_embedding is not None:
            s_pre = self.clip.pre_score(image_embedding, self.cfg.prompts.safety)
        s_post = self.reward_model.score(self.cfg.prompts.post, [vanilla])[0]
        return s_pre, s_post

    def align(self, question: str, image: Image.Image | None, image_embedding: torch.Tensor | None,
              seed: int) -> tuple[str, int, int, int]:
        """(text, tokens, sentences, candidates scored) of the aligned answer."""
        cfg = self.cfg
        prefix = cfg.prefix if cfg.shallow else ""
        if not cfg.deep:
            text, n = self.generate(question, image, prefix)
            return text, n, 0, 0
        inputs = self.vlm.encode(question, image, assistant_prefix=prefix)
        prefix_ids = self._prefix_ids(inputs["input_ids"][0].tolist(), prefix)

        def score(response: list[int], candidates: list[list[int]], sentence_idx: int, any_eos: bool) -> list[float]:
            head = self.vlm.decode(prefix_ids + response)
            full = [self.vlm.decode(prefix_ids + response + c) for c in candidates]
            scores = self.reward_model.score(cfg.prompts.deep, full)
            if cfg.clip_guide and image_embedding is not None and sentence_idx > 1 and not any_eos:
                sentences = [t[len(head):].strip() if t.startswith(head) else self.vlm.decode(c).strip()
                             for t, c in zip(full, candidates)]
                utility = self.clip.similarity(image_embedding, sentences)
                scores = [s + cfg.alpha / sentence_idx * u for s, u in zip(scores, utility)]
            return scores

        sampler = TopKSampler(cfg.top_k, cfg.temperature, make_generator(seed, self.vlm.device))
        result = best_of_n_sentences(
            self.vlm, prefill(self.vlm, inputs), num_candidates=cfg.num_candidates, choose=sampler,
            stop=self.stop, score=score, max_new_tokens=cfg.max_new_tokens,
            max_sentence_tokens=cfg.max_sentence_tokens,
        )
        text = self.vlm.decode(prefix_ids + result.tokens)
        return text, len(result.tokens), result.sentences, result.candidates_scored

    # --------------------------------------------------------------------------------------- run

    def run(self, question: str, image: Image.Image | str | Path | None = None, seed: int | None = None) -> ETAResult:
        return self.run_batch([question], [image], seed=seed)[0]

    def run_batch(self, questions: list[str], images: list, seed: int | None = None,
                  sample_ids: list[str] | None = None) -> list[ETAResult]:
        """ETA on several inputs (all with an image, or all without). The vanilla answers are
        decoded as one batch and scored together; aligning is per input, seeded per input so the
        outcome does not depend on batching. Batch-level times are split evenly per input."""
        cfg = self.cfg
        names = [str(i) if isinstance(i, (str, Path)) else (None if i is None else "<image>") for i in images]
        imgs = [open_image(i) for i in images]
        base_seed = self.seed if seed is None else seed
        ids = sample_ids or [f"{q}\x1f{n or ''}" for q, n in zip(questions, names)]
        n = len(questions)
        t0 = self._clock()
        vanilla = self._memoized(("vanilla", cfg.max_new_tokens), list(zip(questions, names)),
                                 lambda idx: self.generate_batch([questions[i] for i in idx], [imgs[i] for i in idx]),
                                 usable=[n_ != "<image>" for n_ in names])
        t1 = self._clock()
        embeddings = self.clip.embed_images(imgs) if imgs[0] is not None else [None] * n
        texts = [text for text, _ in vanilla]
        s_post = self._memoized(("s_post", cfg.prompts.post), texts,
                                lambda idx: self.reward_model.score(cfg.prompts.post, [texts[i] for i in idx]))
        s_pre = [None if e is None else self.clip.pre_score(e, cfg.prompts.safety) for e in embeddings]
        t2 = self._clock()
        results = []
        for i in range(n):
            pre_unsafe = None if s_pre[i] is None else s_pre[i] >= cfg.tau_pre
            post_unsafe = s_post[i] <= cfg.tau_post
            aligned = decide(cfg, pre_unsafe, post_unsafe) and (cfg.shallow or cfg.deep)
            response, response_tokens, sentences, scored = vanilla[i][0], vanilla[i][1], 0, 0
            ta = self._clock()
            if aligned:
                response, response_tokens, sentences, scored = self.align(
                    questions[i], imgs[i], embeddings[i], stable_seed(base_seed, ids[i]))
            align_s = self._clock() - ta
            timings = {"generate": (t1 - t0) / n, "evaluate": (t2 - t1) / n, "align": align_s}
            timings["total"] = sum(timings.values())
            results.append(ETAResult(
                question=questions[i], image=names[i], vanilla=vanilla[i][0], response=response, s_pre=s_pre[i],
                s_post=s_post[i], pre_unsafe=pre_unsafe, post_unsafe=post_unsafe, aligned=aligned,
                branch=branch_name(cfg) if aligned else "vanilla", vanilla_tokens=vanilla[i][1],
                response_tokens=response_tokens, sentences=sentences, candidates_scored=scored, timings=timings,
            ))
        return results

    # ----------------------------------------------------------------------------------- helpers

    def _memoized(self, namespace: tuple, keys: list, compute, usable: list[bool] | None = None) -> list:
        """``compute(indices)`` for the keys not in the shared memo (all of them without one)."""
        memo = self.vanilla_memo
        usable = usable or [True] * len(keys)
        if memo is None:
            return compute(list(range(len(keys))))
        full = [(namespace, k) for k in keys]
        todo = [i for i, k in enumerate(full) if not usable[i] or k not in memo]
        fresh = dict(zip(todo, compute(todo))) if todo else {}
        for i, value in fresh.items():
            if usable[i]:
                memo[full[i]] = value
        return [fresh[i] if i in fresh else memo[full[i]] for i in range(len(keys))]

    def _clock(self) -> float:
        if self.vlm.device.type == "cuda":
            torch.cuda.synchronize(self.vlm.device)
        return time.perf_counter()

    def _prefix_ids(self, ids: list[int], prefix: str) -> list[int]:
        """The prompt tokens that belong to the assistant turn (the interference prefix)."""
        if not prefix:
            return []
        for k in range(1, min(len(ids), 64) + 1):
            if self.vlm.decode(ids[-k:]).strip() == prefix.strip():
                return ids[-k:]
        raise ValueError(f"could not find the prefix {prefix!r} at the end of the prompt tokens")
