"""`eqarm train agent`: GRPO for an EQA agent with EQA-RM as the reward (in the loop).

Every ``AgentGRPOConfig`` field is an option; ``--config configs/agent_grpo.yaml`` holds the
defaults. EQA-RM runs in-process (``--rm_backend hf --rm_device cuda:1``) or behind an endpoint
(``--rm_backend openai --rm_base_url http://host:8000/v1``, e.g. ``eqarm serve``).
"""

from __future__ import annotations

import json
from pathlib import Path


def make_parser():
    """The `eqarm train agent` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig

    return TrlParser(AgentGRPOConfig)


def main(cfg) -> int:
    """Run agent GRPO and say where the agent and the curves are; returns 0."""
    from habitat_eqarm.training.agent_grpo import train_agent_grpo

    trainer = train_agent_grpo(cfg)
    stats = json.loads((Path(cfg.output_dir) / "agentgrpo_stats.json").read_text())
    print(f"data: {json.dumps(stats)}")
    rm = trainer.rm_reward
    if rm is not None:
        print(f"EQA-RM calls: {rm.calls} ({rm.seconds:.1f} s in the reward model)")
    print(f"trained {trainer.state.global_step} steps; agent saved in {cfg.output_dir}")
    print(f"curves: {Path(cfg.output_dir) / cfg.curves_png}")
    return 0
