"""The reward maths of EQA-RM's training (docs/method.md §3-4), as plain functions.

* :func:`rejective_filter`: Eq. 1, which RFT candidates to keep.
* :func:`accuracy_reward`: Eq. 3, ``max(0, 1 - (|s - s_gt| / 10)^2)``; a malformed output
  (score None) gets 0.
* :func:`format_reward`: 1.0 iff the output is exactly ``<critique>…</critique><score>N</score>``.
* :func:`cgrpo_total_rewards`: Eqs. 4-5, accuracy + format + the mean of the contrastive boosts,
  with the group means taken per prompt (**[ours]**) and the H_min gate.
* :func:`group_advantages`: Eq. 6, standardised within a prompt's group with the sample
  standard deviation (as ``torch.std``, which TRL uses).

The TRL-compatible reward callables (:class:`AccuracyReward`, :class:`FormatReward`) follow
TRL's convention ``f(prompts, completions, **columns) -> list[float]`` and are picklable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from habitat_eqarm.rewards.parsing import parse_evaluation
from habitat_eqarm.training.augment import CONDITIONS

Score = float | int | None


def eq1_correct(candidate_scores: Sequence[Score], s_gt: float, tau: float) -> list[bool]:
    """Eq. 1's test per candidate: ``|s_gt - s_k| < tau`` (strict); a None score is incorrect."""
    return [s is not None and abs(float(s_gt) - float(s)) < tau for s in candidate_scores]


def rejective_filter(candidate_scores: Sequence[Score], s_gt: float, tau: float) -> list[bool]:
    """Eq. 1: keep candidate k iff ``|s_gt - s_k| < tau`` (strict), unless all are correct.

    A None score (malformed candidate) is incorrect. An instance whose candidates are all
    correct is "too easy" and keeps none.
    """
    correct = eq1_correct(candidate_scores, s_gt, tau)
    if correct and all(correct):
        return [False] * len(correct)
    return correct


def accuracy_reward(score: Score, gt: float) -> float:
    """Eq. 3: ``max(0, 1 - (|s - gt| / 10)^2)``; 0 for a None score."""
    if score is None:
        return 0.0
    return max(0.0, 1.0 - (abs(float(score) - float(gt)) / 10.0) ** 2)


def format_reward(text: str) -> float:
    """1.0 iff ``text`` is a well-formed evaluation (see ``parse_evaluation``), else 0.0."""
    return 1.0 if parse_evaluation(text).format_ok else 0.0


@dataclass
class CGRPOTerms:
    """The parts of Eq. 5 for each of a prompt's G original evaluations, and what gated them."""

    accuracy: list[float]
    format: list[float]
    boosts: dict[str, list[float]] = field(default_factory=dict)
    group_means: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> list[float]:
        """Eq. 5: accuracy + format + (R^t + R^s + R^r) / 3 (inactive contrasts add 0)."""
        out = []
        for i in range(len(self.accuracy)):
            boost = sum(b[i] for b in self.boosts.values()) / len(CONDITIONS)
            out.append(self.accuracy[i] + self.format[i] + boost)
        return out


def cgrpo_terms(
    orig_scores: Sequence[Score],
    gt: float,
    augmented: Mapping[str, Sequence[Score]],
    *,
    delta: float = 0.95,
    mu: float = 0.3,
    h_min: float = 0.1,
) -> CGRPOTerms:
    """Eqs. 3-5 for one prompt's group; see :func:`cgrpo_total_rewards` for the arguments."""
    if not orig_scores:
        raise ValueError("a prompt needs at least one original-condition evaluation")
    unknown = sorted(set(augmented) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; use {CONDITIONS}")
    accuracy = [accuracy_reward(s, gt) for s in orig_scores]
    terms = CGRPOTerms(accuracy=accuracy, format=[float(s is not None) for s in orig_scores])
    mean_o = sum(accuracy) / len(accuracy)
    terms.group_means["original"] = mean_o
    for condition, scores in augmented.items():
        if not scores:
            raise ValueError(f"condition {condition!r} is active but has no evaluations")
        mean_x = sum(accuracy_reward(s, gt) for s in scores) / len(scores)
        terms.group_means[condition] = mean_x
        robust = mean_o >= delta * mean_x  # the original beats (or nearly matches) the perturbed
        terms.boosts[condition] = [mu if robust and a >= h_min else 0.0 for a in accuracy]
    return terms


def cgrpo_total_rewards(
    orig_scores: Sequence[Score],
    gt: float,
    augmented: Mapping[str, Sequence[Score]],
    *,
    delta: float = 0.95,
    mu: float = 0.3,
    h_min: float = 0.1,
) -> list[float]:
    """Eq. 5 total reward of each of a prompt's G original evaluations.

    ``orig_scores``: the G original-condition scores (None = malformed: format 0, accuracy 0).
    ``augmented``: ``"temporal"`` / ``"spatial"`` / ``"reasoning"`` to that condition's scores;
    a missing key is an inactive contrast and contributes 0. Eq. 4: evaluation i gets the boost
    ``mu`` for condition x iff the group's mean accuracy on the original is at least ``delta``
    times its mean on x AND its own accuracy is at least ``h_min``. Means are per prompt group
    (**[ours]**: the paper's batch mean at batch size 1).
    """
    return cgrpo_terms(orig_scores, gt, augmented, delta=delta, mu=mu, h_min=h_min).total


def group_advantages(rewards: Sequence[float], eps: float = 1e-4) -> list[float]:
    """Eq. 6: ``(r_i - mean) / (std + eps)`` with the sample standard deviation (n - 1)."""
    n = len(rewards)
    if n < 2:
        raise ValueError(f"group advantages need at least 2 rewards, got {n}")
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    return [(r - mean) / (std + eps) for r in rewards]


def completion_text(completion: Any) -> str:
    """TRL passes plain strings or conversations (a list of messages); take the text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    return ""


def completion_score(completion: Any) -> int | None:
    """The score of a well-formed evaluation (TRL completion or text); None if malformed."""
    parsed = parse_evaluation(completion_text(completion))
    return parsed.score if parsed.format_ok else None


class AccuracyReward:
    """TRL reward function: Eq. 3 of each completion against the ``gt_score`` column."""

    def __init__(self, column: str = "gt_score") -> None:
        self.column = column
        self.__name__ = "accuracy_reward"  # TRL names its logged reward columns after this

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float]:
        if self.column not in columns:
            raise KeyError(f"accuracy_reward needs the dataset column {self.column!r}")
        return [
            accuracy_reward(completion_score(completion), gt)
            for completion, gt in zip(completions, columns[self.column], strict=True)
        ]


class FormatReward:
    """TRL reward function: 1.0 for a well-formed evaluation, else 0.0."""

    def __init__(self) -> None:
        self.__name__ = "format_reward"

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float]:
        return [format_reward(completion_text(c)) for c in completions]
