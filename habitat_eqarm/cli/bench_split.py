"""`eqarm bench split`: room-disjoint benchmark (test) and fine-tuning (train) splits.

A shared room is refused: the error lists each one with its episodes in each split.
"""

from __future__ import annotations

from pathlib import Path

from habitat_eqarm.bench.builder.split import SplitConfig, run_split


def make_parser():
    """The `eqarm bench split` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(SplitConfig)


def main(cfg: SplitConfig) -> int:
    """Write the splits and their summary, print the summary; returns 0."""
    run_split(cfg)
    print((Path(cfg.out) / "summary.md").read_text(encoding="utf-8"))
    print(f"splits in {cfg.out}")
    return 0
