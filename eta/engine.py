"""The evaluation engine: generate, judge and aggregate a benchmark with a method, resumably.

    from eta.engine import evaluate
    ev = evaluate(load_profile("local"), "embedded-harm", "eta", limit=20)
    ev.metrics["asr"], ev.frame()

Every sample's result is committed to the SQLite store as soon as it exists, so a run killed at
any instant and started again skips what is done and ends with every sample exactly once. Runs
split over processes (``accelerate launch``, or ``RANK``/``WORLD_SIZE``) take interleaved shards
of the samples and write to the same store; the first process then judges and aggregates.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eta.config import Profile
from eta.methods import Runner, get_method, method_config, method_params
from eta.store import RunKey, Store, stable_hash, to_dataframe

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    run: RunKey
    records: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: int = 0
    stand_in: bool = False
    skipped_samples: list[dict[str, str]] = field(default_factory=list)  # where / why (on_bad_sample: skip)

    def frame(self):
        return to_dataframe(self.records)

    def flat(self) -> dict[str, float | None]:
        """``{"<benchmark>/<metric>": value}`` for summaries."""
        return {f"{self.run.benchmark}/{name}": m.get("value") for name, m in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.run.model, "method": self.run.method, "method_hash": self.run.method_hash,
                "benchmark": self.run.benchmark, "seed": self.run.seed, "samples": len(self.records),
                "skipped": self.skipped, "skipped_samples": self.skipped_samples, "stand_in": self.stand_in,
                "metrics": self.metrics}


# ----------------------------------------------------------------------------------- shared models


class Models:
    """Loads each model of a profile once, on first use, and shares it across methods and judges."""

    def __init__(self, profile: Profile, share_answers: bool = True):
        self.profile = profile
        self._cache: dict[str, Any] = {}
        # ETA variants run on these models share vanilla answers, post-scores and aligned answers
        # (``eta.alignment.memo_spaces``; off for timing runs), per input format of the VLM
        self.answer_memo: dict | None = {} if share_answers else None
        self._stored_runs: list[tuple[str | None, Any, int, list]] = []  # not yet in the memo

    def remember(self, benchmark_kind: str | None, cfg, seed: int, records: list[dict[str, Any]]) -> None:
        """Offer an ETA run's stored results to the memo (applied when a runner next needs it, so
        that a run read whole from the store never loads the VLM)."""
        if self.answer_memo is not None:
            self._stored_runs.append((benchmark_kind, cfg, seed, records))

    def memo_for(self, benchmark_kind: str | None) -> dict | None:
        """The shared memo of the VLM's input format for this kind of benchmark, with every stored
        run offered so far put in."""
        from eta.alignment import remember

        if self.answer_memo is None:
            return None
        for kind, cfg, seed, records in self._stored_runs:
            memo = self.answer_memo.setdefault(self.vlm_for(kind).input_format, {})
            remember(memo, cfg, self.profile.judges.protocol, seed, records)
        self._stored_runs.clear()
        return self.answer_memo.setdefault(self.vlm_for(benchmark_kind).input_format, {})

    def _get(self, key: str, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def vlm(self):
        from eta.models import load_vlm

        m = self.profile.models
        return self._get(f"vlm:{m.vlm}", lambda: load_vlm(m.vlm, m.device, m.dtype, m.trust_remote_code,
                                                          protocol=self.profile.judges.protocol))

    def vlm_for(self, benchmark_kind: str | None):
        """The VLM building its inputs as the official scripts do for this kind of benchmark
        (LLaVA-1.5 under the official protocol: ``vicuna_v1`` on general-ability sets, ``llava_v1``
        elsewhere); the loaded VLM itself otherwise."""
        from eta.llava_inputs import official_conversation

        vlm = self.vlm
        if vlm.conversation is None or benchmark_kind is None:
            return vlm
        return vlm.with_conversation(official_conversation(benchmark_kind))

    @property
    def reward_model(self):
        from eta.evaluators import load_reward_model

        m = self.profile.models
        return self._get(f"rm:{m.reward_model}",
                         lambda: load_reward_model(m.reward_model, m.device, m.dtype, m.reward_model_trust_remote_code))

    @property
    def clip(self):
        from eta.evaluators import load_clip

        m = self.profile.models
        return self._get(f"clip:{m.clip}", lambda: load_clip(m.clip, m.device, "float32" if m.dtype == "auto" else m.dtype))

    def text_generator(self, name: str, max_new_tokens: int, trust_remote_code: bool,
                       choices: tuple[str, ...] = (), **options):
        """A local chat model as a judge's text generator (shares the VLM when it is the same model)."""
        from eta.judges import HFChatGenerator
        from eta.models import load_vlm

        m = self.profile.models
        vlm = self.vlm if name == m.vlm else self._get(
            f"vlm:{name}", lambda: load_vlm(name, m.device, m.dtype, trust_remote_code))
        return HFChatGenerator(vlm.model, vlm.tokenizer, max_new_tokens=max_new_tokens,
                               batch_size=self.profile.judges.batch_size, progress=False,
                               choices=choices, **options)

    @property
    def stand_in(self) -> bool:
        return self.profile.stand_in


