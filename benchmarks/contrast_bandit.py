"""Can Eqs. 4-6 make C-GRPO learn faster than plain GRPO? The reward maths alone, on a bandit.

The tiny-model runs (docs/testing.md) found C-GRPO no better than plain GRPO on any toy tried.
This script asks whether any toy could show it, without a model: the policy is a categorical
distribution over the 12 outputs an evaluation can have (scores 0-10, or malformed), one per
prompt, and it is trained with the policy gradient of the GRPO surrogate at ratio 1 (no KL),
``z += lr * mean_i A_i (onehot(a_i) - p)``. Rewards and advantages are the package's own
functions: ``accuracy_reward`` + format for plain GRPO, ``cgrpo_total_rewards`` (Eqs. 3-5 with
the H_min gate) for C-GRPO, ``group_advantages`` (Eq. 6) for both.

Both methods see the same original samples (common random numbers); C-GRPO also draws G
evaluations per contrast from the perturbed distribution, which is either the same as the
original (a model that ignores the perturbation) or the original mixed half-and-half with a
uniform draw (a model that reads frame order, so that shuffled frames make it worse and Eq. 4's
condition holds). The measure is the late mean Eq. 3 accuracy, exact under the policy, as
``learning.late_accuracy`` takes it from the trainer's logs.

Usage: python benchmarks/contrast_bandit.py [--seeds 40] [--steps 150]
Prints a Markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import numpy as np

from habitat_eqarm.training.augment import CONDITIONS
from habitat_eqarm.training.rewards import accuracy_reward, cgrpo_total_rewards, group_advantages

OUTCOMES = 12  # scores 0..10, then "malformed"
MALFORMED = 11


def peaked(centre: float, width: float = 1.0, malformed: float = 0.0) -> np.ndarray:
    """Logits of a score distribution around ``centre``; ``malformed`` is its probability."""
    scores = np.arange(11, dtype=np.float64)
    p = np.exp(-0.5 * ((scores - centre) / width) ** 2)
    p = (1.0 - malformed) * p / p.sum()
    return np.log(np.append(p, malformed) + 1e-12)


#: (start logits, s_gt) per prompt, and how a perturbation changes the policy's distribution
TOYS = {
    # RFT taught ~9 for a right answer and ~2 for a wrong one; the labels say 2 and 9 (11 - s)
    "inverted": dict(prompts=[(peaked(9), 2), (peaked(2), 9)], perturbed="same"),
    # the labels are the far end: a third of the evaluations are exactly 10 points off
    "extreme": dict(prompts=[(peaked(9.3, 0.8), 0), (peaked(0.7, 0.8), 10)], perturbed="same"),
    # a third of the outputs malformed (no boost, no format reward)
    "malformed": dict(
        prompts=[(peaked(9, malformed=0.35), 2), (peaked(2, malformed=0.35), 9)],
        perturbed="same",
    ),
    # a model that reads frame order: perturbed inputs make it half random
    "frame order": dict(prompts=[(peaked(9.3, 0.8), 0), (peaked(0.7, 0.8), 10)], perturbed="noisy"),
}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def score_of(outcome: int) -> int | None:
    return None if outcome == MALFORMED else int(outcome)


def expected_accuracy(p: np.ndarray, gt: float) -> float:
    return float(sum(p[s] * accuracy_reward(s, gt) for s in range(11)))


def run(toy: dict, method: str, seed: int, steps: int, group: int, lr: float) -> float:
    """Late mean expected accuracy of one training run of ``method`` ("grpo" or "cgrpo")."""
    logits = [z.copy() for z, _ in toy["prompts"]]
    orig_rng = np.random.default_rng(seed)  # the same original draws for both methods
    pert_rng = np.random.default_rng(seed + 1_000_003)
    curve = []
    for step in range(steps):
        k = step % len(logits)
        gt = toy["prompts"][k][1]
        p = softmax(logits[k])
        draws = orig_rng.choice(OUTCOMES, size=group, p=p)
        scores = [score_of(a) for a in draws]
        if method == "grpo":
            rewards = [accuracy_reward(s, gt) + float(s is not None) for s in scores]
        else:
            q = p if toy["perturbed"] == "same" else 0.5 * p + 0.5 / OUTCOMES
            augmented = {
                c: [score_of(a) for a in pert_rng.choice(OUTCOMES, size=group, p=q)]
                for c in CONDITIONS
            }
            rewards = cgrpo_total_rewards(scores, gt, augmented)
        advantages = group_advantages(rewards)
        grad = np.zeros(OUTCOMES)
        for a, adv in zip(draws, advantages, strict=True):
            grad += adv * (np.eye(OUTCOMES)[a] - p)
        logits[k] += lr * grad / group
        curve.append(
            statistics.fmean(
                expected_accuracy(softmax(z), g)
                for z, g in zip(logits, [g for _, g in toy["prompts"]], strict=True)
            )
        )
    late = curve[len(curve) // 2 :]
    return statistics.fmean(late)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--group", type=int, default=8, help="G evaluations per prompt")
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    rows = []
    for name, toy in TOYS.items():
        diffs, gains = [], []
        for seed in range(args.seeds):
            grpo = run(toy, "grpo", seed, args.steps, args.group, args.lr)
            cgrpo = run(toy, "cgrpo", seed, args.steps, args.group, args.lr)
            diffs.append(cgrpo - grpo)
            gains.append(grpo)
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        rows.append(
            dict(
                toy=name,
                grpo_late_accuracy=statistics.fmean(gains),
                cgrpo_minus_grpo=mean,
                sd=sd,
                paired_t=mean / (sd / math.sqrt(len(diffs))) if sd > 0 else 0.0,
                cgrpo_wins=sum(d > 0 for d in diffs),
            )
        )
    print(f"{args.seeds} seeds, {args.steps} steps, G = {args.group}, lr {args.lr}\n")
    print("| toy | GRPO late accuracy | C-GRPO − GRPO (mean ± sd) | paired t | C-GRPO wins |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['toy']} | {r['grpo_late_accuracy']:.3f} | {r['cgrpo_minus_grpo']:+.4f} ± "
            f"{r['sd']:.4f} | {r['paired_t']:+.2f} | {r['cgrpo_wins']}/{args.seeds} |"
        )
    print(json.dumps({"seeds": args.seeds, "steps": args.steps, "group": args.group, "toys": rows}))


if __name__ == "__main__":
    main()
