"""What `eqarm eval --protocol multi` adds to the pointwise evaluation (issue 14, points 2-3, 5).

The responses to one question are scored in one prompt per vote
(:func:`~habitat_eqarm.rewards.sample_cache.sample_all_multi`); every report of the pointwise
run (K = 1..Kmax curves, tables, plots) is then computed the same way from the per-response
judgements. ``results.json`` gains ``invalid_reasons`` (why votes were invalid, counted per
response and sample at Kmax) and ``position_bias`` (mean score by listed position), and
``--compare_with`` a pointwise run's folder writes ``agreement.md`` / ``agreement.json``
(:mod:`habitat_eqarm.bench.agreement`).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

from habitat_eqarm.bench.agreement import agreement_report, agreement_table
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.rewards.multi_response import MULTI_RESPONSE_PROMPT
from habitat_eqarm.rewards.sample_cache import SampleCache, sample_all_multi


def check_protocol(cfg) -> None:
    """``--compare_with`` only where it means something, and naming an eval's folder; the
    multi protocol runs in this process (``--engine local``)."""
    if cfg.protocol == "multi" and getattr(cfg, "engine", "local") != "local":
        raise ValueError("--protocol multi runs with --engine local")
    if cfg.compare_with and cfg.protocol != "multi":
        raise ValueError("--compare_with compares a multi-response run with a pointwise one")
    if cfg.compare_with and not (Path(cfg.compare_with) / "samples.jsonl").is_file():
        raise ValueError(f"--compare_with {cfg.compare_with}: no samples.jsonl of an eval there")


def protocol_fingerprint(cfg, fingerprint: dict) -> dict:
    """The sample cache's fingerprint: the pointwise one, or the multi prompt and shuffling."""
    if cfg.protocol != "multi":
        return fingerprint
    return {
        **fingerprint,
        "prompt_id": MULTI_RESPONSE_PROMPT.id,
        "protocol": "multi",
        "shuffle": cfg.shuffle,
    }


def sampler(cfg):
    """``sample_all_multi`` for the multi protocol; None means the pointwise ``sample_all``."""
    if cfg.protocol != "multi":
        return None
    return functools.partial(sample_all_multi, shuffle=cfg.shuffle)


def invalid_reasons(judgements) -> dict[str, int]:
    """How often each reason made a sample invalid (per response and sample), most common first."""
    reasons = Counter(s.reason for j in judgements.values() for s in j.samples if s.reason)
    return dict(reasons.most_common())


def position_bias(judgements) -> dict[str, dict[str, float]]:
    """Mean valid score, and valid samples, by the position a response was listed at (from 1).

    With shuffled votes every response visits the positions at random, so a trend over the
    positions is the judge's bias, not the responses'.
    """
    by_position: dict[int, list[int]] = {}
    for judgement in judgements.values():
        for s in judgement.samples:
            if s.position is not None and s.score is not None:
                by_position.setdefault(s.position + 1, []).append(s.score)
    return {
        str(p): {"mean_score": sum(v) / len(v), "samples": len(v)}
        for p, v in sorted(by_position.items())
    }


def extra_results(cfg, settings, instances, judgements) -> dict:
    """Keys the multi protocol adds to ``results.json``."""
    if cfg.protocol != "multi":
        return {}
    return {
        "protocol": "multi",
        "invalid_reasons": invalid_reasons(judgements),
        "position_bias": position_bias(judgements),
    }


def write_comparison(out: Path, cfg, settings, instances, judgements) -> None:
    """``agreement.md`` and ``agreement.json`` against ``cfg.compare_with`` (if given)."""
    if not cfg.compare_with:
        return
    theirs = SampleCache(Path(cfg.compare_with) / "samples.jsonl", {}).load(accept_any=True)
    report = agreement_report(
        instances, judgements, theirs.entries, settings.ks, settings.aggregates[0], settings.tau
    )
    report["compare_with"] = str(cfg.compare_with)
    table = agreement_table(report, "multi", "pointwise")
    atomic_write_text(out / "agreement.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "agreement.md", table)
    print(table)
