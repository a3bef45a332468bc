"""`LLMDescriber`: ask any OpenAI-compatible chat endpoint to describe a head.

The prompt follows the spirit of the paper's: it lists the salient inputs with their
mappings as ``"s: t1, t2, t3, t4, t5"``, explains the task with an example (a word to
its first letter) and asks for a JSON object with the keys ``reasoning``,
``input_strings`` and ``observed_pattern`` (or "Unclear").

Robustness: answers are parsed strictly (one JSON object, required keys, string
values); an invalid answer gets exactly one repair request. Transport errors
(connection refused, timeouts, rate limits, 5xx) are retried with exponential backoff;
other HTTP errors fail at once. Every answer is cached on disk under
``$HEADMAPS_CACHE/llm/`` keyed by a hash of (model, messages, sampling settings), so a
re-run costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import HeadmapsError
from ..io import write_json
from ..salient import SalientOperations
from ..salient.tokens import visible
from .base import Description, unclear

logger = logging.getLogger(__name__)

#: Keys the answer must hold (matched after lower-casing, spaces/hyphens -> ``_``).
REQUIRED_KEYS = ("reasoning", "input_strings", "observed_pattern")

SYSTEM_PROMPT = "You find patterns in short lists of strings and answer in JSON."

TASK_PROMPT = """\
Below are the input strings that one component of a language model responds to most \
strongly. Each line gives one input followed by the strings the component maps it to, in \
the form "s: t1, t2, t3, t4, t5". Every string is short: usually a word or a piece of a word.

Your task: describe briefly and simply what the input strings have in common, and the \
function that turns each input into its outputs. Look for patterns of meaning (a topic, a \
category, a fact about the input) and of form (copying, letters, prefixes, suffixes). For \
example, the inputs "storm", "rain" and "snow" are all about weather, and the mapping \
"apple: a, A, ap" takes a word to its first letter.

If you see no clear pattern, write "Unclear".

Answer with one JSON object and nothing else, with exactly these keys:
"reasoning": a short explanation of what you noticed,
"input_strings": one sentence describing the input strings, or "Unclear",
"observed_pattern": one sentence describing the clearest pattern in the mappings, or "Unclear".

Mappings:
{mappings}
"""

REPAIR_PROMPT = """\
Your answer could not be used: {error}. Reply again with only one JSON object with the \
keys "reasoning", "input_strings" and "observed_pattern" (string values), and nothing \
else."""

#: Sampling temperature of the extra candidate descriptions (``describe(ops, sample=i)``).
CANDIDATE_TEMPERATURE = 0.8

_UNCLEAR_WORDS = {"", "unclear", "none", "n/a", "no clear pattern", "no pattern"}


class LLMError(HeadmapsError):
    """The LLM endpoint could not be reached or refused the request."""


class AnswerError(ValueError):
    """The LLM's answer is not the JSON object asked for."""


def format_mappings(ops: SalientOperations) -> str:
    """The mappings as prompt lines ``"s: t1, t2, ..."`` (tokens stripped of spaces)."""

    def show(s: str) -> str:
        return s.strip() or visible(s)

    return "\n".join(f"{show(s)}: {', '.join(show(t) for t in ts)}" for s, ts in ops.mappings)


