"""`eqarm bench judge`: ground-truth scores and critiques from a judge VLM (resumable)."""

from __future__ import annotations

from habitat_eqarm.bench.builder.judge import JudgeConfig, run_judge


def make_parser():
    """The `eqarm bench judge` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(JudgeConfig)


def main(cfg: JudgeConfig) -> int:
    """Judge the responses not judged yet and print the run's counts; returns 0."""
    from habitat_eqarm.cli.common import progress_bar

    report = run_judge(cfg, progress=progress_bar)
    print(report.markdown())
    print(f"judged responses in {cfg.out} (report: {cfg.out}.report.json)")
    return 0
