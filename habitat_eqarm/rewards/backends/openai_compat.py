"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint that takes images.

GPT-4o, Gemini or Claude behind compatible gateways, ``vllm serve`` of a VLM, and our own
``eqarm serve``. Frames travel as base64 data-URL images in the messages, in the order of the
prompt's placeholders (:mod:`.chat_format`).

- The key is read from the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``)
  when the backend is built and is sent only in the ``Authorization`` header. Reprs, logs and
  error messages never show it (error texts from the endpoint are scrubbed of it too).
- Each call retries on 408, 429, 5xx and connection errors with exponential backoff and jitter
  (honouring ``Retry-After``); when retries run out, :class:`EndpointError` names the endpoint
  and the last status. Other statuses (400, 401, 404, ...) fail at once.
- The requests of one :meth:`~OpenAIBackend.generate` call run concurrently, at most
  ``max_concurrency`` at a time.
- K samples come from one call with ``n`` (``k_mode="n"``; more calls follow if a gateway
  returns fewer choices) or from K calls of one sample each (``k_mode="repeat"``, seed + i).
  Greedy requests ask for one sample, which :meth:`RewardBackend.generate` repeats K times.
- Every sample is cached on disk under (model, prompt id, inputs hash, sampling parameters,
  sample index) as soon as it arrives, so a re-run, or a run resumed after a crash, asks only
  for what is missing. With ``seed=None`` a re-run therefore returns the cached samples;
  pass ``cache=False`` for fresh ones.

Client: plain ``httpx`` rather than the ``openai`` package. We need our own retry policy,
per-sample caching and ``n``-or-repeat sampling; with the SDK we would switch its retries off
and unwrap its typed objects again, so it would add a large dependency for one JSON POST.
``httpx`` gives timeouts and a thread-safe connection pool, which is all this needs.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from habitat_eqarm.data.io import cache_dir as default_cache_dir
from habitat_eqarm.rewards.backends.base import (
    MAX_PIXELS,
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
    register_backend,
)
from habitat_eqarm.rewards.backends.chat_format import encode_frame, to_openai_messages
from habitat_eqarm.rewards.backends.response_cache import ResponseCache, inputs_digest

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


