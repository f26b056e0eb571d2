"""Score many instances at the largest K once, each judgement cached on disk as it arrives.

:func:`sample_all` scores instances in batches (a failing batch is retried one instance at a
time, and an instance that still fails is reported, not fatal); :class:`SampleCache` keeps each
instance's Kmax judgement in a JSONL file, so a killed run resumes where it stopped.
:func:`sample_all_multi` does the same for the multi-response protocol (the responses to one
question in one prompt). The evaluator (`eqarm eval`) and rejective fine-tuning's candidate
sampling both use them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.data.schema import CORRECT_AT, EQAInstance, base_question_id
from habitat_eqarm.rewards.model import EQARewardModel, Judgement


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
class EvalSettings:
    """How to sample (largest K, sampling, batch size) and report (aggregates, tolerance,
    bootstrap resamples and level, calibration bins and the correctness threshold).

    ``bootstrap = 0`` turns the confidence intervals off (their bounds are then None).
    """

    ks: Sequence[int] = (1, 2, 4, 8, 16, 32)
    aggregates: Sequence[str] = ("majority", "mean")
    temperature: float = 0.8
    top_p: float = 0.9
    max_new_tokens: int = 512
    seed: int = 0
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
    todo = [(i, inst) for i, inst in enumerate(instances) if inst.question_id not in cache.entries]
    if progress:
        progress(len(instances) - len(todo))

    def score(batch):
        seed = settings.seed + batch[0][0]
        judge = getattr(model, method)
        return judge([inst for _, inst in batch], seed=seed, **_sampling(settings))

    failures: list[dict[str, str]] = []
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        for judgement in _score_batch(score, batch, failures, lambda item: [item[1]]):
            cache.add(judgement)
        if progress:
            progress(len(batch))
    return cache.entries, failures


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
        judged = model.score_multi(groups, seed=seed, shuffle=shuffle, **_sampling(settings))
        return [j for group in judged for j in group]

    failures: list[dict[str, str]] = []
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        for judgement in _score_batch(score, batch, failures, lambda item: item[1]):
            cache.add(judgement)
        if progress:
            progress(sum(len(group) for _, group in batch))
    return cache.entries, failures


def _sampling(settings: EvalSettings) -> dict[str, Any]:
    return dict(
        k=max(settings.ks),
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
    )


def _score_batch(score, batch, failures, members) -> list[Judgement]:
    """``score(batch)``; if it fails, score its items one by one and record those that fail.

    ``members(item)``: the instances of an item (named in the failures).
    """
    out: list[Judgement] = []
    try:
        return score(batch)
    except Exception:  # one bad item must not cost the batch: retry them one by one
        if len(batch) > 1:
            for item in batch:
                out += _score_batch(score, [item], failures, members)
            return out
        err = sys.exc_info()[1]
    for inst in members(batch[0]):
        failures.append({"question_id": inst.question_id, "error": f"{type(err).__name__}: {err}"})
    return out
