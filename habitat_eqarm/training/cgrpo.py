"""C-GRPO (docs/method.md §4) on TRL's ``GRPOTrainer``: a thin subclass; maths in ``rewards.py``.

Per prompt, TRL samples G evaluations of the original instance. :class:`CGRPOTrainer` adds, for
each active contrast, the perturbed prompt (shuffled keyframes, masked keyframes, or the trace's
steps jumbled; one seeded draw per prompt and step, shared by its G copies) and samples G
evaluations of it **in the same generation call** as the originals. Only the original-condition
evaluations enter the loss (**[ours]**, docs/method.md §4); the perturbed ones only give scores.

Rewards are TRL's reward columns, summed with weights before the group normalisation (TRL's
``sum_then_normalize``, which with ``scale_rewards="group"`` is Eq. 6):

* ``accuracy_reward`` (Eq. 3) and ``format_reward``: ordinary TRL reward functions;
* ``boost_temporal`` / ``boost_spatial`` / ``boost_reasoning`` (Eq. 4), weight 1/3 each
  (Eq. 5): computed by :func:`~habitat_eqarm.training.rewards.cgrpo_terms` after the scores are
  gathered from every process, because a prompt's group may span GPUs (the paper runs 8 GPUs x
  batch 1 with G = 8: one completion per GPU).

TRL then logs each column's mean per step (``rewards/<name>/mean``); :class:`CurvesPlot` draws
them as the paper's Fig. 2. The reference model is the starting model, i.e. the RFT model.

Not shared: the vision work of the original and the temporal/reasoning conditions (same frames).
TRL's generation runs the processor and the vision encoder per prompt row, with no hook to feed
it precomputed image features, so each condition encodes its frames again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from habitat_eqarm.data.io import atomic_path
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages
from habitat_eqarm.training.augment import perturb_prompt
from habitat_eqarm.training.cgrpo_config import CGRPOConfig
from habitat_eqarm.training.checkpoints import ResumeWeights
from habitat_eqarm.training.common import (
    example_tokens,
    instance_keyframes,
    prepare_dataset,
    train_with_resume,
)
from habitat_eqarm.training.rewards import (
    AccuracyReward,
    FormatReward,
    cgrpo_terms,
    completion_score,
)
from habitat_eqarm.training.trl_compat import (
    GRPOHooks,
    add_reward_columns,
    completions_of,
    first_rows,
    log_metric,
    own_reward_names,
)

MALFORMED = -1.0  # a score slot of a malformed evaluation; NaN marks an inactive contrast


@dataclass
class CGRPOStats:
    """What data preparation kept and skipped, written to ``cgrpo_stats.json``."""

    instances: int = 0
    kept: int = 0  # rows made; the dataset holds kept - skipped_too_long (as RFT counts)
    skipped_no_gt_score: int = 0
    skipped_no_frames: int = 0
    skipped_too_long: int = 0
    temporal_inactive: int = 0  # fewer than 2 keyframes: no other order exists
    reasoning_inactive: int = 0  # fewer than 2 reasoning steps

    def to_dict(self) -> dict[str, int]:
        """A JSON-serialisable dict."""
        return asdict(self)


def grpo_rows(
    instances: list[EQAInstance], num_keyframes: int, stats: CGRPOStats
) -> list[dict[str, Any]]:
    """One row per labelled instance whose frames can be read: prompt messages, ``gt_score``,
    and where its frames are; ``stats.kept`` counts them."""
    rows = []
    for inst in instances:
        try:
            indices = instance_keyframes(inst, num_keyframes)
        except (ValueError, OSError) as err:
            print(f"C-GRPO: skipping {inst.question_id!r}: no frames ({err})")
            stats.skipped_no_frames += 1
            continue
        stats.temporal_inactive += len(indices) < 2
        stats.reasoning_inactive += len(inst.reasoning_steps) < 2
        rows.append(
            {
                "question_id": inst.question_id,
                "episode_path": inst.episode_path,
                "keyframe_indices": indices,
                "prompt": build_messages(REWARD_MODEL_PROMPT, inst, len(indices)),
                "gt_score": float(inst.gt_score),
                "instance": json.dumps(inst.to_dict()),
            }
        )
    stats.kept += len(rows)
    return rows


def prepare(cfg: CGRPOConfig) -> tuple[Any, Any, CGRPOStats]:
    """The training dataset (images loaded lazily), the processor, and what was skipped.

    Writes ``cgrpo_stats.json``; raises ValueError when no instance is usable.
    """
    stats = CGRPOStats()

    def rows(labelled: list[EQAInstance]) -> list[dict[str, Any]]:
        return grpo_rows(labelled, cfg.num_keyframes, stats)

    def tokens(example: dict[str, Any], processor: Any) -> int:
        return prompt_tokens(example, processor, cfg)

    dataset, processor = prepare_dataset(cfg, "C-GRPO", stats, rows, tokens, cfg.max_prompt_tokens)
    return dataset, processor, stats


def prompt_tokens(example: dict[str, Any], processor: Any, cfg: CGRPOConfig) -> int:
    """Tokens of the prompt alone, image tokens included."""
    return example_tokens({**example, "completion": []}, processor, cfg)


def _draw_seed(*parts: Any) -> int:
    """A seed that every process derives alike from the same parts (prompt, step, condition)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


