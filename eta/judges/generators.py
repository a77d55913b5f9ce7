"""Text generators the judges run on: a local Hugging Face chat model or an OpenAI-compatible API.

A generator is any ``Callable[[Sequence[Prompt]], Sequence[str | None]]``. A prompt is either a
string (one user turn) or a chat: a list of ``{"role", "content"}`` messages in the OpenAI format,
whose content may be a list of parts (``{"type": "text"}`` / ``{"type": "image_url"}``). A
generator returns one completion per prompt, or a :class:`NoReply` (empty of verdicts, holding
the reason) or ``None`` where no reply could be obtained: the judges count that item as invalid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Message = dict[str, Any]
Prompt = str | list[Message]
TextGenerator = Callable[[Sequence[Prompt]], Sequence[str | None]]

DEFAULT_JUDGE_MODEL = "gpt-4-turbo"  # the paper's GPT-4 judge
RETRY_STATUS_CODES = (408, 409, 429)  # and every 5xx


class NoReply(str):
    """The reply of a prompt that never got one: the text says why (``"no reply after 3 attempts:
    HTTP 503"``). It is composed here, never from the server's body, so it parses as no verdict;
    judges keep it as the item's raw reply, which records the reason per sample."""

    __slots__ = ()


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt as a chat: a string becomes one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def text_only(messages: list[Message]) -> tuple[list[Message], int]:
    """Messages with list contents as text, and how many images were dropped."""
    flat, dropped = [], 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts = [p["text"] for p in content if p.get("type") == "text"]
            dropped += sum(p.get("type") == "image_url" for p in content)
            message = {**message, "content": "\n".join(texts)}
        flat.append(message)
    return flat, dropped


# ---------------------------------------------------------------------------------------------
# Local Hugging Face chat model
# ---------------------------------------------------------------------------------------------


class HFChatGenerator:
    """Greedy decoding of a causal LM over chat-templated prompts, in left-padded batches.

    Prompts are formatted with the tokenizer's chat template; image parts are dropped (a text
    model cannot see them; a warning says how many). Batches are made of prompts of similar
    length and padded on the left by hand, so the tokenizer is never modified.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        *,
        add_generation_prompt: bool = True,
        add_special_tokens: bool = False,
        progress: bool = True,
        answer_prefix: str = "",
        shared_prefix_min_tokens: int = 32,
        choices: Sequence[str] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.add_generation_prompt = add_generation_prompt
        self.add_special_tokens = add_special_tokens
        self.progress = progress
        self.answer_prefix = answer_prefix  # the answer is made to start with this (and returned with it)
        self.shared_prefix_min_tokens = shared_prefix_min_tokens
        # With choices the reply is not generated: it is the answer prefix plus the likeliest
        # choice (sum of its tokens' log-probabilities), so a weak model always gives a verdict.
        self.choices = list(choices)
        self._choice_ids = [self._encode(c) for c in self.choices]
        if not all(self._choice_ids):
            raise ValueError(f"a choice encodes to no tokens: {self.choices}")

    def format(self, prompt: Prompt) -> str:
        """The prompt as the model will read it (chat template applied, images dropped)."""
        return self._format(prompt)[0]

    def _format(self, prompt: Prompt) -> tuple[str, int]:
        messages, dropped = text_only(as_messages(prompt))
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=self.add_generation_prompt)
        return text + self.answer_prefix, dropped

    def __call__(self, prompts: Sequence[Prompt]) -> list[str]:
        formatted = [self._format(p) for p in prompts]
        dropped = sum(n for _, n in formatted)
        if dropped:
            log.warning("HFChatGenerator: %d image part(s) dropped for a text-only model", dropped)
        ids = [self._encode(text) for text, _ in formatted]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[str] = [""] * len(ids)
        shared = self._shared_prefix(ids)
        run = self._choose if self.choices else self._generate
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="judge batches", disable=not self.progress, leave=False):
            chunk = order[start:start + self.batch_size]
            for i, text in zip(chunk, run([ids[i] for i in chunk], shared), strict=True):
                out[i] = self.answer_prefix + text
        return out

    def _shared_prefix(self, ids: list[list[int]]):
        """(length, KV cache) of the tokens every prompt starts with (a judge template's long
        preamble), computed once per call; None when too short to be worth it."""
        import torch

        if len(ids) < 2 or self.shared_prefix_min_tokens <= 0:
            return None
        first = ids[0]
        length = min(len(i) for i in ids) - 1  # every row keeps at least one token of its own
        for other in ids[1:]:
            length = next((k for k in range(length) if other[k] != first[k]), length)
        if length < self.shared_prefix_min_tokens:
            return None
        with torch.inference_mode():
            prefix = torch.tensor([first[:length]], dtype=torch.long, device=self.model.device)
            cache = self.model(input_ids=prefix, use_cache=True).past_key_values
        return length, cache

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"])

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        if pad is None:
            raise ValueError("tokenizer has neither a pad nor an eos token to pad with")
        return int(pad)

    def _rows(self, sequences: list[list[int]], shared):
        """Input ids, attention mask and cache of sequences laid out as ``prefix + padding + own
        tokens`` (the shared prefix's cache copied per row, never written)."""
        import copy

        import torch

        pad_id = self._pad_id()
        start, cache = 0, None
        if shared is not None:
            start, parent = shared
            cache = copy.copy(parent)
            cache.layers = [copy.copy(layer) for layer in parent.layers]
            cache.batch_repeat_interleave(len(sequences))  # new tensors: the shared cache is never written
        width = max(len(ids) for ids in sequences) - start
        input_ids = torch.full((len(sequences), start + width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), start + width), dtype=torch.long)
        for row, ids in enumerate(sequences):
            own = ids[start:]
            input_ids[row, :start] = torch.tensor(ids[:start], dtype=torch.long)
            attention_mask[row, :start] = 1
            if own:
                input_ids[row, start + width - len(own):] = torch.tensor(own, dtype=torch.long)
                attention_mask[row, start + width - len(own):] = 1
        return input_ids, attention_mask, cache, start

    def _choose(self, batch: list[list[int]], shared=None) -> list[str]:
        """The likeliest of ``self.choices`` after each prompt."""
        import torch

        options = self._choice_ids
        rows = [(b, c) for b in range(len(batch)) for c in range(len(options))]
        input_ids, mask, cache, start = self._rows([batch[b] + options[c] for b, c in rows], shared)
        keep = max(len(o) for o in options) + 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = self.model.device
        extra = {"cache": cache, "use_cache": True} if cache is not None else {}
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids[:, start:].to(device), attention_mask=mask.to(device),
                                position_ids=positions[:, start:].to(device), logits_to_keep=keep,
                                **extra).logits.float().log_softmax(-1)
        totals = torch.empty(len(batch), len(options))
        for r, (b, c) in enumerate(rows):
            n = len(options[c])  # the choice's tokens end the row; each is predicted one position earlier
            targets = torch.tensor(options[c], device=logits.device)
            totals[b, c] = logits[r, keep - 1 - n: keep - 1].gather(-1, targets[:, None]).sum()
        return [self.choices[int(i)] for i in totals.argmax(-1)]

    def _generate(self, batch: list[list[int]], shared=None) -> list[str]:
        """Greedy completions of one batch. With a shared prefix (length, cache) the rows read
        ``prefix + padding + own suffix`` (padding masked in the middle) and the prefix's cache
        is copied for the batch instead of being recomputed for every row."""
        import torch

        pad_id = self._pad_id()
        input_ids, attention_mask, cache, _ = self._rows(batch, shared)
        extra = {"cache": cache} if cache is not None else {}
        width = input_ids.shape[1]
        device = self.model.device
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                **extra,
            )
        return self.tokenizer.batch_decode(generated[:, width:].cpu(), skip_special_tokens=True)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible chat endpoint
