"""`eqarm bench generate`: N responses per OpenEQA question from a generator VLM (resumable)."""

from __future__ import annotations

from habitat_eqarm.bench.builder.generate import GenerateConfig, run_generate


def make_parser():
    """The `eqarm bench generate` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(GenerateConfig)


def main(cfg: GenerateConfig) -> int:
    """Generate the missing responses and print the run's counts; returns 0."""
    from habitat_eqarm.cli.common import progress_bar

    report = run_generate(cfg, progress=progress_bar)
    print(report.markdown())
    print(f"responses in {cfg.out} (report: {cfg.out}.report.json)")
    return 0