class CGRPOTrainer(ResumeWeights, GRPOHooks):
    """TRL's ``GRPOTrainer`` with C-GRPO's contrasts (see the module doc)."""

    def __init__(self, model: Any, args: CGRPOConfig, **kwargs: Any) -> None:
        if "reward_funcs" in kwargs:
            raise TypeError(
                "CGRPOTrainer's rewards are fixed by Eqs. 3-5; do not pass reward_funcs"
            )
        super().__init__(
            model=model, reward_funcs=[AccuracyReward(), FormatReward()], args=args, **kwargs
        )
        self.contrasts = args.contrasts
        # Eq. 5: accuracy + format + (R^t + R^s + R^r) / 3; the boost columns are appended by
        # calculate_rewards
        boost_weights = torch.full((len(self.contrasts),), 1.0 / 3.0)
        add_reward_columns(self, [f"boost_{c}" for c in self.contrasts], boost_weights)
        self._pending_inputs: list[dict[str, Any]] | None = None
        self._perturbed_scores: torch.Tensor | None = None
        # (rows, contrasts) scores of the last step's perturbed evaluations, NaN where inactive
        self.last_perturbed_scores: torch.Tensor | None = None
        self.perturb_seconds = 0.0  # time spent perturbing inputs (for benchmarks)

    # -- perturbations -------------------------------------------------------------------------

    def _perturb(self, condition: str, prompt: list[dict], row: dict[str, Any]) -> list | None:
        """The prompt (images embedded) under ``condition``, or None if the contrast is inactive;
        the perturbation is :data:`~habitat_eqarm.training.augment.PERTURBATIONS`' entry, drawn
        from a seed shared by every process (run seed, step, question, condition)."""
        rng = np.random.default_rng(
            _draw_seed(self.args.seed, self.state.global_step, row["question_id"], condition)
        )
        return perturb_prompt(condition, prompt, row, rng, self.args)

    # -- TRL hooks (see trl_compat) -------------------------------------------------------------

    def generate_and_score_completions(self, inputs):
        """TRL's rollout step, with this batch's rows at hand for :meth:`generate_completions`."""
        self._pending_inputs = inputs if self.model.training and self.contrasts else None
        try:
            return super().generate_and_score_completions(inputs)
        finally:
            self._pending_inputs = None
            self._perturbed_scores = None

    def generate_completions(self, prompts: list):
        """Sample the original prompts and every active perturbation of them in one call."""
        rows = self._pending_inputs
        if rows is None:
            return super().generate_completions(prompts)
        start = time.perf_counter()
        extra, owners = [], []  # owners[k] = (contrast index, row index) of extra[k]
        inactive = Counter()
        for j, condition in enumerate(self.contrasts):
            for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
                perturbed = self._perturb(condition, prompt, row)
                if perturbed is None:
                    inactive[condition] += 1
                    continue
                extra.append(perturbed)
                owners.append((j, i))
        self.perturb_seconds += time.perf_counter() - start
        for condition in self.contrasts:  # share of this step's rows without that contrast
            log_metric(self, f"cgrpo/inactive_{condition}", inactive[condition] / len(prompts))
        out = super().generate_completions(prompts + extra)
        completions = completions_of(out)
        scores = torch.full((len(prompts), len(self.contrasts)), float("nan"))
        for (j, i), completion in zip(owners, completions[len(prompts) :], strict=True):
            score = completion_score(completion)
            scores[i, j] = MALFORMED if score is None else float(score)
        self._perturbed_scores = self.last_perturbed_scores = scores
        return first_rows(out, len(prompts), len(prompts) + len(extra))  # the originals only

    def calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's accuracy and format columns, then one boost column per contrast (Eq. 4)."""
        with own_reward_names(self):
            rewards = super().calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.contrasts:
            return rewards
        device = rewards.device
        if self._perturbed_scores is None:  # evaluation: no contrasts, the boost does not apply
            nan = torch.full((len(rewards), len(self.contrasts)), float("nan"), device=device)
            return torch.cat([rewards, nan], dim=1)
        from accelerate.utils import gather

        own = [completion_score(c) for c in completions]
        own = torch.tensor([MALFORMED if s is None else float(s) for s in own], device=device)
        gts = torch.tensor([float(x["gt_score"]) for x in inputs], device=device)
        all_own = gather(own).cpu()
        all_gt = gather(gts).cpu()
        all_perturbed = gather(self._perturbed_scores.to(device)).cpu()
        boosts = torch.zeros((len(all_own), len(self.contrasts)))
        size = self.num_generations
        group_means: dict[str, list[float]] = {c: [] for c in ("original", *self.contrasts)}
        for start in range(0, len(all_own), size):
            group = slice(start, start + size)
            augmented = {
                c: _scores(all_perturbed[group, j])
                for j, c in enumerate(self.contrasts)
                if not torch.isnan(all_perturbed[group, j]).all()
            }
            terms = cgrpo_terms(
                _scores(all_own[group]),
                float(all_gt[start]),
                augmented,
                delta=self.args.boost_delta,
                mu=self.args.boost_mu,
                h_min=self.args.boost_h_min,
            )
            for j, c in enumerate(self.contrasts):
                if c in terms.boosts:
                    boosts[group, j] = torch.tensor(terms.boosts[c])
            for c, mean in terms.group_means.items():
                group_means[c].append(mean)
        for c, means in group_means.items():
            if means:
                log_metric(self, f"cgrpo/mean_accuracy_{c}", sum(means) / len(means))
        return torch.cat([rewards, boosts.to(device)], dim=1)


