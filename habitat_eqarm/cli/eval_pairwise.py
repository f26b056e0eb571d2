"""`eqarm eval --protocol pairwise|semi-scalar`: the pairwise reports of `eqarm eval`.

``pairwise``: the reward model reads both responses of each pair (two responses to one
question with different GT scores) and names the better, K times in each order, (A, B) and
(B, A). Writes ``results.json`` (``protocol``, ``by_k``: per order accuracy, first-position
wins, ties, invalid outcomes; their mean; both orders' votes pooled; position bias; order
consistency and the accuracy on consistent pairs; breakdowns by category and source;
invalid samples by reason), ``pairwise.md``, ``table2.md`` (accuracy per category),
``invalid.md``, ``pairwise_scaling.png`` and the cache ``pairs.jsonl`` (a killed run resumes).
The K votes of an order are combined by majority (``--aggregate`` is for scores); ``--limit``
keeps the first N instances, then pairs them.

``semi-scalar``: everything `eqarm eval` writes (critique, then a score, per response), plus
the same pairwise report from comparing the two responses' scores (ties counted), in
``results.json`` under ``pairs``, ``pairwise.md`` and ``pairwise_scaling.png``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from habitat_eqarm.bench.pairwise import VOTE, build_pairs, score_pair_report, verdict_report
from habitat_eqarm.bench.pairwise_report import plot_pairwise_scaling, table_invalid, table_pairwise
from habitat_eqarm.bench.report import table_by_category
from habitat_eqarm.cli.eval import check_instances, fingerprint, sample_with_engine, settings_from
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.loading import load_instances
from habitat_eqarm.data.schema import InstanceError
from habitat_eqarm.rewards.pairwise import PAIRWISE_PROMPT, PairJudgement
from habitat_eqarm.rewards.sample_cache import SampleCache


def pairs_of(instances, where: str):
    """The pairs of ``instances``; refuses data with none (nothing to compare)."""
    pairs = build_pairs(instances)
    if not pairs:
        raise InstanceError(
            f"{where}: no two responses to one question with different gt_score; pairs need "
            "question ids '<question>#<n>'"
        )
    return pairs


def main(cfg) -> int:
    """Judge every pair in both orders at the largest K and write the reports; returns 0."""
    from habitat_eqarm.cli.common import progress_bar

    settings = settings_from(cfg)
    instances = load_instances(cfg.data, cfg.split, cfg.data_root)[: cfg.limit]
    check_instances(instances, str(cfg.data))
    pairs = pairs_of(instances, str(cfg.data))
    out = Path(cfg.out)
    stamp = {**fingerprint(cfg, settings), "prompt_id": PAIRWISE_PROMPT.id}
    cache = SampleCache(out / "pairs.jsonl", stamp, record_type=PairJudgement).load()
    with progress_bar(len(pairs), f"pairwise K={max(settings.ks)} x 2 orders") as bar:
        judgements, failures = sample_with_engine(
            cfg, pairs, settings, cache, bar.update, method="judge_pairs"
        )
    report = verdict_report(pairs, judgements, settings)
    shown = sorted({str(min(settings.ks)), str(max(settings.ks))}, key=int)
    results = {
        "config": asdict(cfg),
        "protocol": "pairwise",
        "prompt_id": PAIRWISE_PROMPT.id,
        "note": "every K uses the first K of the same max(K) verdicts per pair and order",
        "n_instances": len(instances),
        "n_pairs": len(pairs),
        "n_judged": sum(p.question_id in judgements for p in pairs),
        "failures": failures,
        "by_k": report,
    }
    tables = {
        "pairwise.md": table_pairwise(report, VOTE, cfg.model),
        "table2.md": table_by_category(report, VOTE, shown),
        "invalid.md": table_invalid(report, VOTE),
    }
    _write(out, results, tables, report, VOTE)
    if failures:
        print(f"{len(failures)} pair(s) failed and were skipped; see results.json")
    return 0


def write_semi_scalar(out: Path, cfg, settings, instances, judgements) -> None:
    """Add the pairwise report from the pointwise scores to ``results.json`` and write
    ``pairwise.md`` and ``pairwise_scaling.png`` (the first aggregate)."""
    report = score_pair_report(pairs_of(instances, str(cfg.data)), judgements, settings)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results["protocol"] = "semi-scalar"
    results["pairs"] = report
    main_agg = settings.aggregates[0]
    title = f"{cfg.model} (the two responses' scores compared)"
    tables = {"pairwise.md": table_pairwise(report, main_agg, title, "K samples per response")}
    _write(out, results, tables, report, main_agg)


def _write(out: Path, results: dict, tables: dict[str, str], report: dict, aggregate: str):
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    for name, text in tables.items():
        atomic_write_text(out / name, text)
        print(text)
    plot_pairwise_scaling(report, aggregate, out / "pairwise_scaling.png")
    print(f"pairwise reports in {out}")
