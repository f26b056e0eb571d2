"""Evaluate a reward model on labelled instances: sample once at the largest K, report every K.

For each instance the model draws ``max(ks)`` samples once; the result for a smaller K is the
aggregate of the first K of those samples (prefixes of the same draws, as the reports say), so a
whole test-time-scaling curve costs one run at the largest K.

The sampling and its per-instance cache live in :mod:`habitat_eqarm.rewards.sample_cache` (the
trainers use them too); loading the instances in :mod:`habitat_eqarm.data.loading`. This module
turns the cached judgements into reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from habitat_eqarm.bench.metrics import (
    bootstrap_pairwise_ci,
    bootstrap_score_ci,
    breakdown,
    expected_calibration_error,
    pairwise_preference_accuracy,
    score_metrics,
)
from habitat_eqarm.data.schema import EQAInstance, InstanceError, base_question_id
from habitat_eqarm.rewards.model import Judgement
from habitat_eqarm.rewards.sample_cache import EvalSettings


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
