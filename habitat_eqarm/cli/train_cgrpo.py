"""`eqarm train cgrpo`: C-GRPO on TRL's GRPOTrainer, starting from the RFT model.

Every ``CGRPOConfig`` field is an option; ``--config configs/cgrpo.yaml`` holds the paper's
defaults and a second ``--config configs/cgrpo/ablation/<row>.yaml`` switches contrasts off
for a row of the paper's ablation table. Multi-GPU (the paper: 8 GPUs, batch 1 each):
``accelerate launch --config_file configs/accelerate/zero3.yaml -m habitat_eqarm.cli.main
train cgrpo --config configs/cgrpo.yaml --per_device_train_batch_size 1``.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_parser():
    """The `eqarm train cgrpo` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    from habitat_eqarm.training.cgrpo_config import CGRPOConfig

    return TrlParser(CGRPOConfig)


def main(cfg) -> int:
    """Run C-GRPO and say where the model and the curves are; returns 0."""
    from habitat_eqarm.training.cgrpo import train_cgrpo

    trainer = train_cgrpo(cfg)
    if not trainer.is_world_process_zero():  # several processes: one report
        return 0
    stats = json.loads((Path(cfg.output_dir) / "cgrpo_stats.json").read_text())
    print(f"data: {json.dumps(stats)}")
    print(f"contrasts: {', '.join(cfg.contrasts) or 'none (plain GRPO)'}")
    print(f"trained {trainer.state.global_step} steps; model saved in {cfg.output_dir}")
    print(f"curves (Fig. 2): {Path(cfg.output_dir) / cfg.curves_png}")
    return 0
