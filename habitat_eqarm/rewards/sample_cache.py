"""Score many instances at the largest K once, each judgement cached on disk as it arrives.

:func:`sample_all` scores instances in batches (a failing batch is retried one instance at a
time, and an instance that still fails is reported, not fatal); :class:`SampleCache` keeps each
instance's Kmax judgement in a JSONL file, so a killed run resumes where it stopped. The
evaluator (`eqarm eval`) and rejective fine-tuning's candidate sampling both use them.
:func:`sample_all_multi` does the same for the multi-response protocol (the responses to one
question in one prompt).
:func:`sample_all_ray` scores the same batches, with the same seeds, in Ray actors
(:mod:`~habitat_eqarm.rewards.ray_engine`), the cache written by this process alone.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.data.schema import CORRECT_AT, EQAInstance, base_question_id
from habitat_eqarm.rewards.batching import batch_or_each
from habitat_eqarm.rewards.config import SamplingOptions, field_names
from habitat_eqarm.rewards.model import EQARewardModel, Judgement
from habitat_eqarm.rewards.ray_engine import EngineOptions, map_shards


@dataclass
class SampleCache:
    """Per-instance Kmax judgements in a JSONL file, keyed by question id and a fingerprint.

    Lines with another fingerprint (other model, prompt, K or sampling settings) are ignored,
    and so is a torn last line left by a killed run. ``record_type``: what a line holds, any
    class with ``question_id``, ``to_dict`` and ``from_dict`` (pairwise verdicts use it).
    """

    path: Path
    fingerprint: dict[str, Any]
    entries: dict[str, Judgement] = field(default_factory=dict)
    record_type: type = Judgement
    _tail_checked: bool = False

    def load(self, accept_any: bool = False) -> SampleCache:
        """Read cached judgements with this fingerprint (with ``accept_any``: every one)."""
        if not self.path.is_file():
            return self
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                    if accept_any or record.get("fingerprint") == self.fingerprint:
                        judgement = self.record_type.from_dict(record["judgement"])
                        self.entries[judgement.question_id] = judgement
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill, or from another version
        return self

    def add(self, judgement: Judgement) -> None:
        """Append one judgement as a single line, flushed to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"fingerprint": self.fingerprint, "judgement": judgement.to_dict()})
        with self.path.open("a", encoding="utf-8") as fh:
            if not self._tail_checked and fh.tell() and not _ends_with_newline(self.path):
                fh.write("\n")  # a torn line from a killed run stays on its own line
            self._tail_checked = True
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries[judgement.question_id] = judgement


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


@dataclass
class EvalSettings(SamplingOptions):
    """How to sample (largest K, batch size, and ``ScoringConfig``'s sampling section) and
    report (aggregates, tolerance, bootstrap resamples and level, calibration bins and the
    correctness threshold).

    ``seed`` (default 0) seeds both the samples (batch i: ``seed + i``) and the bootstrap.
    ``bootstrap = 0`` turns the confidence intervals off (their bounds are then None).
    """

    ks: Sequence[int] = (1, 2, 4, 8, 16, 32)
    aggregates: Sequence[str] = ("majority", "mean")
    seed: int = field(default=0, kw_only=True)
    tau: float = 2.0
    batch_size: int = 4
    bootstrap: int = 1000
    ci_level: float = 0.95
    ece_bins: int = 10
    correct_at: float = CORRECT_AT


def sample_all(
    model: EQARewardModel,
    instances: Sequence[EQAInstance],
    settings: EvalSettings,
    cache: SampleCache,
    progress: Callable[[int], None] | None = None,
    method: str = "score",
) -> tuple[dict[str, Judgement], list[dict[str, str]]]:
    """Kmax judgements for every instance (cached ones reused) and the failures.

    ``method``: the model's method that judges a batch (``"judge_pairs"`` for pairs).
    """
    failures: list[dict[str, str]] = []
    for batch in pending_batches(instances, settings, cache, progress):
        for judgement in _score_batch(model, batch, settings, failures, method):
            cache.add(judgement)
        if progress:
            progress(len(batch))
    return cache.entries, failures


def pending_batches(
    instances: Sequence[EQAInstance],
    settings: EvalSettings,
    cache: SampleCache,
    progress: Callable[[int], None] | None = None,
) -> list[list[tuple[int, EQAInstance]]]:
    """The uncached instances, with their index, in batches of ``settings.batch_size``
    (``progress`` is told how many were cached)."""
    todo = [(i, inst) for i, inst in enumerate(instances) if inst.question_id not in cache.entries]
    if progress:
        progress(len(instances) - len(todo))
    size = settings.batch_size
    return [todo[start : start + size] for start in range(0, len(todo), size)]


