"""Evaluate a reward model on labelled instances: sample once at the largest K, report every K.

For each instance the model draws ``max(ks)`` samples once; the result for a smaller K is the
aggregate of the first K of those samples (prefixes of the same draws, as the reports say), so a
whole test-time-scaling curve costs one run at the largest K.

Samples are cached per instance in a JSONL file as they are produced: a killed run resumes where
it stopped, and an instance that fails is reported and skipped, not fatal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.bench.metrics import (
    CORRECT_AT,
    bootstrap_pairwise_ci,
    bootstrap_score_ci,
    breakdown,
    expected_calibration_error,
    pairwise_preference_accuracy,
    score_metrics,
)
from habitat_eqarm.data.schema import (
    EQAInstance,
    InstanceError,
    base_question_id,
    from_dataset,
    read_jsonl,
)
from habitat_eqarm.rewards.model import EQARewardModel, Judgement


def load_instances(
    path: str | os.PathLike[str], split: str | None = None, data_root: str | None = None
) -> list[EQAInstance]:
    """Labelled instances from JSONL, parquet, or a ``save_to_disk`` Dataset / DatasetDict.

    A relative ``episode_path`` is resolved against ``data_root`` (default: the data's folder).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        instances = read_jsonl(path)
    elif path.suffix == ".parquet":
        from datasets import Dataset

        instances = from_dataset(Dataset.from_parquet(str(path)))
    elif path.is_dir():
        instances = from_dataset(_load_dataset_dir(path, split))
    else:
        raise InstanceError(f"{path}: expected a .jsonl or .parquet file or a dataset folder")
    root = Path(data_root) if data_root else (path if path.is_dir() else path.parent)
    for inst in instances:
        if inst.episode_path and not Path(inst.episode_path).is_absolute():
            inst.episode_path = str(root / inst.episode_path)
    return instances


def _load_dataset_dir(path: Path, split: str | None) -> Any:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise InstanceError(f"{path}: not a saved dataset ({err})") from None
    if isinstance(data, DatasetDict):
        if split is None:
            split = "test" if "test" in data else next(iter(data))
        if split not in data:
            raise InstanceError(f"{path}: no split {split!r} (has {', '.join(data)})")
        return data[split]
    return data


@dataclass
class SampleCache:
    """Per-instance Kmax judgements in a JSONL file, keyed by question id and a fingerprint.

    Lines with another fingerprint (other model, prompt, K or sampling settings) are ignored,
    and so is a torn last line left by a killed run.
    """

    path: Path
    fingerprint: dict[str, Any]
    entries: dict[str, Judgement] = field(default_factory=dict)
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
                        judgement = Judgement.from_dict(record["judgement"])
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
) -> tuple[dict[str, Judgement], list[dict[str, str]]]:
    """Kmax judgements for every instance (cached ones reused) and the failures."""
    kmax = max(settings.ks)
    todo = [(i, inst) for i, inst in enumerate(instances) if inst.question_id not in cache.entries]
    if progress:
        progress(len(instances) - len(todo))
    failures: list[dict[str, str]] = []
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        for judgement in _score_batch(model, batch, settings, kmax, failures):
            cache.add(judgement)
        if progress:
            progress(len(batch))
    return cache.entries, failures


def _score_batch(model, batch, settings, kmax, failures) -> list[Judgement]:
    """Score a batch; if it fails, score its instances one by one and record those that fail."""
    kwargs = dict(
        k=kmax,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
    )
    out: list[Judgement] = []
    try:
        return model.score([inst for _, inst in batch], seed=settings.seed + batch[0][0], **kwargs)
    except Exception:  # one bad item must not cost the batch: retry them one by one
        if len(batch) > 1:
            for index, inst in batch:
                out += _score_batch(model, [(index, inst)], settings, kmax, failures)
            return out
        (index, inst), err = batch[0], sys.exc_info()[1]
    failures.append({"question_id": inst.question_id, "error": f"{type(err).__name__}: {err}"})
    return out


def format_report(
    instances: Sequence[EQAInstance], judgements: dict[str, Judgement], ks: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Malformed outputs for every K, counted two ways over the first K samples of each instance.

    ``malformed_samples`` / ``samples`` is the per-sample format-failure rate (what the paper
    reports); ``instances_without_valid`` counts instances none of whose K samples parsed
    (they get no score: a miss for accuracy, left out of RMSE; the metrics' ``n_invalid``).
    Both do not depend on the aggregate.
    """
    done = [judgements[inst.question_id] for inst in instances if inst.question_id in judgements]
    out: dict[str, dict[str, Any]] = {}
    for k in sorted(ks):
        prefixes = [judgement.prefix(k) for judgement in done]
        samples = sum(len(p.samples) for p in prefixes)
        malformed = sum(not sample.format_ok for p in prefixes for sample in p.samples)
        out[str(k)] = {
            "samples": samples,
            "malformed_samples": malformed,
            "sample_failure_rate": malformed / samples if samples else None,
            "instances": len(prefixes),
            "instances_without_valid": sum(p.n_valid == 0 for p in prefixes),
        }
    return out


def score_report(
    instances: Sequence[EQAInstance], judgements: dict[str, Judgement], settings: EvalSettings
) -> dict[str, Any]:
    """Metrics for every K and aggregate: overall, by source, by category, pairwise, calibration.

    Accuracy, RMSE and pairwise accuracy carry a ``ci`` (percentile bootstrap, seeded with
    ``settings.seed``); ``calibration`` holds the ECE overall and by source.
    """
    done = [inst for inst in instances if inst.question_id in judgements]
    unlabelled = [inst.question_id for inst in done if inst.gt_score is None]
    if unlabelled:
        raise InstanceError(f"{len(unlabelled)} instance(s) lack gt_score, e.g. {unlabelled[0]!r}")
    gt = [inst.gt_score for inst in done]
    sources = [inst.source for inst in done]
    questions = [base_question_id(inst.question_id) for inst in done]
    boot = dict(resamples=settings.bootstrap, level=settings.ci_level, seed=settings.seed)

    def with_ci(p: list, g: list) -> dict:
        return {
            **score_metrics(p, g, settings.tau),
            "ci": bootstrap_score_ci(p, g, settings.tau, **boot),
        }

    def calibration(p: list, g: list) -> dict:
        return expected_calibration_error(p, g, settings.ece_bins, settings.correct_at)

    report: dict[str, Any] = {}
    for k in sorted(settings.ks):
        per_aggregate = {}
        for aggregate in settings.aggregates:
            pred = [judgements[inst.question_id].prefix(k, aggregate).score for inst in done]
            pairwise = pairwise_preference_accuracy(pred, gt, questions)
            pairwise["ci"] = bootstrap_pairwise_ci(pred, gt, questions, **boot)
            per_aggregate[aggregate] = {
                "overall": with_ci(pred, gt),
                "by_source": breakdown(pred, gt, sources, fn=with_ci),
                "by_category": breakdown(pred, gt, [i.category for i in done], fn=with_ci),
                "pairwise": pairwise,
                "calibration": {
                    "overall": calibration(pred, gt),
                    "by_source": breakdown(pred, gt, sources, fn=calibration),
                },
            }
        report[str(k)] = per_aggregate
    return report
