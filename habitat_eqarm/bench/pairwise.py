"""Pairwise reports: accuracy per order, position bias, order consistency, for every K.

A *pair* is two responses to one question with different ground-truth scores (GT ties are
left out). Each pair is judged in both orders: in ``AB`` the pair's first response is shown
first, in ``BA`` the second. Per order and K, a pair's outcome is the response that won the
majority of the first K valid votes, a ``tie`` (votes split evenly, or equal pointwise scores)
or ``invalid`` (no valid vote, or a missing pointwise score). Ties and invalid outcomes are
misses for accuracy and are counted in the report.

Two sources of votes share the report:

* generative pairwise verdicts (:class:`~habitat_eqarm.rewards.pairwise.PairJudgement`);
* pairwise from pointwise (the semi-scalar protocol): the two responses' aggregated scores
  of the first K samples, compared. The scores do not depend on the order, so both orders
  agree and the position bias is exactly one half over the decided pairs.

Intervals are percentile-bootstrap over questions (pairs of one question move together).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from habitat_eqarm.bench.metrics import bootstrap_interval
from habitat_eqarm.data.schema import EQAInstance, base_question_id
from habitat_eqarm.rewards.model import Judgement
from habitat_eqarm.rewards.pairwise import ORDERS, PairJudgement, ResponsePair
from habitat_eqarm.rewards.sample_cache import EvalSettings

TIE, INVALID = "tie", "invalid"
#: The report key of the generative protocol's vote (majority of the K verdicts).
VOTE = "majority"


def build_pairs(instances: Sequence[EQAInstance]) -> list[ResponsePair]:
    """Every pair of responses to one question with different GT scores, in a stable order."""
    by_question: dict[str, list[EQAInstance]] = defaultdict(list)
    for inst in instances:
        by_question[base_question_id(inst.question_id)].append(inst)
    pairs = []
    for question in sorted(by_question):
        members = sorted(by_question[question], key=lambda i: i.question_id)
        for a, b in itertools.combinations(members, 2):
            pair = ResponsePair(a, b)
            if pair.better is not None:
                pairs.append(pair)
    return pairs


def majority_outcome(votes: Sequence[str | None]) -> str:
    """The response most valid votes name; ``tie`` when two lead equally, ``invalid`` if none."""
    counts = Counter(v for v in votes if v is not None)
    if not counts:
        return INVALID
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return TIE
    return ranked[0][0]


def verdict_outcomes(judgement: PairJudgement, k: int) -> dict[str, str]:
    """Outcomes of the first ``k`` verdicts: per order, and ``both`` (the 2k votes pooled)."""
    votes = {order: judgement.votes(order, k) for order in ORDERS}
    out = {order: majority_outcome(v) for order, v in votes.items()}
    out["both"] = majority_outcome([v for order in ORDERS for v in votes[order]])
    return out


def score_outcome(pair: ResponsePair, first: float | None, second: float | None) -> str:
    """The outcome of comparing two pointwise scores (equal scores: a tie)."""
    if first is None or second is None:
        return INVALID
    if first == second:
        return TIE
    return pair.first.question_id if first > second else pair.second.question_id


def _share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _grouped_ci(hits: np.ndarray, groups: Sequence[Hashable], boot: dict) -> dict:
    """Bootstrap interval of ``hits.sum() / len(hits)``, resampling whole groups."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    sums = np.array([hits[idx].sum() for idx in members.values()], dtype=np.float64)
    counts = np.array([len(idx) for idx in members.values()], dtype=np.float64)

    def ratio(idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)

    return bootstrap_interval(ratio, len(sums), **boot)


def order_metrics(pairs: Sequence[ResponsePair], outcomes: Sequence[str], order: str, boot):
    """Accuracy (with its interval), first-position wins, ties and invalid outcomes of one
    order (or of ``both``, where no position is first)."""
    hits = np.array([o == p.better for p, o in zip(pairs, outcomes, strict=True)], np.float64)
    decided = [(p, o) for p, o in zip(pairs, outcomes, strict=True) if o not in (TIE, INVALID)]
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "accuracy": _share(int(hits.sum()), len(pairs)),
        "ci": {"accuracy": _grouped_ci(hits, [p.base_question for p in pairs], boot)},
        "ties": sum(o == TIE for o in outcomes),
        "invalid": sum(o == INVALID for o in outcomes),
    }
    if order in ORDERS:
        out["first_wins"] = sum(o == p.shown(order)[0].question_id for p, o in decided)
    return out