# ---------------------------------------------------------------------------------------------


class JudgeRequestError(RuntimeError):
    """A request to the judge endpoint failed for good (bad request, authentication, ...)."""


class _Secret:
    """A string that never shows itself in repr() or str()."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class OpenAIChatGenerator:
    """Chat completions from any OpenAI-compatible endpoint, one request per prompt.

    ``model``, ``base_url`` and ``api_key`` come from the arguments or the environment
    (``ETA_JUDGE_MODEL``, ``ETA_JUDGE_BASE_URL``, ``OPENAI_API_KEY``). Timeouts, connection
    errors, 408, 409, 429, 5xx and malformed 200 replies (a body that is not JSON, HTML from a
    proxy, JSON without a chat completion) are tried ``max_attempts`` times in all, waiting
    ``backoff_s * 2**attempt`` (at most ``max_backoff_s``) in between; when every attempt failed
    the prompt's reply is a :class:`NoReply` naming the last failure. Against a hung endpoint a
    prompt costs at most about ``max_attempts * timeout_s`` plus the waits (profile keys
    ``judges.request_timeout_s`` and ``judges.request_attempts``). Other errors (400, 401, ...)
    raise :class:`JudgeRequestError`.
    The API key never appears in repr(), logs or raised errors.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        sleep: Callable[[float], None] = time.sleep,
        progress: bool = True,
    ) -> None:
        import openai

        if max_attempts < 1 or timeout_s <= 0:
            raise ValueError(f"max_attempts must be >= 1 and timeout_s > 0, got {max_attempts}, {timeout_s}")
        self.model = model or os.environ.get("ETA_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
        self.base_url = base_url or os.environ.get("ETA_JUDGE_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError("no API key for the judge: pass api_key or set OPENAI_API_KEY")
        self._api_key = _Secret(key)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._sleep = sleep
        self.progress = progress
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=timeout_s,
                                     max_retries=0)

    def __repr__(self) -> str:
        return (f"OpenAIChatGenerator(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key='***', timeout_s={self.timeout_s}, max_attempts={self.max_attempts})")

    __str__ = __repr__

    def __call__(self, prompts: Sequence[Prompt]) -> list[str | None]:
        bar = tqdm(prompts, desc="judge requests", disable=not self.progress, leave=False)
        return [self.complete(as_messages(p)) for p in bar]

    def complete(self, messages: list[Message]) -> str:
        """One chat completion with bounded retries; a :class:`NoReply` when every attempt failed."""
        failure = reason = ""
        for attempt in range(self.max_attempts):
            try:
                return self._request(messages)
            except _Retryable as exc:
                failure, reason = str(exc), exc.reason
            if attempt + 1 < self.max_attempts:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                log.info("judge request failed (%s); retry %d/%d in %.3g s", failure,
                         attempt + 1, self.max_attempts - 1, delay)
                self._sleep(delay)
        log.warning("judge request gave up after %d attempts: %s", self.max_attempts, failure)
        return NoReply(f"no reply after {self.max_attempts} attempts: {reason}")

    def _request(self, messages: list[Message]) -> str:
        """One attempt. Raises _Retryable or JudgeRequestError, with the key redacted."""
        import openai

        retryable = fatal = None
        reason = ""
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=self.temperature,
                max_tokens=self.max_tokens)
        except openai.APITimeoutError as exc:
            retryable, reason = self._describe(exc), f"timeout after {self.timeout_s:g} s"
        except openai.APIConnectionError as exc:
            retryable, reason = self._describe(exc), "connection error"
        except openai.APIStatusError as exc:
            if exc.status_code in RETRY_STATUS_CODES or exc.status_code >= 500:
                retryable, reason = self._describe(exc), f"HTTP {exc.status_code}"
            else:
                fatal = self._describe(exc)
        except ValueError as exc:  # a 200 whose body claims JSON but is not
            retryable, reason = self._describe(exc), "malformed reply: the body is not JSON"
        except openai.OpenAIError as exc:
            fatal = self._describe(exc)
        # Raised outside the except blocks so the original error (which holds the request and
        # its headers) is not chained to ours.
        if retryable is not None:
            raise _Retryable(retryable, reason)
        if fatal is not None:
            where = self.base_url or "the default endpoint"
            raise JudgeRequestError(f"judge request to {where} failed: {fatal}")
        content, problem = reply_content(response)
        if problem:
            raise _Retryable(f"malformed reply: {problem}", f"malformed reply: {problem}")
        return content

    def _describe(self, exc: Exception) -> str:
        """Error name and message with the API key blanked out."""
        return f"{type(exc).__name__}: {str(exc).replace(self._api_key.reveal(), '***')}"


class _Retryable(Exception):
    """A failed attempt worth retrying: a redacted message for logs, and a short reason of our
    own words (kept per sample) that never quotes the server."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def reply_content(response: Any) -> tuple[str, str]:
    """(the reply's text, "") of a chat completion, or ("", what is wrong) when the endpoint's 200
    was not one (the client hands back a bare string for a non-JSON body such as a proxy's HTML)."""
    if isinstance(response, str):
        kind = "HTML" if response.lstrip()[:1] == "<" else "text"
        return "", f"the body is {kind}, not JSON ({len(response)} characters)"
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return "", f"no choices in the reply ({type(response).__name__})"
    message = getattr(choices[0], "message", None)
    if message is None:
        return "", "the first choice has no message"
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        return "", f"the message content is {type(content).__name__}, not text"
    return content or "", ""
