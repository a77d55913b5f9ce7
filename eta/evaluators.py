"""The two evaluators of ETA: a CLIP pre-generation score and a reward-model post-generation score.

Both are batched. A reward model is anything with ``score(prompt, responses) -> list[float]``:
the prompt is the user turn (the method's POST or DEEP prompt) and each response is scored as the
assistant turn of that conversation. ArmoRM itself is loaded without its hub code by
``eta.checkpoints.armorm``; its head reads the hidden states this module computes.
"""

from __future__ import annotations

import copy
import logging
from typing import Protocol, Sequence

import torch

from eta.model_registry import ModelSpec, UnknownModelError, check_remote_code, local_path, resolve
from eta.models import pick_device, pick_dtype

log = logging.getLogger(__name__)


class RewardModel(Protocol):
    name: str
    stand_in: bool

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]: ...


# -------------------------------------------------------------------------------------------- CLIP


class ClipScorer:
    """Cosine similarities between images and texts in a CLIP space (open_clip).

    The cosine is ETA's s_pre for every CLIP. Contrastive (softmax) CLIPs turn it into a logit by
    a learnt scale; SigLIP-style (sigmoid) models add a learnt bias, giving a per-pair probability
    ``sigmoid(scale * cosine + bias)``. Both maps are increasing, so a threshold on the cosine and
    one on the model's own score make the same decisions; only the number differs, and it belongs
    to the model (``pair_probability`` converts a cosine for sigmoid models).
    """

    def __init__(self, model, preprocess, tokenizer, name: str, stand_in: bool = False):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.stand_in = stand_in
        self.device = next(model.parameters()).device
        self._text_cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def embed_images(self, images: Sequence) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(img.convert("RGB")) for img in images]).to(self.device)
        tower = getattr(self.model, "visual", self.model)
        stem = getattr(tower, "conv1", None)  # ViT towers: the patch embedding sets the input dtype
        dtype = stem.weight.dtype if stem is not None else next(tower.parameters()).dtype
        features = self.model.encode_image(pixels.to(dtype)).float()
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        features = self.model.encode_text(tokens).float()
        return torch.nn.functional.normalize(features, dim=-1)

    def embed_prompt(self, text: str) -> torch.Tensor:
        """A fixed prompt's embedding, computed once."""
        if text not in self._text_cache:
            self._text_cache[text] = self.embed_texts([text])[0]
        return self._text_cache[text]

    def similarity(self, image_embedding: torch.Tensor, texts: Sequence[str]) -> list[float]:
        """Cosine between one image embedding and each text (plain cosine, not the x100 logit)."""
        return (self.embed_texts(texts) @ image_embedding).tolist()

    def pre_score(self, image_embedding: torch.Tensor, safety_prompt: str) -> float:
        return float(self.embed_prompt(safety_prompt) @ image_embedding)

    @property
    def loss(self) -> str:
        """"sigmoid" for models with a learnt logit bias (SigLIP), else "softmax"."""
        return "sigmoid" if getattr(self.model, "logit_bias", None) is not None else "softmax"

    def pair_probability(self, cosine: float) -> float:
        """A sigmoid-trained model's own probability that an image and a text match."""
        if self.loss != "sigmoid":
            raise ValueError(f"CLIP {self.name!r} is softmax-trained: its scores are relative to a set "
                             "of texts, with no per-pair probability; use the cosine")
        scale, bias = float(self.model.logit_scale.detach().exp()), float(self.model.logit_bias.detach())
        return float(torch.sigmoid(torch.tensor(scale * cosine + bias)))


def open_clip_names(arch: str, tag: str) -> tuple[str, str | None]:
    """Check an open_clip architecture and pretrained tag by name (nothing is downloaded)."""
    import open_clip

    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if arch.lower().split("-")[0] in m.lower()][:12]
        raise UnknownModelError(f"open_clip has no model {arch!r}" +
                                (f"; similar: {', '.join(close)}" if close else "; see open_clip.list_models()"))
    if not tag:
        return arch, None
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise UnknownModelError(f"open_clip model {arch!r} has no pretrained tag {tag!r}; its tags: "
                                f"{', '.join(tags) or 'none'}")
    return arch, tag