def build_messages(ops: SalientOperations) -> list[dict[str, str]]:
    """Chat messages (system + user) asking for a description of ``ops``."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": TASK_PROMPT.format(mappings=format_mappings(ops))}]


def _norm_key(k: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(k).strip().lower())


def answer_body(text: str | None) -> str:
    """An answer's text, stripped and taken out of a Markdown code fence if it has one.

    Raises:
        AnswerError: the answer is empty.
    """
    if not text or not text.strip():
        raise AnswerError("the answer is empty")
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.S)
    return fence.group(1).strip() if fence else s


def parse_answer(text: str | None) -> dict[str, str]:
    """Parse an answer into ``{"reasoning", "input_strings", "observed_pattern"}``.

    Accepts one JSON object, optionally inside a Markdown code fence or with prose
    around it; keys may be written like the paper's ("Observed pattern"). Values must
    be strings (a list of strings for ``input_strings`` is joined).

    Raises:
        AnswerError: no object, invalid JSON, a missing key or a non-string value.
    """
    s = answer_body(text)
    start, end = s.find("{"), s.rfind("}")
    if start < 0 or end < start:
        raise AnswerError("the answer holds no JSON object")
    try:
        obj = json.loads(s[start:end + 1])
    except json.JSONDecodeError as err:
        raise AnswerError(f"invalid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(obj, dict):
        raise AnswerError("the JSON value is not an object")
    found = {_norm_key(k): v for k, v in obj.items()}
    missing = [k for k in REQUIRED_KEYS if k not in found]
    if missing:
        raise AnswerError(f"missing key(s) {', '.join(missing)}")
    out = {}
    for k in REQUIRED_KEYS:
        v = found[k]
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            v = ", ".join(v)
        if not isinstance(v, str):
            raise AnswerError(f"the value of {k!r} is not a string")
        out[k] = v.strip()
    return out


def is_unclear(pattern: str) -> bool:
    """Whether an ``observed_pattern`` says there is no clear pattern."""
    p = pattern.strip().strip(".\"'").strip().lower()
    return p in _UNCLEAR_WORDS or p.startswith("unclear")


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 of (model, messages, sampling parameters)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """``$HEADMAPS_CACHE/llm`` (``~/.cache/headmaps/llm`` by default)."""
    from ..models.cache import cache_root

    return cache_root() / "llm"


class LLMDescriber:
    """Describe heads with an OpenAI-compatible chat model.

    Args:
        model: the chat model name the endpoint knows.
        base_url: endpoint, e.g. ``http://127.0.0.1:8000/v1`` (default: OpenAI's).
        api_key: key; default ``$OPENAI_API_KEY``; a dummy is used for a ``base_url``
            without a key (local servers do not check it).
        timeout: seconds per request.
        max_retries: retries after a transport error (so up to ``max_retries + 1`` tries).
        backoff: first wait in seconds; doubled after each failure, capped at ``max_backoff``.
        max_backoff: the longest wait in seconds between two tries.
        temperature: sampling temperature (part of the cache key).
        max_tokens: the longest answer, in tokens (part of the cache key).
        json_mode: ask for ``response_format={"type": "json_object"}`` (servers that
            support it constrain the answer to JSON).
        cache: keep answers on disk.
        cache_dir: where (default ``$HEADMAPS_CACHE/llm``).
        on_error: ``"raise"`` (default) or ``"unclear"``: what a transport failure after
            all retries does in :meth:`describe`.
        client: an ``openai.OpenAI`` client to use instead of building one.

    Attributes:
        requests: HTTP requests sent (retries included); cache_hits: answers from disk.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None,
                 api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0,
                 max_backoff: float = 30.0,
                 temperature: float = 0.0, max_tokens: int = 512, json_mode: bool = False,
                 cache: bool = True,
                 cache_dir: str | os.PathLike | None = None, on_error: str = "raise",
                 client: Any = None):
        if on_error not in ("raise", "unclear"):
            raise HeadmapsError(f"on_error must be 'raise' or 'unclear', got {on_error!r}")
        self.model = model
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = temperature
        self.max_tokens = int(max_tokens)
        self.json_mode = json_mode
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.on_error = on_error
        self.requests = 0
        self.cache_hits = 0
        self._count = threading.Lock()  # describe/scoring may call from several threads
        self._client = client
        self._api_key = api_key

    @property
    def name(self) -> str:
        """``llm:<model>``."""
        return f"llm:{self.model}"

    @property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client (built on first use, SDK retries off: ours apply)."""
        if self._client is None:
            import openai

            key = self._api_key or os.environ.get("OPENAI_API_KEY")
            if not key:
                if self.base_url is None:
                    raise LLMError("no API key: set OPENAI_API_KEY or pass api_key (or a base_url "
                                   "of a local server)")
                key = "not-needed"
            self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout,
                                         max_retries=0)
        return self._client

    def _params(self, sample: int = 0) -> dict[str, Any]:
        p: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if sample:  # another candidate answer: sampled, with its own seed (and cache entry)
            p["temperature"] = max(self.temperature, CANDIDATE_TEMPERATURE)
            p["seed"] = int(sample)
        if self.json_mode:
            p["response_format"] = {"type": "json_object"}
        return p

    # ---- cache ---------------------------------------------------------------------
    def _cache_file(self, k: str) -> Path:
        return self.cache_dir / k[:2] / f"{k}.json"

    def _cached(self, k: str) -> str | None:
        if not self.cache:
            return None
        f = self._cache_file(k)
        try:
            return json.loads(f.read_text(encoding="utf-8"))["answer"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("ignoring unreadable LLM cache entry %s: %s", f, err)
            return None

    # ---- requests ------------------------------------------------------------------
    def complete(self, messages: list[dict[str, str]], *, sample: int = 0) -> str:
        """The model's answer to ``messages`` (from the cache when there).

        ``sample > 0`` asks for another candidate answer: sampled at temperature
        :data:`CANDIDATE_TEMPERATURE` or more, with ``seed=sample``.

        Raises:
            LLMError: the endpoint is unreachable after all retries, or refused the request.
        """
        params = self._params(sample)
        k = cache_key(self.model, messages, params)
        hit = self._cached(k)
        if hit is not None:
            with self._count:
                self.cache_hits += 1
            return hit
        answer = self._request(messages, params)
        if self.cache:
            write_json(self._cache_file(k),
                       {"model": self.model, "base_url": self.base_url, "params": params,
                                             "messages": messages, "answer": answer,
                                             "time": time.time()})
        return answer

    def _request(self, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        import openai

        retryable = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
        where = self.base_url or "the OpenAI API"
        wait = self.backoff
        for attempt in range(self.max_retries + 1):
            with self._count:
                self.requests += 1
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=messages,
                                                           **params)
                return resp.choices[0].message.content or ""
            except retryable as err:
                if attempt == self.max_retries:
                    raise LLMError(f"cannot get an answer from {where} after {attempt + 1} tries: "
                                   f"{type(err).__name__}: {err}") from err
                logger.warning("LLM request failed (%s: %s); retrying in %.2f s",
                               type(err).__name__, err, wait)
                time.sleep(wait)
                wait = min(wait * 2, self.max_backoff)
            except openai.APIStatusError as err:
                raise LLMError(f"{where} refused the request (HTTP {err.status_code}): "
                               f"{err.message}") from err
        raise AssertionError("unreachable")

    # ---- describing ----------------------------------------------------------------
    def candidates(self, ops: SalientOperations, n_cands: int = 3) -> list[Description]:
        """Up to ``n_cands`` different descriptions of one head.

        :meth:`describe`'s answer first, then sampled ones (``sample=1, 2, ...``);
        repeated texts are dropped.
        """
        out: list[Description] = []
        for i in range(max(1, n_cands)):
            d = self.describe(ops, sample=i)
            if all(d.text != o.text for o in out):
                out.append(d)
        return out

    def describe(self, ops: SalientOperations, sample: int = 0) -> Description:
        """Describe one head (``sample > 0``: another, sampled answer; see :meth:`complete`).

        An answer that is still invalid after one repair request gives an "Unclear"
        description with ``category="error"`` and the reason in ``error``.
        """
        messages = build_messages(ops)
        try:
            answer = self.complete(messages, sample=sample)
            try:
                parsed = parse_answer(answer)
            except AnswerError as err:
                logger.info("invalid answer for head %s (%s); asking once to repair it", ops.name,
                            err)
                repair = [*messages, {"role": "assistant", "content": answer},
                          {"role": "user", "content": REPAIR_PROMPT.format(error=err)}]
                second = self.complete(repair, sample=sample)
                try:
                    parsed = parse_answer(second)
                except AnswerError as err2:
                    return unclear(ops, self.name, error=f"invalid answer after one repair: {err2}",
                                   raw={"answer": answer[:4000], "repair_answer": second[:4000]})
        except LLMError as err:
            if self.on_error == "raise":
                raise
            return unclear(ops, self.name, error=str(err))
        pattern = parsed["observed_pattern"]
        inputs = "" if is_unclear(parsed["input_strings"]) else parsed["input_strings"]
        if is_unclear(pattern):
            return unclear(ops, self.name, input_strings=inputs, raw=parsed)
        return Description(ops.layer, ops.head, pattern, "llm", evidence=[], confidence=1.0,
                           unclear=False,
                           describer=self.name, input_strings=inputs, raw=parsed)
