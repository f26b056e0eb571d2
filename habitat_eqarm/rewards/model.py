"""`EQARewardModel`: score EQA instances with a generative reward model (docs/method.md §1, §6).

One interface over backends (:mod:`habitat_eqarm.rewards.backends`): the model builds the
reward-model prompt, picks keyframes from each instance's episode memory, asks the backend for
K samples, parses each with :func:`parse_evaluation` and aggregates the valid scores.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.episode_cache import EpisodeCache
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.backends.base import (
    GenerationRequest,
    RewardBackend,
    SamplingParams,
    load_backend,
)
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.pairwise import (
    ORDERS,
    PAIRWISE_PROMPT,
    PairJudgement,
    ResponsePair,
    pair_judgement_from_texts,
    pair_messages,
)
from habitat_eqarm.rewards.parsing import aggregate_scores, parse_evaluation, score_spread
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, Prompt, build_messages


@dataclass
class Sample:
    """One sampled evaluation: the raw text, its parsed critique and score, and validity.

    ``score`` is None unless the text is well formed (lenient recovery is not used here).
    Multi-response samples also carry ``reason`` (why the vote is invalid) and ``position``
    (where the response was listed in the vote, from 0); both are None for pointwise samples.
    """

    text: str
    critique: str | None
    score: int | None
    format_ok: bool
    reason: str | None = None
    position: int | None = None

    @classmethod
    def from_text(cls, text: str) -> Sample:
        """Parse ``text`` strictly; a malformed sample keeps its text but has no score."""
        parsed = parse_evaluation(text)
        score = parsed.score if parsed.format_ok else None
        return cls(text=text, critique=parsed.critique, score=score, format_ok=parsed.format_ok)


#: Keys ``eqarm serve`` adds to a judgement dict: derived or per-request, not part of it.
SERVED_EXTRAS = ("spread", "cached")


@dataclass
class Judgement:
    """The reward model's verdict on one instance: every sample and their aggregate.

    ``score`` is the aggregate (0..10 as a float) of the valid samples, None if none was
    valid. ``timings`` are seconds for this instance (a batch's time split evenly).
    """

    question_id: str
    samples: list[Sample]
    score: float | None
    aggregate: str
    n_valid: int
    prompt_id: str
    model: str
    keyframe_indices: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> list[int | None]:
        """Each sample's score (None where the sample was malformed)."""
        return [s.score for s in self.samples]

    @property
    def critiques(self) -> list[str | None]:
        """Each sample's critique."""
        return [s.critique for s in self.samples]

    def prefix(self, k: int, aggregate: str | None = None) -> Judgement:
        """The judgement the first ``k`` samples alone would give (for K-scaling curves).

        ``aggregate`` re-aggregates them another way (default: this judgement's method).
        """
        samples = self.samples[:k]
        scores = [s.score for s in samples]
        aggregate = aggregate or self.aggregate
        return Judgement(
            question_id=self.question_id,
            samples=samples,
            score=aggregate_scores(scores, aggregate),
            aggregate=aggregate,
            n_valid=sum(s is not None for s in scores),
            prompt_id=self.prompt_id,
            model=self.model,
            keyframe_indices=self.keyframe_indices,
            timings=self.timings,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @property
    def spread(self) -> float | None:
        """How much the samples disagree (:func:`score_spread`: 0 when they all agree)."""
        return score_spread(self.scores)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        """Inverse of :meth:`to_dict`; also reads ``eqarm serve``'s judgements, whose
        derived ``spread`` and ``cached`` keys it leaves out."""
        data = {k: v for k, v in data.items() if k not in SERVED_EXTRAS}
        data["samples"] = [Sample(**s) for s in data["samples"]]
        return cls(**data)


def judgement_from_texts(
    instance: EQAInstance,
    texts: Sequence[str],
    *,
    aggregate: str,
    prompt_id: str,
    model: str,
    keyframe_indices: Sequence[int] = (),
    timings: dict[str, float] | None = None,
) -> Judgement:
    """Parse K sampled texts into a :class:`Judgement` (shared by every backend)."""
    samples = [Sample.from_text(t) for t in texts]
    return judgement_from_samples(
        instance,
        samples,
        aggregate=aggregate,
        prompt_id=prompt_id,
        model=model,
        keyframe_indices=keyframe_indices,
        timings=timings,
    )


def judgement_from_samples(
    instance: EQAInstance,
    samples: list[Sample],
    *,
    aggregate: str,
    prompt_id: str,
    model: str,
    keyframe_indices: Sequence[int] = (),
    timings: dict[str, float] | None = None,
) -> Judgement:
    """A :class:`Judgement` of ``instance`` from parsed samples, aggregated by ``aggregate``."""
    scores = [s.score for s in samples]
    return Judgement(
        question_id=instance.question_id,
        samples=samples,
        score=aggregate_scores(scores, aggregate),
        aggregate=aggregate,
        n_valid=sum(s is not None for s in scores),
        prompt_id=prompt_id,
        model=model,
        keyframe_indices=list(keyframe_indices),
        timings=dict(timings or {}),
    )


def check_call(
    k: int, aggregate: str, memories: Sequence[Any] | None, n: int, what: str
) -> list[Any]:
    """Validate a scoring call before any work; the memories as a list of ``n`` (None: read).

    ``what``: what the ``n`` items are, in the error ("instances", "groups").
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    aggregate_scores([], aggregate)  # raises on an unknown method name
    memories = list(memories) if memories is not None else [None] * n
    if len(memories) != n:
        raise ValueError(f"{len(memories)} memories for {n} {what}")
    return memories


def open_memories(
    instances: Sequence[EQAInstance], memories: Sequence[EpisodeMemory | None]
) -> list[EpisodeMemory | None]:
    """``memories`` with each missing one read from its instance's episode (one reader each)."""
    out = list(memories)
    opened = EpisodeCache(size=None)  # this call's episodes, each opened once
    for i, inst in enumerate(instances):
        if out[i] is None and inst.episode_path:
            out[i] = opened.get(inst.episode_path)
    return out


class EQARewardModel:
    """A generative reward model for EQA: critique + 0-10 score per instance.

    ``frames_as``: ``"images"`` (one image per keyframe, the default) or ``"video"`` (the
    keyframes as one video). ``num_keyframes`` / ``keyframe_method`` apply to instances
    without ``keyframe_indices``.
    """

    def __init__(
        self,
        backend: RewardBackend,
        *,
        prompt: Prompt = REWARD_MODEL_PROMPT,
        num_keyframes: int = 5,
        keyframe_method: str = "uniform",
        frames_as: str = "images",
    ) -> None:
        if frames_as not in ("images", "video"):
            raise ValueError(f"frames_as must be 'images' or 'video', got {frames_as!r}")
        self.backend = backend
        self.prompt = prompt
        self.num_keyframes = num_keyframes
        self.keyframe_method = keyframe_method
        self.frames_as = frames_as

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        backend: str = "hf",
        *,
        prompt: Prompt = REWARD_MODEL_PROMPT,
        num_keyframes: int = 5,
        keyframe_method: str = "uniform",
        frames_as: str = "images",
        **backend_kwargs: Any,
    ) -> EQARewardModel:
        """Load a reward model from a local path or hub id with the named backend.

        ``backend_kwargs`` go to the backend (for ``hf``: device, dtype, batch_size,
        max_pixels, share_prefill, preallocate_cache, attn_implementation, ...).
        """
        return cls(
            load_backend(backend, path_or_id, **backend_kwargs),
            prompt=prompt,
            num_keyframes=num_keyframes,
            keyframe_method=keyframe_method,
            frames_as=frames_as,
        )

    @property
    def name(self) -> str:
        """The backend's model path or id."""
        return self.backend.model_id

    def with_backend(self, backend: RewardBackend) -> EQARewardModel:
        """This reward model (prompt, keyframe choice, frame layout) over another backend.

        ``eqarm serve`` scores through its batcher this way; closing the copy closes ``backend``.
        """
        other = copy.copy(self)
        other.backend = backend
        return other

    def request_for(
        self, instance: EQAInstance, memory: EpisodeMemory | None = None
    ) -> tuple[GenerationRequest, list[int]]:
        """The backend request for ``instance`` and the keyframe indices it used."""
        frames, indices = self.keyframes_for(instance, memory)
        as_video = self.frames_as == "video"
        messages = build_messages(self.prompt, instance, len(indices), as_video=as_video)
        request = GenerationRequest(messages, frames, as_video=as_video, prompt_id=self.prompt.id)
        return request, indices

    def keyframes_for(
        self, instance: EQAInstance, memory: EpisodeMemory | None = None
    ) -> tuple[Any, list[int]]:
        """The keyframes shown for ``instance`` and their indices in its episode memory."""
        if memory is None:
            if not instance.episode_path:
                raise ValueError(f"instance {instance.question_id!r} has no episode_path")
            memory = EpisodeMemory.from_path(instance.episode_path)
        indices = instance.keyframe_indices or memory.keyframes(
            self.num_keyframes, self.keyframe_method
        )
        return memory.frames(indices), list(indices)

    def score(
        self,
        instances: Sequence[EQAInstance],
        config: ScoringConfig | None = None,
        *,
        memories: Sequence[EpisodeMemory | None] | None = None,
        **options: Any,
    ) -> list[Judgement]:
        """Judge each instance with ``k`` samples aggregated by ``aggregate``.

        ``config``: how to sample and vote (its sampling and vote sections; keyframes are the
        model's own, see the class doc); ``options`` replace fields of it
        (``k=4, seed=0, ...``). ``temperature=0`` decodes greedily. ``memories`` supplies
        episode memory directly (e.g. recorded by a gym wrapper) instead of reading each
        ``episode_path``.
        """
        cfg = ScoringConfig.from_options(config, **options)
        memories = check_call(cfg.k, cfg.aggregate, memories, len(instances), "instances")
        t0 = time.perf_counter()
        memories = open_memories(instances, memories)
        built = [self.request_for(inst, mem) for inst, mem in zip(instances, memories, strict=True)]
        frames_s = (time.perf_counter() - t0) / max(1, len(instances))
        results = self.backend.generate([req for req, _ in built], cfg.sampling_params())
        return [
            judgement_from_texts(
                inst,
                result.texts,
                aggregate=cfg.aggregate,
                prompt_id=self.prompt.id,
                model=self.name,
                keyframe_indices=indices,
                timings={"frames_s": frames_s, **result.timings},
            )
            for inst, (_, indices), result in zip(instances, built, results, strict=True)
        ]

    def score_multi(
        self, groups: Sequence[Sequence[EQAInstance]], k: int = 1, **kwargs: Any
    ) -> list[list[Judgement]]:
        """Judge each group of responses to one question in one prompt per vote.

        One judgement per response, in each group's order; ``kwargs`` as for :meth:`score`
        plus ``shuffle`` (default True: each vote lists the responses in its own seeded order).
        See :mod:`habitat_eqarm.rewards.multi_response`.
        """
        from habitat_eqarm.rewards.multi_response import score_groups

        return score_groups(self, groups, k, **kwargs)

    def judge_pairs(
        self,
        pairs: Sequence[ResponsePair],
        k: int = 1,
        temperature: float = 0.8,
        top_p: float = 0.9,
        seed: int | None = None,
        *,
        max_new_tokens: int = 512,
        prompt: Prompt = PAIRWISE_PROMPT,
    ) -> list[PairJudgement]:
        """``k`` pairwise verdicts on each pair in both orders, (A, B) and (B, A).

        Both orders show the same keyframes (the first response's episode memory) and differ
        only in which response is A; the K votes of one order are K samples of one request,
        so a backend that shares a prefill (``hf``) encodes the frames once per order.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        t0 = time.perf_counter()
        memories = open_memories([p.first for p in pairs], [None] * len(pairs))
        as_video = self.frames_as == "video"
        requests, indices = [], []
        for pair, memory in zip(pairs, memories, strict=True):
            if pair.first.episode_path != pair.second.episode_path:
                raise ValueError(f"pair {pair.question_id!r}: the responses' episodes differ")
            frames, used = self.keyframes_for(pair.first, memory)
            indices.append(used)
            for order in ORDERS:
                messages = pair_messages(prompt, *pair.shown(order), len(used), as_video=as_video)
                requests.append(GenerationRequest(messages, frames, as_video, prompt.id))
        frames_s = (time.perf_counter() - t0) / max(1, len(pairs))
        params = SamplingParams(k, temperature, top_p, max_new_tokens, seed)
        results = self.backend.generate(requests, params)
        return [
            pair_judgement_from_texts(
                pair,
                {o: results[2 * i + j].texts for j, o in enumerate(ORDERS)},
                prompt_id=prompt.id,
                model=self.name,
                keyframe_indices=indices[i],
                timings={"frames_s": frames_s, **results[2 * i].timings},
            )
            for i, pair in enumerate(pairs)
        ]

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> EQARewardModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
