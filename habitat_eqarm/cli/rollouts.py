"""`eqarm rollouts`: play a policy over an env and write the episodes as EQA-RM data.

The output JSONL goes unchanged into `eqarm bench judge` (ground-truth scores) and then
`eqarm train rft`; see :mod:`habitat_eqarm.agents.rollouts`.
"""

from __future__ import annotations

from habitat_eqarm.agents.rollouts import RolloutsConfig, make_policy, run_rollouts


def make_parser():
    """The `eqarm rollouts` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(RolloutsConfig)


def main(cfg: RolloutsConfig) -> int:
    """Play the episodes, print the run's counts; returns 0."""
    from habitat_eqarm.cli.common import progress_bar, resolve_model

    model = resolve_model(cfg.model)[0] if cfg.policy == "vlm" else None
    policy = make_policy(cfg, model)
    try:
        report = run_rollouts(cfg, policy=policy, progress=progress_bar)
    finally:
        if hasattr(policy, "close"):
            policy.close()
    print(report.markdown())
    print(f"rollouts in {cfg.out} (report: {cfg.out}.report.json)")
    return 0
