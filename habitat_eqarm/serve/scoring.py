"""The scoring routes of ``eqarm serve``: ``/v1/score`` and OpenRLHF's remote-RM format.

Both judge :class:`EQAInstance` objects with the served :class:`EQARewardModel`, its requests
through the server's batchers, and answer each judgement with its K-vote ``spread``
(:func:`score_spread`: 0 when the K samples agree) and whether it came from the memo
(``cached``; see :mod:`habitat_eqarm.serve.memo`).

Where an instance's frames come from, first that applies: inline data URLs (``frames``);
``frames_hash`` (keyframes put in the episode store by content); ``episode_path`` under a
data root; ``episode_id`` in the episode store (``--episode_store DIR``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.episode_cache import EpisodeCache
from habitat_eqarm.data.episode_ref import EpisodeRef, EpisodeRefError, find_ref
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    GenerationResult,
    RewardBackend,
    SamplingParams,
)
from habitat_eqarm.rewards.backends.chat_format import decode_image_url
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.parsing import aggregate_scores
from habitat_eqarm.rewards.ref_instances import instance_from_ref
from habitat_eqarm.serve.memo import memo_key
from habitat_eqarm.serve.schemas import OpenRLHFRequest, ScoreRequest

if TYPE_CHECKING:
    from habitat_eqarm.serve.app import ServerState

#: The sampling options an OpenRLHF request cannot carry: the server's defaults for it.
OPENRLHF_OPTIONS = {"k": 4, "temperature": 0.8, "top_p": 0.9, "aggregate": "mean", "seed": 0}


class BatchedBackend(RewardBackend):
    """The served backend as a worker thread sees it: every request goes through the server's
    batchers on the event loop ``loop`` (so scoring shares batches with chat completions), and
    its failures arrive as the HTTP errors of :meth:`ServerState.generate`."""

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        self.state, self.loop = state, loop
        self.model_id = state.settings.served_model_name

    def sample(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[GenerationResult]:
        """Submit every request at once, then wait for all of them."""
        futures = [
            asyncio.run_coroutine_threadsafe(self.state.generate(r, params), self.loop)
            for r in requests
        ]
        return [future.result() for future in futures]


@dataclass(frozen=True)
class FrameSource:
    """Where one instance's episode memory comes from: ``key`` names the frames, ``open``
    reads them (episodes that share a key are opened once per request)."""

    key: str
    open: Callable[[], EpisodeMemory]


# -- /v1/score ----------------------------------------------------------------------------------


async def score_instances(state: ServerState, body: ScoreRequest) -> dict[str, Any]:
    """Judge each instance with :meth:`EQARewardModel.score`; the ``/v1/score`` answer."""
    settings = state.settings
    if len(body.instances) > settings.max_instances:
        raise HTTPException(
            400, f"{len(body.instances)} instances is over the limit of {settings.max_instances}"
        )
    options = body.model_dump(exclude={"instances", "frames", "frames_hash"})
    check_options(state, options)
    try:
        instances = [
            EQAInstance.from_dict(d, where=f"instances[{i}]") for i, d in enumerate(body.instances)
        ]
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    frames = _per_instance(body.frames, len(instances), "frame lists")
    hashes = _per_instance(body.frames_hash, len(instances), "frames_hash entries")
    sources = [
        _source(state, inst, urls, digest, f"instances[{i}] ({inst.question_id!r})")
        for i, (inst, urls, digest) in enumerate(zip(instances, frames, hashes, strict=True))
    ]
    judgements = await judge(state, instances, sources, options)
    return {"model": settings.served_model_name, "judgements": judgements}


def check_options(state: ServerState, options: dict[str, Any]) -> None:
    """Refuse sampling options over the server's limits (HTTP 400) before any frame is read."""
    settings = state.settings
    if options["k"] > settings.max_n:
        raise HTTPException(400, f"k={options['k']} is over this server's limit {settings.max_n}")
    if options["max_new_tokens"] > settings.max_new_tokens:
        raise HTTPException(400, f"max_new_tokens is over the limit {settings.max_new_tokens}")
    try:
        aggregate_scores([], options["aggregate"])
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


