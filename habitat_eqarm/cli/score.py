"""`eqarm score`: the reward model's critique(s) and score for one answer about one episode."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.config import (
    KeyframeOptions,
    SamplingOptions,
    ScoringConfig,
    VoteOptions,
)


@dataclass
class ScoreConfig(KeyframeOptions, VoteOptions, SamplingOptions):
    """Options of `eqarm score`: the episode and answer, and ``ScoringConfig``'s sampling,
    vote and keyframe sections."""

    episode: str = field(metadata={"help": "episode folder (OpenEQA layout) or video"})
    question: str = field(metadata={"help": "the question"})
    answer: str = field(metadata={"help": "the agent's answer"})
    reasoning: list[str] = field(
        default_factory=list, metadata={"help": "reasoning steps, one argument each"}
    )
    model: str | None = field(default=None, metadata={"help": "path or hub id (default: tiny)"})
    backend: str = "hf"
    aggregate: str = field(
        default="majority", kw_only=True, metadata={"help": "mean, majority or median"}
    )
    json_out: bool = field(default=False, metadata={"help": "print the judgement as JSON"})


def make_parser():
    """The `eqarm score` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ScoreConfig)


def main(cfg: ScoreConfig) -> int:
    """Score one answer and print the critique(s) and score."""
    from habitat_eqarm.cli.common import resolve_model
    from habitat_eqarm.rewards.model import EQARewardModel

    model_name, _ = resolve_model(cfg.model)
    instance = EQAInstance(
        question_id="cli",
        question=cfg.question,
        predicted_answer=cfg.answer,
        reasoning_steps=list(cfg.reasoning),
        episode_path=cfg.episode,
    )
    with EQARewardModel.from_pretrained(
        model_name,
        cfg.backend,
        num_keyframes=cfg.num_keyframes,
        keyframe_method=cfg.keyframe_method,
        max_pixels=cfg.max_pixels,
    ) as model:
        (judgement,) = model.score([instance], ScoringConfig.of(cfg))
    if cfg.json_out:
        print(json.dumps(judgement.to_dict(), indent=2))
        return 0
    for i, sample in enumerate(judgement.samples, 1):
        status = f"score {sample.score}" if sample.format_ok else "malformed (no score)"
        print(f"--- sample {i}/{cfg.k}: {status}\n{sample.critique or sample.text.strip()}")
    score = "none (no well-formed sample)" if judgement.score is None else f"{judgement.score:g}"
    print(f"\nscore ({cfg.aggregate} of {judgement.n_valid} valid of {cfg.k}): {score}")
    return 0