def pair_metrics(pairs: Sequence[ResponsePair], outcomes: Sequence[dict[str, str]], boot):
    """The pairwise report of one K: per order, their mean, position bias, consistency."""
    per_order = {o: order_metrics(pairs, [x[o] for x in outcomes], o, boot) for o in ORDERS}
    questions = [p.base_question for p in pairs]
    hits = np.array(
        [np.mean([x[o] == p.better for o in ORDERS]) for p, x in zip(pairs, outcomes, strict=True)]
    )
    decided = sum(
        per_order[o]["pairs"] - per_order[o]["ties"] - per_order[o]["invalid"] for o in ORDERS
    )
    consistent = [
        (p, x["AB"])
        for p, x in zip(pairs, outcomes, strict=True)
        if x["AB"] == x["BA"] and x["AB"] not in (TIE, INVALID)
    ]
    consistent_hits = np.array([o == p.better for p, o in consistent], dtype=np.float64)
    return {
        "pairs": len(pairs),
        "accuracy": _share(float(hits.sum()), len(pairs)),
        "ci": {"accuracy": _grouped_ci(hits, questions, boot)},
        "orders": per_order,
        "both_orders": order_metrics(pairs, [x["both"] for x in outcomes], "both", boot),
        "position_bias": _share(sum(per_order[o]["first_wins"] for o in ORDERS), decided),
        "consistent": {
            "pairs": len(consistent),
            "rate": _share(len(consistent), len(pairs)),
            "accuracy": _share(int(consistent_hits.sum()), len(consistent)),
            "ci": {
                "accuracy": _grouped_ci(
                    consistent_hits, [p.base_question for p, _ in consistent], boot
                )
            },
        },
    }


def _with_breakdowns(pairs, outcomes, boot) -> dict[str, Any]:
    """:func:`pair_metrics` overall, plus its accuracy per category and per source."""
    report = pair_metrics(pairs, outcomes, boot)
    for name, key in (("by_category", "category"), ("by_source", "source")):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, pair in enumerate(pairs):
            groups[str(getattr(pair.first, key))].append(i)
        report[name] = {
            g: pair_metrics([pairs[i] for i in idx], [outcomes[i] for i in idx], boot)
            for g, idx in sorted(groups.items())
        }
    return report


def _boot(settings: EvalSettings) -> dict:
    return dict(resamples=settings.bootstrap, level=settings.ci_level, seed=settings.seed)


def _report(pairs, settings, outcome_at: Callable[[ResponsePair, int, str], dict], aggregates):
    return {
        str(k): {
            agg: _with_breakdowns(pairs, [outcome_at(p, k, agg) for p in pairs], _boot(settings))
            for agg in aggregates
        }
        for k in sorted(settings.ks)
    }


def verdict_report(
    pairs: Sequence[ResponsePair], judgements: dict[str, PairJudgement], settings: EvalSettings
) -> dict[str, Any]:
    """The generative pairwise report for every K (key :data:`VOTE`), over judged pairs.

    Each entry also counts the invalid samples by reason per order (``invalid_samples``)."""
    done = [p for p in pairs if p.question_id in judgements]

    def outcome_at(pair: ResponsePair, k: int, _agg: str) -> dict:
        return verdict_outcomes(judgements[pair.question_id], k)

    report = _report(done, settings, outcome_at, [VOTE])
    for k, per_agg in report.items():
        per_agg[VOTE]["invalid_samples"] = {
            order: dict(
                sum(
                    (judgements[p.question_id].invalid_reasons(order, int(k)) for p in done),
                    Counter(),
                )
            )
            for order in ORDERS
        }
        per_agg[VOTE]["samples"] = sum(
            len(judgements[p.question_id].samples[o][: int(k)]) for p in done for o in ORDERS
        )
    return report


def score_pair_report(
    pairs: Sequence[ResponsePair], judgements: dict[str, Judgement], settings: EvalSettings
) -> dict[str, Any]:
    """Pairwise from pointwise (semi-scalar) for every K and aggregate, over scored pairs."""
    done = [
        p for p in pairs if p.first.question_id in judgements and p.second.question_id in judgements
    ]

    def outcome_at(pair: ResponsePair, k: int, agg: str) -> dict:
        first, second = (judgements[i.question_id].prefix(k, agg).score for i in pair.shown("AB"))
        outcome = score_outcome(pair, first, second)
        return {"AB": outcome, "BA": outcome, "both": outcome}

    return _report(done, settings, outcome_at, settings.aggregates)