def load_clip(name: str, device: str = "auto", dtype: str = "auto") -> ClipScorer:
    """A CLIP by registry name or any open_clip model as ``open_clip:ARCH/TAG``.

    Weights come from open_clip's own download and cache. The pre-evaluator's threshold
    ``tau_pre`` belongs to the model it was found on (notebook 01 finds it for another one).
    """
    import open_clip

    spec = resolve(name, "clip")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[torch_dtype]
    source = spec.source
    if source.startswith("twin:"):
        model_name, pretrained = f"local-dir:{local_path(spec)}", None
    elif "@" in source:
        model_name, pretrained = open_clip_names(*source.split("@", 1))
    else:  # "hf-hub:..." / "local-dir:..." / a bare directory
        model_name = source if ":" in source else f"local-dir:{source}"
        pretrained = None
    log.info("loading CLIP %s (%s) on %s", spec.name, source, dev)
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=pretrained, device=dev, precision=precision
    )
    tokenizer = open_clip.get_tokenizer(model_name)
    scorer = ClipScorer(model, preprocess, tokenizer, name=spec.name, stand_in=spec.stand_in)
    log.info("CLIP %s is trained with a %s loss; s_pre stays the cosine", spec.name, scorer.loss)
    return scorer


# ----------------------------------------------------------------------------------- reward models


def conversation(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


class PrefixCache:
    """Final hidden states of token sequences, reusing the KV cache of their shared prefix.

    Scoring during best-of-N sees N sequences that share everything but their last sentence, and
    successive calls share the growing response. The prefix common to all sequences of a call is
    run once (extending the previous call's prefix when it continues it); its hidden states are
    kept too, for heads that read a prompt position (ArmoRM's gate). The N suffixes are then
    packed into one row behind that prefix, each attending to the prefix and causally to itself
    only (a block-diagonal mask, positions restarting after the prefix): no padding, no copies of
    the prefix cache, one forward pass.
    """

    def __init__(self, model):
        self.model = model
        self.base = model.base_model
        self.device = next(model.parameters()).device
        self.tokens: list[int] = []
        self.cache = None
        self.hidden: torch.Tensor | None = None  # (len(tokens), H) final hidden states of the prefix

    def reset(self) -> None:
        self.tokens, self.cache, self.hidden = [], None, None

    @torch.inference_mode()
    def last_hidden(self, sequences: list[list[int]]) -> torch.Tensor:
        """(B, H) final-layer hidden state at the last token of each sequence."""
        return self.hidden_at(sequences, [[len(x) - 1] for x in sequences])[:, 0]

    @torch.inference_mode()
    def hidden_at(self, sequences: list[list[int]], positions: list[list[int]]) -> torch.Tensor:
        """(B, P, H) final-layer hidden states of each sequence at its P ``positions``."""
        from eta.decoding import new_cache

        shared = common_prefix_length(sequences)
        shared = min(shared, min(len(x) for x in sequences) - 1)  # every sequence keeps a token to run
        prefix = sequences[0][:shared]
        keep = common_prefix_length([self.tokens, prefix]) if self.cache is not None else 0
        if self.cache is None or keep == 0:
            self.cache, self.tokens, self.hidden = new_cache(self.model), [], None
        elif keep < len(self.tokens):
            self.cache.crop(-(len(self.tokens) - keep))
            self.tokens, self.hidden = self.tokens[:keep], self.hidden[:keep]
        if len(prefix) > keep:
            out = self.base(input_ids=torch.tensor([prefix[keep:]], device=self.device), cache=self.cache,
                            use_cache=True).last_hidden_state[0]
            self.hidden = out if self.hidden is None else torch.cat([self.hidden, out])
            self.tokens = list(prefix)
        suffixes = [x[shared:] for x in sequences]
        child = copy.copy(self.cache)  # the packed suffixes extend a copy; the prefix cache stays as is
        child.layers = [copy.copy(layer) for layer in self.cache.layers]
        ids, mask, position_ids, starts = pack(suffixes, shared, self.device, self.attention_kind())
        packed = self.base(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=child,
                           use_cache=True).last_hidden_state[0]
        rows = [[packed[start + p - shared] if p >= shared else self.hidden[p] for p in wanted]
                for start, wanted in zip(starts, positions)]
        return torch.stack([torch.stack(r) for r in rows])

    def attention_kind(self) -> str:
        return getattr(self.model.config, "_attn_implementation", None) or "sdpa"


def pack(suffixes: list[list[int]], prefix_length: int, device, attention: str):
    """One row holding every suffix; a mask that lets each see the prefix and its own past only.

    Returns input ids, mask, position ids and the index in the row where each suffix starts."""
    total = sum(len(x) for x in suffixes)
    allowed = torch.zeros(total, prefix_length + total, dtype=torch.bool)
    allowed[:, :prefix_length] = True
    positions, starts, offset = [], [], 0
    for suffix in suffixes:
        n = len(suffix)
        block = slice(prefix_length + offset, prefix_length + offset + n)
        allowed[offset: offset + n, block] = torch.ones(n, n, dtype=torch.bool).tril()
        positions.extend(range(prefix_length, prefix_length + n))
        starts.append(offset)
        offset += n
    if attention == "eager":
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    else:
        mask = allowed
    ids = torch.tensor([[t for x in suffixes for t in x]], device=device)
    return ids, mask[None, None].to(device), torch.tensor([positions], device=device), starts


def common_prefix_length(sequences: list[list[int]]) -> int:
    n = 0
    for column in zip(*sequences):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def has_plain_head(model, head: str) -> bool:
    """True for standard transformers heads over ``base_model`` (remote-code models keep their own path)."""
    return isinstance(getattr(model, head, None), torch.nn.Linear) and type(model).__module__.startswith("transformers.")


class ScoreHead(Protocol):
    """Which final hidden states of a token sequence a reward head reads, and the score it makes."""

    def score_positions(self, ids: list[int]) -> list[int]: ...

    def score_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor: ...  # (B, P, H) -> (B,)


class LinearScoreHead:
    """A classification head's first logit at the last token (transformers' ``*ForSequenceClassification``)."""

    def __init__(self, linear: torch.nn.Linear):
        self.linear = linear

    def score_positions(self, ids: list[int]) -> list[int]:
        return [len(ids) - 1]

    def score_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden[:, 0])[:, 0]


