""":class:`RemoteRM`: the one async client of ``eqarm serve``'s ``/v1/score`` the adapters share.

It is a picklable bundle of settings (URL, token variable, sampling options): frameworks that
ship reward functions to worker processes (TRL under ``accelerate``, verl's reward workers,
Ray actors) can copy it. The HTTP connection pool is made on first use in each event loop and
never pickled. The token is read from an environment variable at call time, so it is never
part of a pickle or a config file either.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from habitat_eqarm.data.episode_ref import EpisodeRef
from habitat_eqarm.rewards.backends.openai_compat import EndpointError, is_retryable, redact_url
from habitat_eqarm.rewards.config import SamplingOptions, VoteOptions, field_names
from habitat_eqarm.rewards.ref_instances import instance_from_ref

#: Where :class:`RemoteRM` and the verl adapter look for the server when given no URL.
URL_ENV = "EQARM_RM_URL"
TOKEN_ENV = "EQARM_SERVE_TOKEN"


@dataclass
class RemoteRM(VoteOptions, SamplingOptions):
    """Score answers with a running ``eqarm serve`` (``base_url`` up to ``/v1``).

    The sampling and vote options are ``ScoringConfig``'s sections, the ones ``/v1/score``
    takes (keyword-only; ``k`` defaults to 4 here). ``seed`` (default 0) makes repeated
    requests hit the server's memo; None asks for fresh samples every time.
    ``no_answer_reward`` is what a response gets when it has no readable answer (it is then
    not sent to the server) or none of the K samples gave a score.
    Rewards are the aggregate score / 10 (0..1).
    """

    base_url: str | None = None
    token_env: str | None = TOKEN_ENV
    k: int = field(default=4, kw_only=True)
    seed: int | None = field(default=0, kw_only=True)
    no_answer_reward: float | None = 0.0
    timeout_s: float = 600.0
    retries: int = 3
    _clients: weakref.WeakKeyDictionary = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def __post_init__(self) -> None:
        url = self.base_url or os.environ.get(URL_ENV)
        if not url:
            raise ValueError(f"RemoteRM needs base_url (or ${URL_ENV}), e.g. http://host:8000/v1")
        self.base_url = url.rstrip("/")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clients": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _clients=weakref.WeakKeyDictionary())

    @property
    def headers(self) -> dict[str, str]:
        """The bearer token from ``token_env``, if that variable is set."""
        token = os.environ.get(self.token_env) if self.token_env else None
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def rewards(
        self, refs: Sequence[EpisodeRef], responses: Sequence[str]
    ) -> list[dict[str, Any]]:
        """One ``{"reward", "score", "spread", "cached", "answer_found"}`` per response.

        Responses about the same episodes go to the server in one request.
        """
        if len(refs) != len(responses):
            raise ValueError(f"{len(refs)} references for {len(responses)} responses")
        instances = [
            instance_from_ref(ref, text, f"remote-{i}")
            for i, (ref, text) in enumerate(zip(refs, responses, strict=True))
        ]
        asked = [i for i, inst in enumerate(instances) if inst.predicted_answer]
        judged = await self.score([instances[i].to_dict() for i in asked], [refs[i] for i in asked])
        out = [
            {"reward": self.no_answer_reward, "score": None, "spread": None, "cached": False}
            for _ in instances
        ]
        for i, judgement in zip(asked, judged, strict=True):
            score = judgement["score"]
            reward = self.no_answer_reward if score is None else float(score) / 10.0
            out[i] = {"reward": reward, **{k: judgement[k] for k in ("score", "spread", "cached")}}
        for i, row in enumerate(out):
            row["answer_found"] = i in asked
        return out

    async def score(
        self, instances: list[dict[str, Any]], refs: Sequence[EpisodeRef | None] = ()
    ) -> list[dict[str, Any]]:
        """``/v1/score``'s judgements of ``instances`` (``refs`` give their frames by hash)."""
        if not instances:
            return []
        body: dict[str, Any] = {
            "instances": instances,
            **{name: getattr(self, name) for name in field_names(VoteOptions, SamplingOptions)},
        }
        hashes = [ref.frames_hash if ref else None for ref in refs]
        if any(hashes):
            body["frames_hash"] = hashes
        return (await self.post("score", body))["judgements"]

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``base_url/path``; retry 408/429/5xx and dropped connections."""
        url = f"{self.base_url}/{path}"
        client = self._client()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await client.post(url, json=body, headers=self.headers)
            except httpx.TransportError as err:
                if last:
                    raise EndpointError(f"{redact_url(url)}: {type(err).__name__}: {err}") from None
            else:
                if response.status_code == 200:
                    return response.json()
                if last or not is_retryable(response.status_code):
                    raise EndpointError(
                        f"{redact_url(url)}: HTTP {response.status_code}: {response.text[:500]}",
                        response.status_code,
                    )
            await asyncio.sleep(min(8.0, 0.25 * 2**attempt))
        raise AssertionError("unreachable")  # the last attempt returned or raised

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()  # a pool belongs to the loop it was opened in
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(timeout=self.timeout_s)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close this event loop's connection pool."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