def sample_all_ray(
    open_model: Callable[[], EQARewardModel],
    instances: Sequence[EQAInstance],
    settings: EvalSettings,
    cache: SampleCache,
    engine: EngineOptions,
    progress: Callable[[int], None] | None = None,
    method: str = "score",
) -> tuple[dict[str, Judgement], list[dict[str, str]]]:
    """:func:`sample_all`'s judgements and failures, the batches scored in Ray actors.

    ``open_model`` (picklable) opens the reward model in each actor. Same batches, seeds and
    ``method`` as :func:`sample_all`; each judgement is added to the cache here as its batch
    comes back.
    """
    failures: list[dict[str, str]] = []

    def on_result(batch, result) -> None:
        judgements, batch_failures = result
        for judgement in judgements:
            if judgement.question_id not in cache.entries:
                cache.add(judgement)
        failures.extend(batch_failures)
        if progress:
            progress(len(batch))

    batches = pending_batches(instances, settings, cache, progress)
    scorer = functools.partial(BatchScorer, open_model, settings, method)
    map_shards(batches, scorer, on_result, engine)
    return cache.entries, failures


class BatchScorer:
    """Scores batches with a model it opens once (one per Ray actor)."""

    def __init__(
        self, open_model: Callable[[], EQARewardModel], settings: EvalSettings, method: str
    ) -> None:
        self.model = open_model()
        self.settings, self.method = settings, method

    def __call__(self, batch: list[tuple[int, EQAInstance]]):
        failures: list[dict[str, str]] = []
        judged = _score_batch(self.model, batch, self.settings, failures, self.method)
        return judged, failures


def sample_all_multi(
    model: EQARewardModel,
    instances: Sequence[EQAInstance],
    settings: EvalSettings,
    cache: SampleCache,
    progress: Callable[[int], None] | None = None,
    *,
    shuffle: bool = True,
) -> tuple[dict[str, Judgement], list[dict[str, str]]]:
    """:func:`sample_all` for the multi-response protocol: the responses to one question
    (same :func:`base_question_id`) are scored together, Kmax votes per group.

    A group is resampled unless all its responses are cached; ``progress`` counts instances.
    """
    groups: dict[str, list[EQAInstance]] = {}
    for inst in instances:
        groups.setdefault(base_question_id(inst.question_id), []).append(inst)
    todo = [
        (i, group)
        for i, group in enumerate(groups.values())
        if any(inst.question_id not in cache.entries for inst in group)
    ]
    if progress:
        progress(len(instances) - sum(len(group) for _, group in todo))

    def score(batch):
        seed = settings.seed + batch[0][0]
        groups = [group for _, group in batch]
        return model.score_multi(groups, seed=seed, shuffle=shuffle, **_sampling(settings))

    failures: list[dict[str, str]] = []
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        for judgement in _score_items(score, batch, failures, lambda item: item[1]):
            cache.add(judgement)
        if progress:
            progress(sum(len(group) for _, group in batch))
    return cache.entries, failures


def _sampling(settings: EvalSettings) -> dict[str, Any]:
    """The scoring options of a batch at Kmax (its seed is the caller's)."""
    names = [name for name in field_names(SamplingOptions) if name != "seed"]
    return {"k": max(settings.ks), **{name: getattr(settings, name) for name in names}}


def _score_batch(model, batch, settings, failures, method="score") -> list[Judgement]:
    """Score a batch of ``(index, instance)`` with ``model.<method>``, seeded by the first
    index; if it fails, its instances one by one, recording those that fail."""

    def score(items):
        judge = getattr(model, method)
        seed = settings.seed + items[0][0]
        return [[j] for j in judge([inst for _, inst in items], seed=seed, **_sampling(settings))]

    return _score_items(score, batch, failures, lambda item: [item[1]])


def _score_items(score, batch, failures, members) -> list[Judgement]:
    """The judgements of ``score(batch)`` (a list of judgements per item), the items scored
    one by one if the batch fails (:func:`batch_or_each`); an item that still fails is recorded
    in ``failures``, once per instance of ``members(item)``."""
    out: list[Judgement] = []
    for item, result in zip(batch, batch_or_each(score, batch), strict=True):
        if isinstance(result, Exception):
            error = f"{type(result).__name__}: {result}"
            failures.extend(
                {"question_id": inst.question_id, "error": error} for inst in members(item)
            )
        else:
            out.extend(result)
    return out
