"""Rejective fine-tuning (docs/method.md §3): candidates, Eq. 1's filter, then SFT on TRL.

1. An auxiliary evaluator (any backend, the reward-model prompt, no ground-truth answer) writes
   ``n_rft`` candidate evaluations per instance, cached per instance in a JSONL file so a
   killed run resumes (the same cache as ``eqarm eval``).
2. :func:`select_targets` keeps the candidates that Eq. 1 accepts (well formed, within tau of
   ``gt_score``, and not from an instance where every candidate was right) and writes the
   acceptance statistics.
3. SFT with TRL's ``SFTTrainer``: prompt = the reward-model prompt with the instance's
   keyframes (loaded lazily from its episode), completion = the accepted evaluation; the loss
   is on the completion only.
Instances without ``gt_score`` or whose frames cannot be read are skipped and counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trl import SFTTrainer

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.model import Judgement
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache, sample_all
from habitat_eqarm.training.checkpoints import ResumeWeights
from habitat_eqarm.training.common import (
    example_tokens,
    one_process_inference,
    prepare_dataset,
    train_with_resume,
)
from habitat_eqarm.training.rewards import eq1_correct, rejective_filter
from habitat_eqarm.training.rft_config import RFTConfig


@dataclass
class RFTStats:
    """What the rejective filter did, written to ``rft_stats.json``."""

    instances: int = 0
    skipped_no_gt_score: int = 0
    failed_candidates: int = 0
    candidates: int = 0
    malformed: int = 0
    kept: int = 0
    too_easy_instances: int = 0
    no_correct_instances: int = 0
    skipped_too_long: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Kept candidates over all candidates."""
        return self.kept / self.candidates if self.candidates else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict, acceptance rate included."""
        return {**asdict(self), "acceptance_rate": self.acceptance_rate}


def canonical_evaluation(critique: str, score: int) -> str:
    """The training target: exactly ``<critique>…</critique><score>N</score>``."""
    return f"<critique>{critique.strip()}</critique><score>{int(score)}</score>"


def select_targets(
    instances: list[EQAInstance], judgements: dict[str, Judgement], tau: float, stats: RFTStats
) -> list[tuple[EQAInstance, str]]:
    """Eq. 1 over each instance's candidates: the (instance, target text) pairs to train on."""
    pairs = []
    for inst in instances:
        judgement = judgements.get(inst.question_id)
        if judgement is None:
            continue
        scores = judgement.scores
        stats.candidates += len(scores)
        stats.malformed += sum(s is None for s in scores)
        keep = rejective_filter(scores, inst.gt_score, tau)
        if scores and not any(keep):
            correct = any(eq1_correct(scores, inst.gt_score, tau))
            stats.too_easy_instances += correct
            stats.no_correct_instances += not correct
        for sample, kept in zip(judgement.samples, keep, strict=True):
            if kept:
                pairs.append((inst, canonical_evaluation(sample.critique, sample.score)))
        stats.kept += sum(keep)
    return pairs


def candidate_judgements(cfg: RFTConfig, instances: list[EQAInstance], stats: RFTStats):
    """The ``n_rft`` candidates of every instance: from the cache file, else generated."""
    path = Path(cfg.candidates or Path(cfg.output_dir) / "candidates.jsonl")
    evaluator = cfg.evaluator or cfg.model_name_or_path
    fingerprint = {"evaluator": evaluator, "n_rft": cfg.n_rft, "prompt_id": REWARD_MODEL_PROMPT.id}
    settings = EvalSettings(
        ks=[cfg.n_rft],
        temperature=cfg.candidate_temperature,
        max_new_tokens=cfg.candidate_max_new_tokens,
        seed=cfg.seed,
    )
    # several processes: the main one writes the cache, the others then read it (a shared
    # output_dir; without one, save_on_each_node makes each node's main process write its own)
    with cfg.main_process_first(local=cfg.save_on_each_node, desc="RFT candidate evaluations"):
        cache = SampleCache(path, fingerprint).load(accept_any=cfg.candidates is not None)
        with one_process_inference(cfg):
            model = None
            if any(inst.question_id not in cache.entries for inst in instances):
                from habitat_eqarm.rewards.model import EQARewardModel

                model = EQARewardModel.from_pretrained(
                    evaluator,
                    cfg.evaluator_backend,
                    num_keyframes=cfg.num_keyframes,
                    max_pixels=cfg.max_pixels,
                )
            judgements, failures = sample_all(model, instances, settings, cache)
            if model is not None:
                model.close()
    stats.failed_candidates += len(failures)
    return judgements, failures


def sft_rows(pairs: list[tuple[EQAInstance, str]], num_keyframes: int) -> list[dict[str, Any]]:
    """One SFT row per target: the prompt messages, the completion, where to find the frames."""
    rows = []
    for inst, target in pairs:
        if not inst.keyframe_indices:
            memory = EpisodeMemory.from_path(inst.episode_path)
            inst.keyframe_indices = memory.keyframes(num_keyframes)
        messages = build_messages(REWARD_MODEL_PROMPT, inst, len(inst.keyframe_indices))
        rows.append(
            {
                "question_id": inst.question_id,
                "episode_path": inst.episode_path,
                "keyframe_indices": list(inst.keyframe_indices),
                "prompt": messages,
                "completion": [
                    {"role": "assistant", "content": [{"type": "text", "text": target}]}
                ],
            }
        )
    return rows


def prepare(cfg: RFTConfig) -> tuple[Any, Any, RFTStats]:
    """Steps 1-2 and the dataset: ``(dataset, processor, stats)``; writes ``rft_stats.json``.

    Raises ValueError when no candidate survived the filter.
    """
    stats = RFTStats()

    def rows(labelled: list[EQAInstance]) -> list[dict[str, Any]]:
        judgements, _ = candidate_judgements(cfg, labelled, stats)
        pairs = select_targets(labelled, judgements, cfg.tau, stats)
        return sft_rows(pairs, cfg.num_keyframes)

    def tokens(example: dict[str, Any], processor: Any) -> int:
        return example_tokens(example, processor, cfg)

    dataset, processor = prepare_dataset(cfg, "RFT", stats, rows, tokens, cfg.max_tokens)
    return dataset, processor, stats


class RFTTrainer(ResumeWeights, SFTTrainer):
    """TRL's ``SFTTrainer`` whose resume loads every weight (see ``ResumeWeights``)."""


def train_rft(cfg: RFTConfig, callbacks: list | None = None):
    """Run RFT end to end; returns the trainer (the model is saved in ``output_dir``).

    Resumes from the newest complete checkpoint in ``output_dir`` when there is one.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects.
    """
    dataset, processor, _ = prepare(cfg)
    return train_with_resume(RFTTrainer, cfg, dataset, processor, callbacks)
