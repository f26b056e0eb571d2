"""`eqarm train rft`: rejective fine-tuning (candidates, Eq. 1's filter, SFT on TRL).

Every ``RFTConfig`` field is an option; ``--config configs/rft.yaml`` holds the paper's
defaults. Multi-GPU: ``accelerate launch --config_file configs/accelerate/zero3.yaml
-m habitat_eqarm.cli.main train rft --config configs/rft.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_parser():
    """The `eqarm train rft` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    from habitat_eqarm.training.rft_config import RFTConfig

    return TrlParser(RFTConfig)


def main(cfg) -> int:
    """Run RFT and print the filter's statistics; returns 0."""
    from habitat_eqarm.training.rft import train_rft

    trainer = train_rft(cfg)
    if not trainer.is_world_process_zero():  # several processes: one report
        return 0
    stats = json.loads((Path(cfg.output_dir) / "rft_stats.json").read_text())
    print(f"rejective filter: {json.dumps(stats)}")
    print(f"trained {trainer.state.global_step} steps; model saved in {cfg.output_dir}")
    return 0
