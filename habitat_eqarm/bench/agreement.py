"""Two protocols on the same instances: how often they agree, how accurate each is, their time.

`eqarm eval --protocol multi --compare_with <pointwise results folder>` writes this report: for
every K both runs sampled, the multi-response scores are compared with the pointwise ones
(agreement: ``|multi - pointwise| <= tau``; ``order kept``: of the pairs of responses to one
question that pointwise orders strictly, the share multi orders the same way) and both are
scored against the GT; the time is the model's seconds summed over the instances (each
judgement's timings, a batch's or group's time split evenly over its instances).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from habitat_eqarm.bench.metrics import pairwise_preference_accuracy, score_metrics
from habitat_eqarm.data.schema import EQAInstance, base_question_id
from habitat_eqarm.rewards.model import Judgement


def model_seconds(judgements: Sequence[Judgement]) -> float:
    """Seconds the model spent on these judgements (every ``*_s`` timing, summed)."""
    return sum(v for j in judgements for key, v in j.timings.items() if key.endswith("_s"))


def agreement_report(
    instances: Sequence[EQAInstance],
    ours: dict[str, Judgement],
    theirs: dict[str, Judgement],
    ks: Sequence[int],
    aggregate: str,
    tau: float,
) -> dict[str, Any]:
    """Agreement and accuracy by K over the instances both runs scored (``n``), and times."""
    both = [i for i in instances if i.question_id in ours and i.question_id in theirs]
    kmax = min(max(len(ours[i.question_id].samples) for i in both), max(ks)) if both else 0
    by_k = {}
    for k in [k for k in sorted(ks) if k <= kmax]:
        a = [ours[i.question_id].prefix(k, aggregate).score for i in both]
        b = [theirs[i.question_id].prefix(k, aggregate).score for i in both]
        gt = [i.gt_score for i in both]
        kept = [n for n, y in enumerate(b) if y is not None]  # the other run's scores as truth
        a_kept, b_kept = [a[n] for n in kept], [b[n] for n in kept]
        agree = score_metrics(a_kept, b_kept, tau)
        questions = [base_question_id(both[n].question_id) for n in kept]
        order = pairwise_preference_accuracy(a_kept, b_kept, questions)
        by_k[str(k)] = {
            "agreement": agree["accuracy"],
            "mean_abs_difference": agree["mae"],
            "spearman": agree["spearman"],
            "compared": len(kept),
            "order_kept": order["accuracy"],
            "ordered_pairs": order["pairs"],
            "accuracy": score_metrics(a, gt, tau)["accuracy"],
            "accuracy_other": score_metrics(b, gt, tau)["accuracy"],
        }
    seconds = model_seconds([ours[i.question_id] for i in both])
    other = model_seconds([theirs[i.question_id] for i in both])
    return {
        "n": len(both),
        "aggregate": aggregate,
        "tau": tau,
        "by_k": by_k,
        "seconds": seconds,
        "seconds_other": other,
        "time_ratio": seconds / other if other else None,
    }


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.2f}"


def agreement_table(report: dict[str, Any], ours: str, theirs: str) -> str:
    """The agreement report as Markdown: one row per K, then the time line."""
    lines = [
        f"# {ours} vs {theirs} ({report['n']} instances, {report['aggregate']}, "
        f"tau = {report['tau']:g})",
        "",
        f"| K | agreement (\\|diff\\| <= tau) | mean \\|diff\\| | Spearman | order kept | "
        f"accuracy {ours} | accuracy {theirs} |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, row in report["by_k"].items():
        lines.append(
            f"| {k} | {_fmt(row['agreement'])} | {_fmt(row['mean_abs_difference'], False)} | "
            f"{_fmt(row['spearman'], False)} | {_fmt(row['order_kept'])} "
            f"({row['ordered_pairs']} pairs) | {_fmt(row['accuracy'])} | "
            f"{_fmt(row['accuracy_other'])} |"
        )
    ratio = report["time_ratio"]
    lines += [
        "",
        f"Model time: {ours} {report['seconds']:.2f} s, {theirs} {report['seconds_other']:.2f} s"
        + (f" (ratio {ratio:.2f})." if ratio is not None else "."),
        "",
    ]
    return "\n".join(lines)