def is_retryable(status: int) -> bool:
    """Statuses worth another try: request timeout, rate limit, every server-side error."""
    return status in (408, 429) or status >= 500


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment (where keys sometimes hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class EndpointError(RuntimeError):
    """An endpoint failed a request for good; the message names the endpoint and its answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Call:
    """One HTTP call: ``n`` texts for the sample indices ``samples`` of request ``request``."""

    request: int
    samples: list[int]
    n: int
    seed: int | None


class _LazyMessages:
    """A request's OpenAI messages, encoded on first use by whichever thread needs them."""

    def __init__(self, request: GenerationRequest, encode: Any) -> None:
        self.request, self.encode = request, encode
        self.value: list[dict[str, Any]] | None = None
        self.lock = threading.Lock()

    def get(self) -> list[dict[str, Any]]:
        with self.lock:
            if self.value is None:
                self.value = to_openai_messages(self.request, self.encode)
            return self.value


def _offset(seed: int | None, i: int) -> int | None:
    return None if seed is None else seed + i


@register_backend("openai")
class OpenAIBackend(RewardBackend):
    """Sample from an OpenAI-compatible ``/chat/completions`` endpoint (see module docstring).

    ``model``: the model name the endpoint serves. ``base_url``: up to ``/v1``. Timeouts and
    backoff are seconds; ``max_retries`` counts retries after the first try. ``image_format``
    (``jpeg`` | ``png``), ``jpeg_quality`` and ``max_pixels`` (per frame, shrunk before
    sending) say how frames are encoded. ``extra_body`` is merged into every request body.
    ``cache_dir`` defaults to ``$EQARM_CACHE/responses``.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_concurrency: int = 8,
        k_mode: str = "n",
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        image_format: str = "jpeg",
        jpeg_quality: int = 90,
        max_pixels: int | None = MAX_PIXELS,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if k_mode not in ("n", "repeat"):
            raise ValueError(f"k_mode must be 'n' or 'repeat', got {k_mode!r}")
        self.model_id = str(model)
        self.endpoint = redact_url(base_url.rstrip("/") + "/chat/completions")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self._secret = os.environ.get(api_key_env) or None
        if self._secret is None:
            logger.info("$%s is not set: sending no Authorization header", api_key_env)
        headers = {"Authorization": f"Bearer {self._secret}"} if self._secret else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )
        self.max_retries = max(0, int(max_retries))
        self.backoff = (float(backoff_base), float(backoff_max))
        self.max_concurrency = max(1, int(max_concurrency))
        self.k_mode = k_mode
        self.encoding = {
            "image_format": image_format,
            "quality": jpeg_quality,
            "max_pixels": max_pixels,
        }
        encode_frame(np.zeros((2, 2, 3), np.uint8), image_format)  # a bad format fails now
        self.extra_body = dict(extra_body or {})
        if cache:
            root = Path(cache_dir) if cache_dir else default_cache_dir() / "responses"
            self.cache: ResponseCache | None = ResponseCache(root)
        else:
            self.cache = None
        # http_requests, retries, cache_hits, cache_misses (entries looked up: one per sample,
        # so one per greedy request whatever its K)
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._rng = random.Random()

    def __repr__(self) -> str:
        key = "set" if self._secret else "unset"
        return (
            f"OpenAIBackend(model={self.model_id!r}, endpoint={self.endpoint!r}, "
            f"key=${self.api_key_env} ({key}), cache={self.cache!r})"
        )

    # -- generate -------------------------------------------------------------------------------

    def sample(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """K texts per request: cached samples first, the rest from concurrent HTTP calls.

        Raises :class:`EndpointError` after every call has finished if any failed for good;
        the samples that did arrive are cached by then.
        """
        t0 = time.perf_counter()
        texts: list[list[str | None]] = []
        keys: list[list[dict[str, Any]]] = []
        calls: list[_Call] = []
        for r, request in enumerate(requests):
            if self.cache is None:  # nothing to look up or store: no need to hash the frames
                keys.append([])
                texts.append([None] * params.k)
            else:
                digest = inputs_digest(
                    request.messages, request.frames, as_video=request.as_video, **self.encoding
                )
                keys.append([self.cache_key(request, digest, params, i) for i in range(params.k)])
                texts.append([self.cache.get(key) for key in keys[-1]])
            missing = [i for i, text in enumerate(texts[-1]) if text is None]
            self._count(cache_hits=params.k - len(missing), cache_misses=len(missing))
            calls += self.plan_calls(r, missing, params)
        errors = self._run_calls(requests, calls, params, texts, keys)
        if errors:
            raise errors[0]
        per_request = (time.perf_counter() - t0) / max(1, len(requests))
        timings = {"generate_s": per_request, "batch_size": float(len(requests))}
        return [GenerationResult([str(x) for x in t], dict(timings)) for t in texts]

    def cache_key(
        self, request: GenerationRequest, digest: str, params: SamplingParams, sample: int
    ) -> dict[str, Any]:
        """What determines one sample: model, prompt id, inputs, sampling, sample index."""
        return {
            "v": CACHE_VERSION,
            "model": self.model_id,
            "prompt_id": request.prompt_id,
            "inputs": digest,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "min_new_tokens": 0,  # no longer a sampling option; kept so older caches still hit
            "seed": params.seed,
            "sample": 0 if params.temperature <= 0 else sample,  # greedy: one text for all
            "k_mode": self.k_mode,
            "extra_body": self.extra_body,
        }

    def plan_calls(self, request: int, missing: list[int], params: SamplingParams) -> list[_Call]:
        """The HTTP calls that fill the ``missing`` sample indices of one request."""
        if not missing:
            return []
        if self.k_mode == "n":
            return [_Call(request, missing, len(missing), _offset(params.seed, missing[0]))]
        return [_Call(request, [i], 1, _offset(params.seed, i)) for i in missing]

    def _run_calls(
        self,
        requests: Sequence[GenerationRequest],
        calls: list[_Call],
        params: SamplingParams,
        texts: list[list[str | None]],
        keys: list[list[dict[str, Any]]],
    ) -> list[EndpointError]:
        if not calls:
            return []
        encode = partial(
            encode_frame,
            image_format=self.encoding["image_format"],
            quality=self.encoding["quality"],
            max_pixels=self.encoding["max_pixels"],
        )
        messages = {c.request: _LazyMessages(requests[c.request], encode) for c in calls}
        errors: list[EndpointError] = []
        with ThreadPoolExecutor(min(self.max_concurrency, len(calls))) as pool:
            futures = [pool.submit(self._call, messages[c.request], c, params) for c in calls]
            for call, future in zip(calls, futures, strict=True):
                try:
                    got = future.result()
                except EndpointError as err:
                    errors.append(err)
                    continue
                for i, text in zip(call.samples, got, strict=True):
                    texts[call.request][i] = text
                    if self.cache:
                        self.cache.put(keys[call.request][i], text)
        return errors

    def _call(self, lazy: _LazyMessages, call: _Call, params: SamplingParams) -> list[str]:
        """The ``call.n`` texts of one planned call."""
        messages = lazy.get()  # encoded on a worker thread, once per request
        got: list[str] = []
        while len(got) < call.n:  # a gateway may ignore `n`: ask again for the rest
            body = self.request_body(
                messages, call.n - len(got), _offset(call.seed, len(got)), params
            )
            choices = self.parse_choices(self.post(body))
            if not choices:
                raise EndpointError(f"{self.endpoint}: the response holds no choices")
            got += choices
        return got[: call.n]

    def request_body(
        self, messages: list[dict[str, Any]], n: int, seed: int | None, params: SamplingParams
    ) -> dict[str, Any]:
        """The JSON body of one ``/chat/completions`` request."""
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "n": n,
            "temperature": max(0.0, params.temperature),
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        return {**body, **self.extra_body}

    def parse_choices(self, data: Any) -> list[str]:
        """The texts of a response's ``choices``, in index order."""
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            return [_content_text(c["message"].get("content")) for c in choices]
        except (KeyError, TypeError, AttributeError):
            raise EndpointError(
                f"{self.endpoint}: unexpected response shape (no choices[].message)"
            ) from None

    # -- HTTP -----------------------------------------------------------------------------------

    def post(self, body: dict[str, Any]) -> Any:
        """POST ``body``; retry on 408/429/5xx and connection errors; the decoded JSON."""
        last, status = "no attempt", None
        retry_after: float | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff_delay(attempt, retry_after)
                logger.warning(
                    "%s: %s; retry %d/%d in %.2fs",
                    self.endpoint,
                    last,
                    attempt,
                    self.max_retries,
                    delay,
                )
                self._count(retries=1)
                time.sleep(delay)
            self._count(http_requests=1)
            try:
                response = self._client.post(self._url, json=body)
            except httpx.TransportError as err:
                last = self._scrub(f"connection error ({type(err).__name__}: {err})")
                status, retry_after = None, None
                continue
            if response.status_code == 200:
                return self._json(response)
            status = response.status_code
            last = f"HTTP {status}{self._excerpt(response)}"
            if not is_retryable(status):
                raise EndpointError(f"{self.endpoint}: {last}", status=status)
            retry_after = _retry_after(response)
        raise EndpointError(
            f"{self.endpoint}: giving up after {self.max_retries + 1} attempts; last: {last}",
            status=status,
        )

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before retry ``attempt`` (1, 2, ...): exponential, capped, half jittered.

        A server's ``Retry-After`` raises the delay (capped at ``backoff_max`` too).
        """
        base, cap = self.backoff
        delay = min(cap, base * 2 ** (attempt - 1))
        with self._lock:
            delay = delay / 2 + self._rng.uniform(0, delay / 2)
        return min(cap, max(delay, retry_after or 0.0))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise EndpointError(f"{self.endpoint}: HTTP 200 with a body that is not JSON") from None

    def _excerpt(self, response: httpx.Response) -> str:
        """The error message the endpoint gave, shortened and scrubbed of the key."""
        try:
            data = response.json()
            message = data["error"]["message"] if isinstance(data.get("error"), dict) else data
        except (ValueError, AttributeError, KeyError, TypeError):
            message = response.text
        message = " ".join(str(message).split())[:200]
        return f" ({self._scrub(message)})" if message else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _count(self, **increments: int) -> None:
        with self._lock:
            self.stats.update(increments)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts; None counts as ""."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None  # absent, or an HTTP date: our own backoff decides