def score_head(model) -> ScoreHead | None:
    """The head of a reward model whose backbone runs here; None for opaque (remote-code) models."""
    if hasattr(model, "score_positions") and hasattr(model, "score_from_hidden"):
        return model  # eta.checkpoints.armorm.ArmoRM
    if has_plain_head(model, "score"):
        return LinearScoreHead(model.score)
    return None


class SequenceClassifierRM:
    """A scalar reward model: ArmoRM's gated score, or the first logit of a classification head.

    Scores are read at positions computed on each unpadded token list (``ScoreHead``), never by
    looking for a pad id: batches are padded on the tokenizer's side with any in-vocabulary id
    and the positions shifted by the padding, so the tokenizer's and the config's pad ids need
    not agree. A model whose head runs its own code (remote code) is batched without padding.
    """

    def __init__(self, model, tokenizer, name: str, stand_in: bool = False, batch_size: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.stand_in = stand_in
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.head = score_head(model)
        self.prefix_cache = PrefixCache(model) if self.head is not None else None
        self.use_prefix_cache = self.prefix_cache is not None

    def encode(self, prompt: str, response: str) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation(prompt, response), tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @torch.inference_mode()
    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        encoded = [self.encode(prompt, r) for r in responses]
        if self.head is None:
            return self._score_opaque(encoded)
        positions = [self.head.score_positions(x) for x in encoded]
        if self.use_prefix_cache:
            hidden = self.prefix_cache.hidden_at(encoded, positions)
            return self.head.score_from_hidden(hidden).float().tolist()
        scores: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            hidden = self.padded_hidden(encoded[start: start + self.batch_size],
                                        positions[start: start + self.batch_size])
            scores.extend(self.head.score_from_hidden(hidden).float().tolist())
        return scores

    def padded_hidden(self, sequences: list[list[int]], positions: list[list[int]]) -> torch.Tensor:
        """(B, P, H) hidden states of a padded batch at each sequence's own positions."""
        width = max(len(x) for x in sequences)
        left = self.tokenizer.padding_side == "left"
        pad = self.pad_id()
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        shifts = []
        for row, ids in enumerate(sequences):
            shift = width - len(ids) if left else 0
            input_ids[row, shift: shift + len(ids)] = torch.tensor(ids)
            mask[row, shift: shift + len(ids)] = 1
            shifts.append(shift)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = self.model.base_model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                       position_ids=position_ids.to(self.device)).last_hidden_state
        index = torch.tensor([[shift + p for p in wanted] for shift, wanted in zip(shifts, positions)],
                             device=hidden.device)
        return hidden[torch.arange(len(sequences), device=hidden.device)[:, None], index]

    def pad_id(self) -> int:
        """An id to fill padding with (masked out, so any row of the embedding table will do)."""
        rows = self.model.get_input_embeddings().num_embeddings
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None and 0 <= candidate < rows:
                return int(candidate)
        return 0

    def _score_opaque(self, encoded: list[list[int]]) -> list[float]:
        """Scores from the model's own forward, on batches of equal length (no padding to misread)."""
        scores: list[float] = [0.0] * len(encoded)
        by_length: dict[int, list[int]] = {}
        for i, x in enumerate(encoded):
            by_length.setdefault(len(x), []).append(i)
        for same in by_length.values():
            for start in range(0, len(same), self.batch_size):
                group = same[start: start + self.batch_size]
                out = self.model(input_ids=torch.tensor([encoded[i] for i in group], device=self.device))
                values = out.score if getattr(out, "score", None) is not None else out.logits
                for i, v in zip(group, values.float().reshape(len(group), -1)[:, 0].tolist()):
                    scores[i] = v
        return scores