def build_runner(models: Models, method: str, overrides: dict[str, Any] | None, seed: int,
                 benchmark_kind: str | None = None):
    from eta.alignment import ETA

    spec = get_method(method)
    cfg = method_config(spec, models.profile, overrides)
    vlm = models.vlm_for(benchmark_kind)
    rm = models.reward_model if spec.kind == "eta" else None
    clip = models.clip if spec.kind == "eta" else None
    memo = models.memo_for(benchmark_kind) if spec.kind == "eta" else None
    eta = ETA(vlm, rm, clip, cfg, seed=seed, answer_memo=memo, protocol=models.profile.judges.protocol,
              align_tokens=models.profile.engine.align_tokens)
    return spec, cfg, Runner(spec, eta, seed)


# -------------------------------------------------------------------------------------- sharding


def shard_from_env() -> tuple[int, int]:
    """(index, count) of this process among the processes of a launch (accelerate, torchrun)."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ValueError(f"bad shard: RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def wait_for(store: Store, run: RunKey, keys: set[str], timeout_s: float = 24 * 3600) -> None:
    """Block until every key is in the store (other shards finishing their part)."""
    start = time.monotonic()
    while not keys <= store.done_keys(run, with_skipped=True):
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"shards did not finish {run} within {timeout_s} s")
        time.sleep(1.0)


# ------------------------------------------------------------------------------------ evaluation


def evaluate(
    profile: Profile,
    benchmark: str,
    method: str,
    *,
    limit: int | None = None,
    seed: int | None = None,
    store: Store | str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
    judge: bool = True,
    shard: tuple[int, int] | None = None,
    models: Models | None = None,
    progress: bool = True,
) -> Evaluation | None:
    """Generate (resuming from the store), judge and aggregate; None on shards other than the first."""
    from eta.benchmarks import get_info, load_benchmark

    seed = profile.seed if seed is None else seed
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of samples (or None for all), got {limit!r}")
    models = models or Models(profile)
    own_store = not isinstance(store, Store)
    store = store if isinstance(store, Store) else Store(store or profile.engine.store)
    try:
        data = load_benchmark(benchmark, data_root, limit=limit, seed=seed,
                              skip_bad=profile.engine.on_bad_sample == "skip")
        if not data:
            where = data.root or "its embedded source"
            raise ValueError(f"benchmark {benchmark!r} has no samples in {where}"
                             + (f" ({len(data.skipped)} unreadable, skipped)" if data.skipped else "")
                             + "; check the data directory")
        spec = get_method(method)
        cfg = method_config(spec, profile, overrides)
        run = RunKey(model=profile.models.vlm, method=method,
                     method_hash=stable_hash(method_params(spec, profile, cfg)), benchmark=benchmark, seed=seed)
        index, count = shard or shard_from_env()
        mine = [ex for i, ex in enumerate(data) if i % count == index]
        done = store.done_keys(run)  # samples skipped on an earlier run are tried again
        todo = [ex for ex in mine if run.key(ex.id) not in done]
        log.info("%s / %s / %s: %d samples, %d stored, %d to run (shard %d of %d)", run.model, method,
                 benchmark, len(mine), len(mine) - len(todo), len(todo), index + 1, count)
        if todo:
            _, cfg, runner = build_runner(models, method, overrides, seed, benchmark_kind=get_info(benchmark).kind)
            bar = tqdm(total=len(todo), desc=f"{method} on {benchmark}", disable=not progress, unit="sample")
            for batch in batches(todo, profile.engine.batch_size):
                batch, questions, images = model_inputs(
                    batch, runner.eta.vlm, cfg.max_new_tokens, profile.engine,
                    skip=lambda ex, why: store.put(run, ex.id, skipped_record(ex, why)))
                if not batch:
                    continue
                records = runner.run_batch([ex.id for ex in batch], questions, images,
                                           image_names=[None if ex.image is None else str(ex.image) for ex in batch])
                for ex, record in zip(batch, records):
                    record.update(category=ex.category, image=str(ex.image) if ex.image else None)
                    store.put(run, ex.id, record)
                bar.update(len(batch))
            bar.close()
        if index != 0:
            return None
        if count > 1:
            wait_for(store, run, {run.key(ex.id) for ex in data})
        info = get_info(benchmark)
        if judge:
            judge_records(store, run, data, info.kind, models)
        stored = store.get(run, [ex.id for ex in data])
        records = [r for r in stored if "skipped" not in r]
        skipped = [{"where": s.where, "reason": s.reason} for s in data.skipped] + [
            {"where": f"{benchmark}/{r['sample_id']}", "reason": r["skipped"]} for r in stored if "skipped" in r]
        if not records:
            raise ValueError(f"{benchmark}: every sample was skipped; first: {skipped[0]['where']}: "
                             f"{skipped[0]['reason']}")
        if spec.kind == "eta":
            models.remember(info.kind, cfg, seed, records)
        metrics = aggregate(records, info.kind, data, profile.judges.protocol,
                            safety_judge=judge_names(profile)["safety"])
        if skipped:
            from eta.metrics import aggregate as mean_metric

            metrics["skipped_rate"] = mean_metric("skipped_rate", [True] * len(skipped) + [False] * len(records),
                                                  direction="lower", kind="rate").to_dict()
        return Evaluation(run=run, records=records, metrics=metrics, skipped=len(skipped), stand_in=profile.stand_in,
                          skipped_samples=skipped)
    finally:
        if own_store:
            store.close()


def model_inputs(batch: list, vlm, max_new_tokens: int, engine, skip) -> tuple[list, list[str], list]:
    """(examples, questions, images) of a batch ready for the model: images decoded, questions
    checked against the context (``engine.long_question``). A sample that cannot run stops the run
    with an error naming it, or with ``engine.on_bad_sample: skip`` goes to ``skip(example, reason)``."""
    from eta.benchmarks import BadDataError, load_image
    from eta.context import ContextTooLongError, fit_questions

    kept, questions, images = [], [], []
    for ex in batch:
        try:
            image = load_image(ex) if ex.image is not None else None
            question = fit_questions(vlm, [ex.question], [image], max_new_tokens,
                                     truncate=engine.long_question == "truncate", names=[f"{ex.benchmark}/{ex.id}"])[0]
        except (BadDataError, ContextTooLongError) as err:
            if engine.on_bad_sample == "stop":
                raise
            log.warning("skipping %s/%s: %s", ex.benchmark, ex.id, err)
            skip(ex, str(err))
            continue
        kept.append(ex)
        questions.append(question)
        images.append(image)
    return kept, questions, images


def skipped_record(ex, reason: str) -> dict[str, Any]:
    """What the store keeps of a skipped sample (a later run tries it again)."""
    return {"skipped": reason, "question": ex.question, "category": ex.category,
            "image": str(ex.image) if ex.image else None}


def batches(items: list, size: int):
    """Consecutive batches that never mix inputs with and without an image."""
    batch: list = []
    for item in items:
        if batch and (len(batch) >= size or (batch[0].image is None) != (item.image is None)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------- judging


def judge_names(profile: Profile) -> dict[str, str]:
    """The store's name of each judge's verdicts: every setting that can change a safety verdict
    (model, template and a hash of its text, protocol, token limit, constrained choice) is in it,
    so verdicts made with other settings are never reused (a trained classifier is its own name)."""
    from eta.judges.safety import safety_template
    from eta.safety_classifier import CLASSIFIER_JUDGES

    j = profile.judges
    constrained = ":constrained" if j.constrained else ""
    template = stable_hash(safety_template(j.safety_template))[:8]
    safety = j.safety if j.safety in CLASSIFIER_JUDGES else (
        f"{j.safety}:{j.safety_template}#{template}:{j.protocol}:{j.safety_max_new_tokens}tok{constrained}")
    return {"refusal": "refusal", "safety": safety}


def judge_records(store: Store, run: RunKey, data, kind: str, models: Models) -> None:
    """Judge every stored sample that lacks a verdict (refusal strings; the safety judge on harmful sets)."""
    from eta.judges import is_refusal

    profile = models.profile
    names = judge_names(profile)
    records = [r for r in store.get(run, [ex.id for ex in data]) if "skipped" not in r]
    for record in records:
        if names["refusal"] not in record["verdicts"]:
            refused = is_refusal(record["response"])
            store.put_verdict(record["key"], names["refusal"], {"refusal": refused, "attack_success": not refused})
    if kind != "harmful" or profile.judges.safety == "none":
        return
    todo = [r for r in records if names["safety"] not in r["verdicts"]]
    if not todo:
        return
    judge = safety_judge(models)
    for chunk in [todo[i: i + 16] for i in range(0, len(todo), 16)]:
        verdicts = judge.judge([r["question"] for r in chunk], [r["response"] for r in chunk])
        for record, verdict in zip(chunk, verdicts):
            store.put_verdict(record["key"], names["safety"], verdict.to_dict())


def safety_judge(models: Models):
    from eta.judges import llama_guard_judge, md_judge
    from eta.judges.safety import VERDICTS, safety_generation, safety_template
    from eta.safety_classifier import CLASSIFIER_JUDGES, get_classifier_judge

    j = models.profile.judges
    if j.safety in CLASSIFIER_JUDGES:  # a trained text classifier, not a generative judge
        return get_classifier_judge(j.safety)
    options = safety_generation(j.protocol) if j.safety_template != "llama-guard" else {}
    generator = models.text_generator(j.safety, j.safety_max_new_tokens, j.trust_remote_code,
                                      choices=VERDICTS[j.safety_template] if j.constrained else (), **options)
    if j.safety_template == "llama-guard":
        return llama_guard_judge(generator)
    return md_judge(generator, safety_template(j.safety_template), protocol=j.protocol)


# ------------------------------------------------------------------------------------ aggregation


def aggregate(records: list[dict[str, Any]], kind: str, data,
              protocol: str = "official", safety_judge: str | None = None) -> dict[str, dict[str, Any]]:
    """Headline metrics of one run, each with its direction and uncertainty (general-ability
    answers read under ``protocol``; the USR from the verdicts of ``safety_judge``, or of every
    non-refusal judge when None)."""
    from eta.metrics import aggregate as mean_metric
    from eta.metrics import attack_success_rate, unsafe_rate

    metrics: dict[str, Any] = {}
    if not records:
        return metrics
    successes = [v["attack_success"] for r in records for k, v in r["verdicts"].items() if k == "refusal"]
    if kind == "harmful":
        metrics["asr"] = attack_success_rate(successes)
        labels = [v.get("label") for r in records for k, v in r["verdicts"].items()
                  if k != "refusal" and (safety_judge is None or k == safety_judge)]
        if labels:
            metrics.update(unsafe_rate(labels))
    elif kind == "general":
        from eta.metrics.general import score_general

        metrics.update(score_general(data.info.name, list(data), {r["sample_id"]: r["response"] for r in records},
                                     protocol))
        metrics["refusal_rate"] = mean_metric("refusal_rate", [not s for s in successes], direction="lower",
                                              kind="rate")
    else:
        metrics["refusal_rate"] = mean_metric("refusal_rate", [not s for s in successes], direction="lower",
                                              kind="rate")
    metrics["aligned_rate"] = mean_metric("aligned_rate", [bool(r.get("aligned")) for r in records],
                                          direction="lower" if kind != "harmful" else "higher", kind="rate")
    metrics["response_tokens"] = mean_metric("response_tokens", [r.get("response_tokens", 0) for r in records],
                                             direction="lower", unit="tokens")
    metrics["seconds_per_response"] = mean_metric(
        "seconds_per_response", [r.get("timings", {}).get("total", 0.0) for r in records], direction="lower",
        unit="seconds")
    return {name: m.to_dict() for name, m in metrics.items()}
