"""ETA: evaluate the vanilla answer, then align it only when the evaluators say so.

``ETA.run(question, image)`` returns an ``ETAResult`` with the vanilla and final answers, both
evaluator scores, the decision, the branch that ran, token counts and timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from eta.best_of_n import AlignJob, SentenceRequest, best_of_n_many
from eta.config import ETAConfig, Profile, check_thresholds
from eta.decoding import prefill_batch, sample_continuations
from eta.images import read_rgb, to_rgb
from eta.sampling import TopKSampler, greedy, make_generator, sentence_stop

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


# Knobs that only decide whether to align: an input's aligned answer never depends on them, so runs
# that differ only here (a threshold sweep, the decision rules) share their aligned answers.
DECISION_KNOBS = ("tau_pre", "tau_post", "rule", "text_only_rule")


def aligning_signature(cfg: ETAConfig, protocol: str) -> str:
    """A hash of everything an aligned answer depends on besides the input and its seed."""
    from eta.store import stable_hash

    return stable_hash([{k: v for k, v in asdict(cfg).items() if k not in DECISION_KNOBS}, protocol])


def memo_spaces(cfg: ETAConfig, protocol: str, seed: int) -> dict[str, tuple]:
    """Namespaces of the shared memo (``ETA.answer_memo``) under this configuration. Within them,
    vanilla answers are keyed by (question, image name), post-scores by the vanilla answer, aligned
    answers by (sample id, question, image name)."""
    return {"vanilla": ("vanilla", cfg.max_new_tokens), "s_post": ("s_post", cfg.prompts.post),
            "aligned": ("aligned", aligning_signature(cfg, protocol), seed)}


def remember(memo: dict, cfg: ETAConfig, protocol: str, seed: int, records: list[dict[str, Any]]) -> None:
    """Put the stored results of an ETA run into a shared memo, so that variants run later reuse its
    vanilla answers, post-scores and aligned answers instead of decoding again. A record's
    ``image`` is the image file its input was read from (None: text-only)."""
    spaces = memo_spaces(cfg, protocol, seed)
    for r in records:
        if "skipped" in r or "s_post" not in r or r.get("image") == "<image>":
            continue
        image = r.get("image")
        memo.setdefault((spaces["vanilla"], (r["question"], image)), (r["vanilla"], r["vanilla_tokens"]))
        memo.setdefault((spaces["s_post"], r["vanilla"]), r["s_post"])
        if r["aligned"]:
            memo.setdefault((spaces["aligned"], (r["sample_id"], r["question"], image)),
                            (r["response"], r["response_tokens"], r["sentences"], r["candidates_scored"]))


def stable_seed(seed: int, *parts: str) -> int:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class ETA:
    """The method over a VLM, a reward model and a CLIP scorer."""

    def __init__(self, vlm, reward_model, clip, cfg: ETAConfig, seed: int = 0, answer_memo: dict | None = None,
                 protocol: str = "strict", align_tokens: int | None = None):
        if cfg.num_candidates < 1 or cfg.max_sentence_tokens < 1 or cfg.max_new_tokens < 1:
            raise ValueError("num_candidates, max_sentence_tokens and max_new_tokens must be >= 1")
        check_thresholds(cfg, getattr(reward_model, "score_range", None), reward_model=getattr(
            reward_model, "name", "the reward model"))
        # Shared by ETA variants on the same models (``memo_spaces``): an input's vanilla answer and
        # its post-score never depend on the variant, its aligned answer only on the aligning knobs,
        # so each is made once. Inputs whose image has no name (file) are never shared.
        self.answer_memo = answer_memo
        self.vlm = vlm
        self.reward_model = reward_model
        self.clip = clip
        self.cfg = cfg
        self.seed = seed
        self.protocol = protocol  # official: the official scripts' sentence end (and ECSO steps)
        self.stop = sentence_stop(vlm.tokenizer, cfg.sentence_end, protocol)
        self.align_tokens = align_tokens  # KV-cache tokens the aligning batch may hold (None: no bound)

    @classmethod
    def from_profile(cls, profile: Profile) -> "ETA":
        from eta.evaluators import load_clip, load_reward_model
        from eta.models import load_vlm

        m = profile.models
        vlm = load_vlm(m.vlm, m.device, m.dtype, m.trust_remote_code, protocol=profile.judges.protocol)
        rm = load_reward_model(m.reward_model, m.device, m.dtype, m.reward_model_trust_remote_code)
        clip = load_clip(m.clip, m.device, "float32" if m.dtype == "auto" else m.dtype)
        return cls(vlm, rm, clip, profile.eta, seed=profile.seed, protocol=profile.judges.protocol,
                   align_tokens=profile.engine.align_tokens)

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
        return self.align_batch([question], [image], [image_embedding], [seed])[0]

    def align_batch(self, questions: list[str], images: list, image_embeddings: list, seeds: list[int],
                    names: list[str] | None = None) -> list[tuple[str, int, int, int]]:
        """Align several inputs at once: (text, tokens, sentences, candidates scored) each.

        Deep alignment runs every input's N candidates in one decoding batch (``best_of_n_many``:
        inputs join as others finish, within ``align_tokens`` KV-cache tokens); the reward model
        scores each input's candidates behind that input's own cached prefix, and CLIP embeds the
        candidate sentences of all inputs finishing a sentence at the same step in one call. Each
        input samples from its own generator, seeded by ``seeds``, so every answer equals the one
        the input gets alone.
        """
        cfg = self.cfg
        prefix = cfg.prefix if cfg.shallow else ""
        if not cfg.deep:
            return [(text, n, 0, 0) for text, n in self.generate_batch(questions, images, prefix)]
        prompts = [self.vlm.encode(q, img, assistant_prefix=prefix) for q, img in zip(questions, images)]
        prefix_ids = [self._prefix_ids(p["input_ids"][0].tolist(), prefix) for p in prompts]
        jobs = [AlignJob(p, TopKSampler(cfg.top_k, cfg.temperature, make_generator(seed, self.vlm.device)),
                         name=(names[i] if names else str(i))) for i, (p, seed) in enumerate(zip(prompts, seeds))]
        rm_caches: dict[int, Any] = {}

        def score(requests: list[SentenceRequest]) -> list[list[float]]:
            heads = [self.vlm.decode(prefix_ids[r.job] + r.response) for r in requests]
            fulls = [[self.vlm.decode(prefix_ids[r.job] + r.response + c) for c in r.candidates] for r in requests]
            scores = []
            for r, full in zip(requests, fulls):
                with self._reward_prefix(rm_caches, r.job):
                    scores.append(self.reward_model.score(cfg.prompts.deep, full))
            guided = [k for k, r in enumerate(requests) if cfg.clip_guide and image_embeddings[r.job] is not None
                      and r.sentence_idx > 1 and not r.any_eos]
            if guided:
                sentences = [[t[len(heads[k]):].strip() if t.startswith(heads[k]) else self.vlm.decode(c).strip()
                              for t, c in zip(fulls[k], requests[k].candidates)] for k in guided]
                if len(guided) == 1:  # one input: its own call, as when it runs alone
                    utilities = [self.clip.similarity(image_embeddings[requests[guided[0]].job], sentences[0])]
                else:  # every input's sentences embedded in one call
                    embedded = self.clip.embed_texts([s for group in sentences for s in group])
                    utilities = [(group @ image_embeddings[requests[k].job]).tolist()
                                 for k, group in zip(guided, embedded.split([len(g) for g in sentences]))]
                for k, utility in zip(guided, utilities):
                    r = requests[k]
                    scores[k] = [s + cfg.alpha / r.sentence_idx * u for s, u in zip(scores[k], utility)]
            return scores

        def release(j: int, _) -> None:
            rm_caches.pop(j, None)

        results = best_of_n_many(
            self.vlm, jobs, num_candidates=cfg.num_candidates, stop=self.stop, score=score,
            max_new_tokens=cfg.max_new_tokens, max_sentence_tokens=cfg.max_sentence_tokens,
            max_cache_tokens=self.align_tokens, on_done=release)
        return [(self.vlm.decode(ids + r.tokens), len(r.tokens), r.sentences, r.candidates_scored)
                for ids, r in zip(prefix_ids, results)]

    @contextlib.contextmanager
    def _reward_prefix(self, caches: dict, job: int):
        """The reward model's prefix cache swapped for ``job``'s own while it scores that input, so
        that interleaved inputs each extend their own cached response instead of evicting another's."""
        from eta.evaluators import PrefixCache

        shared = getattr(self.reward_model, "prefix_cache", None)
        if not isinstance(shared, PrefixCache):
            yield
            return
        self.reward_model.prefix_cache = caches.setdefault(job, PrefixCache(shared.model))
        try:
            yield
        finally:
            self.reward_model.prefix_cache = shared

    # --------------------------------------------------------------------------------------- run

    def run(self, question: str, image: Image.Image | str | Path | None = None, seed: int | None = None) -> ETAResult:
        return self.run_batch([question], [image], seed=seed)[0]

    def run_batch(self, questions: list[str], images: list, seed: int | None = None,
                  sample_ids: list[str] | None = None, image_names: list[str | None] | None = None) -> list[ETAResult]:
        """ETA on several inputs (all with an image, or all without). The vanilla answers are
        decoded as one batch and scored together; the inputs to align are aligned together
        (``align_batch``), each seeded by its own id so that no outcome depends on batching.
        Batch-level times are split evenly over the inputs they served. An image is named by its
        path (or by ``image_names``, the files decoded images were read from); the shared memo
        holds answers of named images only."""
        cfg = self.cfg
        names = [str(i) if isinstance(i, (str, Path)) else (None if i is None else "<image>") for i in images]
        if image_names is not None:
            if len(image_names) != len(images) or any((n is None) != (i is None) for n, i in zip(image_names, images)):
                raise ValueError("image_names must name every image (None exactly for text-only inputs)")
            names = [None if n is None else str(n) for n in image_names]
        imgs = [open_image(i) for i in images]
        base_seed = self.seed if seed is None else seed
        ids = sample_ids or [f"{q}\x1f{n or ''}" for q, n in zip(questions, names)]
        n = len(questions)
        t0 = self._clock()
        spaces = memo_spaces(cfg, self.protocol, base_seed)
        vanilla = self._memoized(spaces["vanilla"], list(zip(questions, names)),
                                 lambda idx: self.generate_batch([questions[i] for i in idx], [imgs[i] for i in idx]),
                                 usable=[n_ != "<image>" for n_ in names])
        t1 = self._clock()
        embeddings = self.clip.embed_images(imgs) if imgs[0] is not None else [None] * n
        texts = [text for text, _ in vanilla]
        s_post = self._memoized(spaces["s_post"], texts,
                                lambda idx: self.reward_model.score(cfg.prompts.post, [texts[i] for i in idx]))
        s_pre = [None if e is None else self.clip.pre_score(e, cfg.prompts.safety) for e in embeddings]
        t2 = self._clock()
        pre_unsafe = [None if s is None else s >= cfg.tau_pre for s in s_pre]
        post_unsafe = [s <= cfg.tau_post for s in s_post]
        aligned = [decide(cfg, pre, post) and (cfg.shallow or cfg.deep) for pre, post in zip(pre_unsafe, post_unsafe)]
        todo = [i for i in range(n) if aligned[i]]
        outputs = {i: (vanilla[i][0], vanilla[i][1], 0, 0) for i in range(n)}
        if todo:
            outputs.update(zip(todo, self._memoized(
                spaces["aligned"], [(ids[i], questions[i], names[i]) for i in todo],
                lambda idx: self.align_batch(
                    [questions[todo[j]] for j in idx], [imgs[todo[j]] for j in idx],
                    [embeddings[todo[j]] for j in idx], [stable_seed(base_seed, ids[todo[j]]) for j in idx],
                    names=[ids[todo[j]] for j in idx]),
                usable=[names[i] != "<image>" for i in todo])))
        align_s = (self._clock() - t2) / max(len(todo), 1)
        results = []
        for i in range(n):
            response, response_tokens, sentences, scored = outputs[i]
            timings = {"generate": (t1 - t0) / n, "evaluate": (t2 - t1) / n, "align": align_s if aligned[i] else 0.0}
            timings["total"] = sum(timings.values())
            results.append(ETAResult(
                question=questions[i], image=names[i], vanilla=vanilla[i][0], response=response, s_pre=s_pre[i],
                s_post=s_post[i], pre_unsafe=pre_unsafe[i], post_unsafe=post_unsafe[i], aligned=aligned[i],
                branch=branch_name(cfg) if aligned[i] else "vanilla", vanilla_tokens=vanilla[i][1],
                response_tokens=response_tokens, sentences=sentences, candidates_scored=scored, timings=timings,
            ))
        return results

    # ----------------------------------------------------------------------------------- helpers

    def _memoized(self, namespace: tuple, keys: list, compute, usable: list[bool] | None = None) -> list:
        """``compute(indices)`` for the keys not in the shared memo (all of them without one)."""
        memo = self.answer_memo
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