JUDGE_SYSTEM = "You are a careful safety reviewer. You answer with a single word: Yes or No."
# A 135M model cannot use the method's long scoring instruction; it is asked one short question
# instead (the instruction is accepted and ignored). Chosen among four phrasings by AUC on
# a small hand-written labelled set; `python -m eta calibrate` reports how weak it is.
JUDGE_QUESTION = "Does the following reply refuse the request or stay harmless?\n\n{response}\n\nAnswer Yes or No."


class GenerativeJudgeRM:
    """A chat LM used as a reward model: score = P(Yes) / (P(Yes) + P(No)) for 'is it safe?'.

    A weak stand-in for ArmoRM on machines without its weights; its threshold is calibrated on its
    own scale (probability in [0, 1]), never ArmoRM's 0.06.
    """

    score_range = (0.0, 1.0)  # a probability: eta.tau_post outside it is refused

    def __init__(self, model, tokenizer, name: str, stand_in: bool = True, batch_size: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.stand_in = stand_in
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.prefix_cache = PrefixCache(model)
        self.use_prefix_cache = True
        self.yes_ids = self._first_tokens(["Yes", " Yes", "yes"])
        self.no_ids = self._first_tokens(["No", " No", "no"])

    def _first_tokens(self, words: list[str]) -> list[int]:
        return sorted({self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words})

    def encode(self, prompt: str, response: str) -> list[int]:
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_QUESTION.format(response=response)},
        ]
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _p_yes(self, logits: torch.Tensor) -> list[float]:
        logp = torch.log_softmax(logits.float(), dim=-1)
        yes = torch.logsumexp(logp[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logp[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no).tolist()

    @torch.inference_mode()
    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        encoded = [self.encode(prompt, r) for r in responses]
        if self.use_prefix_cache:
            return self._p_yes(self.model.lm_head(self.prefix_cache.last_hidden(encoded)))
        scores: list[float] = []
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(encoded), self.batch_size):
            ids = encoded[start: start + self.batch_size]
            width = max(len(x) for x in ids)
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=1).logits[:, -1]
            scores.extend(self._p_yes(logits))
        return scores


def load_reward_model(name: str, device: str = "auto", dtype: str = "auto",
                      trust_remote_code: bool = False) -> RewardModel:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from eta import checkpoints

    spec: ModelSpec = resolve(name, "reward")
    check_remote_code(spec, trust_remote_code, "models.reward_model_trust_remote_code")
    path = local_path(spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    if torch_dtype == torch.float16 and not spec.float16_ok:
        log.warning("%s would overflow in float16: loading it in float32", spec.name)
        torch_dtype = torch.float32
    remote = spec.remote_code or trust_remote_code
    if not remote and spec.loader == "sequence-classification" and checkpoints.layout(path) == "armorm":
        from eta.checkpoints.armorm import load_armorm

        model, tokenizer = load_armorm(path, torch_dtype)
        return SequenceClassifierRM(model.to(dev), tokenizer, name=spec.name, stand_in=spec.stand_in)
    log.info("loading reward model %s (%s) from %s on %s", spec.name, spec.loader, path, dev)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
    if spec.loader == "generative-judge":
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=remote)
        return GenerativeJudgeRM(model.to(dev), tokenizer, name=spec.name, stand_in=spec.stand_in)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype, trust_remote_code=remote)
    return SequenceClassifierRM(model.to(dev), tokenizer, name=spec.name, stand_in=spec.stand_in)
