"""`eqarm train value-head`: a value head on the last token of each response (Bradley-Terry or
listwise loss on the bench's responses to one question); ``--config configs/value_head.yaml``.

Writes ``value_head.pt`` and ``value_head.json`` (backbone, sizes, metrics: pairwise accuracy of
the training groups before and after, and of ``--eval_data``) to ``--output_dir``.
"""

from __future__ import annotations

import json


def make_parser():
    """The `eqarm train value-head` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    from habitat_eqarm.training.value_head_config import ValueHeadConfig

    return TrlParser(ValueHeadConfig)


def main(cfg) -> int:
    """Train the value head and print its metrics; returns 0."""
    from habitat_eqarm.cli.common import progress_bar
    from habitat_eqarm.training.value_head import load_groups, train_value_head

    steps = len(load_groups(cfg.data, cfg.data_split, cfg.max_responses)) if cfg.data else 0
    with progress_bar(steps * cfg.epochs, f"value head ({cfg.loss})") as bar:
        metrics = train_value_head(cfg, progress=bar.update)
    print(json.dumps({k: v for k, v in metrics.items() if k != "epoch_losses"}))
    print(f"value head saved in {cfg.output_dir}")
    return 0
