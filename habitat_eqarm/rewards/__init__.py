"""EQA-RM scoring: prompts, strict output parsing, the reward model, the gym wrappers.

The names below are imported on first use; backends are in :mod:`habitat_eqarm.rewards.backends`.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.rewards.config import ScoringConfig
    from habitat_eqarm.rewards.episode_scoring import RewardShaping
    from habitat_eqarm.rewards.model import EQARewardModel, Judgement, Sample
    from habitat_eqarm.rewards.parsing import (
        AGGREGATES,
        ParsedEvaluation,
        aggregate_scores,
        lenient_score,
        parse_evaluation,
    )
    from habitat_eqarm.rewards.prompts import (
        GENERATOR_PROMPT,
        JUDGE_PROMPT,
        PROMPTS,
        REWARD_MODEL_PROMPT,
        Prompt,
        build_messages,
    )
    from habitat_eqarm.rewards.revision import REVISION_PROMPT, revision_messages
    from habitat_eqarm.rewards.vector import EQARMVectorReward, unbatch_info
    from habitat_eqarm.rewards.wrapper import REVISE, EQARMReward

__all__ = [
    "AGGREGATES",
    "GENERATOR_PROMPT",
    "JUDGE_PROMPT",
    "PROMPTS",
    "REVISE",
    "REVISION_PROMPT",
    "REWARD_MODEL_PROMPT",
    "EQARMReward",
    "EQARMVectorReward",
    "EQARewardModel",
    "Judgement",
    "ParsedEvaluation",
    "Prompt",
    "RewardShaping",
    "Sample",
    "ScoringConfig",
    "aggregate_scores",
    "build_messages",
    "lenient_score",
    "parse_evaluation",
    "revision_messages",
    "unbatch_info",
]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