async def judge(
    state: ServerState,
    instances: list[EQAInstance],
    sources: list[FrameSource],
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    """Judgement dicts (with ``spread`` and ``cached``), memoized when ``options`` has a seed."""
    seeded = options["seed"] is not None
    keys = [
        memo_key(src.key, inst.to_dict(), options) if seeded else None
        for inst, src in zip(instances, sources, strict=True)
    ]
    hits = [state.memo.get(key) if key else None for key in keys]
    found = [None if hit is None else {**hit, "cached": True} for hit in hits]
    todo = [i for i, hit in enumerate(found) if hit is None]
    if todo:
        chosen = [instances[i] for i in todo]
        fresh = await _score(state, chosen, [sources[i] for i in todo], options)
        for i, judgement in zip(todo, fresh, strict=True):
            if keys[i]:
                state.memo.put(keys[i], judgement)
            found[i] = {**judgement, "cached": False}
    return found


async def _score(
    state: ServerState,
    instances: list[EQAInstance],
    sources: list[FrameSource],
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    memories = await run_in_threadpool(_open_all, sources)
    scorer = state.model.with_backend(BatchedBackend(state, asyncio.get_running_loop()))
    try:
        judgements = await run_in_threadpool(
            scorer.score, instances, ScoringConfig.of(options), memories=memories
        )
    except (ValueError, OSError, IndexError) as err:  # frames that cannot be read or picked
        raise HTTPException(400, str(err)) from None
    return [{**j.to_dict(), "spread": j.spread} for j in judgements]


def _open_all(sources: list[FrameSource]) -> list[EpisodeMemory]:
    opened = EpisodeCache(size=None)  # this request's frame sources, each opened once
    return [opened.get(src.key, src.open) for src in sources]


def _per_instance(values: list | None, n: int, what: str) -> list:
    if values is None:
        return [None] * n
    if len(values) != n:
        raise HTTPException(400, f"{len(values)} {what} for {n} instances")
    return values


def _source(
    state: ServerState,
    inst: EQAInstance,
    urls: list[str] | None,
    digest: str | None,
    where: str,
) -> FrameSource:
    """The frame source of one ``/v1/score`` instance (HTTP 4xx when it has none)."""
    if urls is not None:
        return _inline_source(urls, state, where)
    if digest is not None:
        return ref_source(state, {"question": inst.question, "frames_hash": digest}, where)
    if inst.episode_id and not inst.episode_path and state.store is not None:
        return ref_source(state, {"question": inst.question, "episode_id": inst.episode_id}, where)
    path = state.episode_path(inst.episode_path or "", where)  # HTTP 400/403 when it may not
    return FrameSource(f"path:{path}", _guarded(lambda: EpisodeMemory.from_path(path), where))


def ref_source(state: ServerState, ref: EpisodeRef | dict[str, Any], where: str) -> FrameSource:
    """The frame source an episode reference names in the server's episode store."""
    if state.store is None:
        raise HTTPException(400, f"{where}: this server has no --episode_store to resolve refs")
    try:
        ref = ref if isinstance(ref, EpisodeRef) else EpisodeRef.from_dict(ref, where)
    except EpisodeRefError as err:
        raise HTTPException(400, str(err)) from None
    store = state.store
    return FrameSource(ref.frames_key, _guarded(lambda: store.memory(ref), where))


def _guarded(open_: Callable[[], EpisodeMemory], where: str) -> Callable[[], EpisodeMemory]:
    def guarded() -> EpisodeMemory:
        try:
            return open_()
        except (ValueError, OSError) as err:
            raise HTTPException(400, f"{where}: {err}") from None

    return guarded


def _inline_source(urls: list[str], state: ServerState, where: str) -> FrameSource:
    settings = state.settings
    if not urls:
        raise HTTPException(400, f"{where}: an empty frame list")
    if len(urls) > settings.max_images:
        raise HTTPException(
            400, f"{where}: {len(urls)} frames is over the limit {settings.max_images}"
        )

    def decode() -> EpisodeMemory:
        decoded = [decode_image_url(url, settings.max_image_pixels) for url in urls]
        if any(f.shape != decoded[0].shape for f in decoded):
            raise ValueError("frames of different sizes")
        return EpisodeMemory.from_frames(np.stack(decoded))

    digest = hashlib.sha256("\n".join(urls).encode("utf-8")).hexdigest()
    return FrameSource(f"inline:{digest}", _guarded(decode, where))


# -- OpenRLHF's --reward.remote_url -------------------------------------------------------------


async def score_openrlhf(state: ServerState, body: OpenRLHFRequest) -> dict[str, Any]:
    """OpenRLHF's remote reward model: ``query`` (prompt + response) in, ``rewards`` out.

    Each query's episode reference is read from its prompt (or the query, or its label). The
    response is the query after its prompt; an answer that cannot be read gets reward 0 and is
    not sent to the model. ``rewards`` and ``scores`` are the aggregate score / 10 (0..1).
    """
    n = len(body.query)
    if n > state.settings.max_instances:
        raise HTTPException(400, f"{n} queries is over the limit of {state.settings.max_instances}")
    prompts = _per_instance(body.prompts, n, "prompts")
    labels = _per_instance(body.labels, n, "labels")
    options = {**OPENRLHF_OPTIONS, "max_new_tokens": 512}
    items = [
        _openrlhf_instance(query, prompt, label, i)
        for i, (query, prompt, label) in enumerate(zip(body.query, prompts, labels, strict=True))
    ]
    usable = [i for i, (inst, _) in enumerate(items) if inst.predicted_answer]
    sources = [ref_source(state, items[i][1], f"query[{i}]") for i in usable]
    judged = await judge(state, [items[i][0] for i in usable], sources, options)
    by_index = dict(zip(usable, judged, strict=True))
    rewards = [_reward(by_index.get(i)) for i in range(n)]
    logs = {
        "eqarm_score": [by_index[i]["score"] if i in by_index else None for i in range(n)],
        "eqarm_spread": [by_index[i]["spread"] if i in by_index else None for i in range(n)],
        "eqarm_cached": [bool(by_index[i]["cached"]) if i in by_index else False for i in range(n)],
        "eqarm_answer_found": [i in by_index for i in range(n)],
    }
    return {"rewards": rewards, "scores": rewards, "extra_logs": logs}


def _reward(judgement: dict[str, Any] | None) -> float:
    if judgement is None or judgement["score"] is None:
        return 0.0
    return float(judgement["score"]) / 10.0


def _openrlhf_instance(
    query: str, prompt: str | None, label: Any, i: int
) -> tuple[EQAInstance, EpisodeRef]:
    where = f"query[{i}]"
    try:
        ref = (
            (find_ref(prompt, f"prompts[{i}]") if prompt else None)
            or find_ref(query, where)
            or (find_ref(label, f"labels[{i}]") if isinstance(label, str) else None)
        )
    except EpisodeRefError as err:
        raise HTTPException(400, str(err)) from None
    if ref is None:
        raise HTTPException(400, f"{where}: no <eqarm_ref> tag in its prompt, query or label")
    response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    instance = instance_from_ref(ref, response, f"query-{i}")
    return instance, ref