def _scores(column: torch.Tensor) -> list[float | None]:
    return [None if s == MALFORMED else s for s in column.tolist()]


#: The paper's Fig. 2: one panel per ``(title, {label: logged key})``.
CURVES = (
    (
        "accuracy, format and total reward",
        {
            "accuracy": "rewards/accuracy_reward/mean",
            "format": "rewards/format_reward/mean",
            "total reward": "reward",
        },
    ),
    (
        "contrastive boosts (mean per evaluation)",
        {
            "temporal boost": "rewards/boost_temporal/mean",
            "spatial boost": "rewards/boost_spatial/mean",
            "reasoning boost": "rewards/boost_reasoning/mean",
        },
    ),
)

Panels = Sequence[tuple[str, dict[str, str]]]


def write_curves(
    log_history: list[dict[str, Any]], path: str | Path, panels: Panels = CURVES
) -> Path | None:
    """Logged metrics per step as a PNG, one panel per entry of ``panels`` (default: the paper's
    Fig. 2: mean accuracy, format and each boost); None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels, strict=True):
        for label, key in curves.items():
            points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
            if points:
                found = True
                marker = "." if len(points) < 30 else None
                ax.plot(*zip(*points, strict=True), label=label, marker=marker)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    if not found:
        plt.close(fig)
        return None
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


class CurvesPlot(TrainerCallback):
    """Redraw the curves PNG whenever a checkpoint is saved and when training ends."""

    def __init__(self, path: str | Path, panels: Panels = CURVES) -> None:
        self.path = Path(path)
        self.panels = panels

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:  # several processes: one writer
            write_curves(state.log_history, self.path, self.panels)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if args.should_save:
            write_curves(state.log_history, self.path, self.panels)
        return control


def train_cgrpo(cfg: CGRPOConfig, callbacks: list | None = None) -> CGRPOTrainer:
    """Run C-GRPO end to end; returns the trainer (the model is saved in ``output_dir``).

    Resumes from the newest complete checkpoint in ``output_dir`` when there is one.
    """
    dataset, processor, stats = prepare(cfg)
    if cfg.process_index == 0:
        print(f"C-GRPO data: {json.dumps(stats.to_dict())}; contrasts: {list(cfg.contrasts)}")
    curves = CurvesPlot(Path(cfg.output_dir) / cfg.curves_png)
    return train_with_resume(CGRPOTrainer, cfg, dataset, processor, [curves, *(callbacks or [])])
