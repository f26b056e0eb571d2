"""`eqarm eval`: accuracy and RMSE of a reward model on labelled instances, for every K.

Samples once at the largest K and reports each smaller K from prefixes of the same samples.
Writes ``results.json`` (metrics by K and aggregate, and ``format_by_k``: malformed samples
and instances with no valid sample by K), ``table1.md`` (per source), ``table2.md`` (per category),
``scaling.png`` (accuracy and RMSE against K), ``histogram.png``, ``reliability.png`` (the
reliability diagram of score/10 at the largest K) and the per-instance sample cache
``samples.jsonl``, from which a killed run resumes. Accuracy, RMSE and pairwise accuracy carry
percentile-bootstrap intervals (``ci``: ``lo``/``hi``), seeded with ``--seed``; the
calibration error (ECE) of score/10 counts a response correct iff its GT score is at least
``--correct_at``. Changing only these reporting options reuses every cached sample.

``--protocol pairwise`` or ``semi-scalar`` adds pairwise reports (:mod:`.eval_pairwise`).
``--protocol multi`` scores the responses to one question in one prompt per vote and reports
the same K curves (:mod:`habitat_eqarm.cli.eval_multi`; give ``--max_new_tokens`` room for N
evaluations); ``--compare_with`` a pointwise run's folder adds ``agreement.md``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from habitat_eqarm.bench.builder.common import public_kwargs
from habitat_eqarm.bench.evaluate import format_report, score_report
from habitat_eqarm.bench.metrics import CORRECT_AT
from habitat_eqarm.bench.report import (
    plot_histogram,
    plot_reliability,
    plot_scaling,
    table_by_category,
    table_by_source,
)
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.loading import load_instances
from habitat_eqarm.data.schema import InstanceError, check_unique_ids
from habitat_eqarm.rewards.backends.base import backend_kwargs
from habitat_eqarm.rewards.config import KeyframeOptions, SamplingOptions, field_names
from habitat_eqarm.rewards.parsing import AGGREGATES, aggregate_scores
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT
from habitat_eqarm.rewards.ray_engine import EngineOptions, check_engine
from habitat_eqarm.rewards.sample_cache import (
    EvalSettings,
    SampleCache,
    sample_all,
    sample_all_ray,
)

PROTOCOLS = ("pointwise", "semi-scalar", "pairwise", "multi")


@dataclass
class EvalConfig(KeyframeOptions, SamplingOptions, EngineOptions):
    """Options of `eqarm eval` (``--engine ray``: scored in Ray actors, same results), with
    ``ScoringConfig``'s sampling and keyframe sections (K and aggregates: lists here)."""

    model: str = field(metadata={"help": "reward model: local path or hub id"})
    data: str = field(metadata={"help": "labelled instances: .jsonl, .parquet or dataset folder"})
    out: str = field(default="outputs/eval", metadata={"help": "output folder"})
    k: str = field(default="1,2,4,8,16,32", metadata={"help": "comma-separated sample counts"})
    aggregate: str = field(default="majority,mean", metadata={"help": "mean, majority, median"})
    split: str | None = field(default=None, metadata={"help": "split of a DatasetDict"})
    data_root: str | None = field(default=None, metadata={"help": "base of relative episodes"})
    limit: int | None = field(default=None, metadata={"help": "evaluate the first N only"})
    backend: str = field(default="hf", metadata={"help": "reward-model backend"})
    backend_kwargs: str | None = field(
        default=None,
        metadata={"help": 'backend options: JSON, e.g. {"base_url": "http://host:8000/v1"}'},
    )
    seed: int = field(default=0, kw_only=True, metadata={"help": "sampling and bootstrap seed"})
    tau: float = field(default=2.0, metadata={"help": "accuracy tolerance |pred - gt| <= tau"})
    batch_size: int = 4
    bootstrap: int = field(
        default=1000, metadata={"help": "bootstrap resamples for the intervals (0: none)"}
    )
    ci_level: float = field(default=0.95, metadata={"help": "confidence level of the intervals"})
    ece_bins: int = field(default=10, metadata={"help": "equal-width bins of the ECE"})
    correct_at: float = field(
        default=CORRECT_AT, metadata={"help": "correct (for the ECE) iff GT score >= this"}
    )
    frames_as: str = field(default="images", metadata={"help": "images or video"})
    protocol: str = field(
        default="pointwise",
        metadata={
            "help": "pointwise, semi-scalar (pointwise, and its scores compared per "
            "pair), pairwise (a verdict on each pair, in both orders) or multi (the "
            "responses to a question in one prompt)"
        },
    )
    shuffle: bool = field(
        default=True, metadata={"help": "multi: each vote lists the responses in its own order"}
    )
    compare_with: str | None = field(
        default=None, metadata={"help": "multi: a pointwise eval's out folder; writes agreement.md"}
    )


def make_parser():
    """The `eqarm eval` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(EvalConfig)


def settings_from(cfg: EvalConfig) -> EvalSettings:
    """Sampling and reporting settings from the command's options (validated)."""
    ks = sorted({int(k) for k in cfg.k.split(",") if k.strip()})
    aggregates = [a.strip() for a in cfg.aggregate.split(",") if a.strip()]
    if not ks or ks[0] < 1:
        raise ValueError(f"--k must list positive sample counts, got {cfg.k!r}")
    for a in aggregates:
        aggregate_scores([], a)  # raises on an unknown name
    if cfg.bootstrap < 0 or not 0 < cfg.ci_level < 1 or cfg.ece_bins < 1:
        raise ValueError(
            f"need --bootstrap >= 0, 0 < --ci_level < 1 and --ece_bins >= 1, got "
            f"{cfg.bootstrap}, {cfg.ci_level}, {cfg.ece_bins}"
        )
    sampling = {name: getattr(cfg, name) for name in field_names(SamplingOptions)}
    return EvalSettings(
        ks=ks,
        aggregates=aggregates or list(AGGREGATES[:1]),
        **sampling,
        tau=cfg.tau,
        batch_size=cfg.batch_size,
        bootstrap=cfg.bootstrap,
        ci_level=cfg.ci_level,
        ece_bins=cfg.ece_bins,
        correct_at=cfg.correct_at,
    )


def fingerprint(cfg: EvalConfig, settings: EvalSettings) -> dict:
    """What makes cached samples reusable: same model, prompt, sampling and frames."""
    keys = ("model", "backend", "temperature", "top_p", "max_new_tokens", "seed")
    keys += ("num_keyframes", "keyframe_method", "frames_as", "max_pixels")
    return {
        **{k: getattr(cfg, k) for k in keys},
        "backend_kwargs": public_kwargs(cfg.backend_kwargs),
        "kmax": max(settings.ks),
        "prompt_id": REWARD_MODEL_PROMPT.id,
    }


def check_instances(instances, where: str) -> None:
    """Every instance labelled and uniquely identified, before any sampling.

    ``where``: the data the instances came from (named in errors).
    """
    check_unique_ids([(where, instances)])
    missing = [inst.question_id for inst in instances if inst.gt_score is None]
    if missing:
        raise InstanceError(f"{len(missing)} instance(s) lack gt_score, e.g. {missing[0]!r}")
    if not instances:
        raise InstanceError("no instances to evaluate")


def load_reward_model(cfg: EvalConfig):
    """The reward model the options name (backend, frames, batch size)."""
    from habitat_eqarm.rewards.model import EQARewardModel

    options = {"max_pixels": cfg.max_pixels, **backend_kwargs(cfg.backend_kwargs)}
    if cfg.backend == "hf":  # requests per forward pass; remote backends batch themselves
        options = {"batch_size": cfg.batch_size, **options}
    return EQARewardModel.from_pretrained(
        cfg.model,
        cfg.backend,
        num_keyframes=cfg.num_keyframes,
        keyframe_method=cfg.keyframe_method,
        frames_as=cfg.frames_as,
        **options,
    )


def sample_with_engine(cfg: EvalConfig, items, settings, cache, progress, method="score"):
    """``(judgements, failures)`` of :func:`sample_all` (``--engine local``: the model opened
    here, only if something is not cached) or :func:`sample_all_ray` (in Ray actors)."""
    if cfg.engine == "ray":
        opener = functools.partial(load_reward_model, cfg)
        return sample_all_ray(opener, items, settings, cache, cfg, progress, method)
    from habitat_eqarm.cli import eval_multi

    missing = any(item.question_id not in cache.entries for item in items)
    model = load_reward_model(cfg) if missing else None
    try:
        sample = eval_multi.sampler(cfg) or functools.partial(sample_all, method=method)
        return sample(model, items, settings, cache, progress=progress)
    finally:
        if model is not None:
            model.close()


def main(cfg: EvalConfig) -> int:
    """Run the evaluation and write the reports; returns 0."""
    from habitat_eqarm.cli import eval_multi, eval_pairwise
    from habitat_eqarm.cli.common import progress_bar

    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {cfg.protocol!r}")
    check_engine(cfg)
    if cfg.protocol == "pairwise":
        return eval_pairwise.main(cfg)
    settings = settings_from(cfg)
    eval_multi.check_protocol(cfg)
    instances = load_instances(cfg.data, cfg.split, cfg.data_root)[: cfg.limit]
    check_instances(instances, str(cfg.data))
    if cfg.protocol == "semi-scalar":  # refuse data without pairs before any sampling
        eval_pairwise.pairs_of(instances, str(cfg.data))
    out = Path(cfg.out)
    prints = eval_multi.protocol_fingerprint(cfg, fingerprint(cfg, settings))
    cache = SampleCache(out / "samples.jsonl", prints).load()
    with progress_bar(len(instances), f"eval K={max(settings.ks)}") as bar:
        judgements, failures = sample_with_engine(cfg, instances, settings, cache, bar.update)
    report = score_report(instances, judgements, settings)
    extra = eval_multi.extra_results(cfg, settings, instances, judgements)
    write_reports(out, cfg, settings, instances, judgements, report, failures, extra)
    if cfg.protocol == "semi-scalar":
        eval_pairwise.write_semi_scalar(out, cfg, settings, instances, judgements)
    eval_multi.write_comparison(out, cfg, settings, instances, judgements)
    return 0


def write_reports(out, cfg, settings, instances, judgements, report, failures, extra=None) -> None:
    """results.json (with ``extra``'s keys), the two tables, the scaling plot, the histogram and
    the reliability diagram."""
    main_agg = settings.aggregates[0]
    ks = [str(k) for k in settings.ks]
    shown = sorted({ks[0], ks[-1]}, key=int)
    formats = format_report(instances, judgements, settings.ks)
    table1 = table_by_source(report, main_agg, cfg.model, formats)
    table2 = table_by_category(report, main_agg, shown)
    results = {
        "config": asdict(cfg),
        "note": "every K uses the first K of the same max(K) samples per instance",
        "n_instances": len(instances),
        "n_scored": sum(inst.question_id in judgements for inst in instances),
        "failures": failures,
        "by_k": report,
        "format_by_k": formats,
        **(extra or {}),
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "table1.md", table1)
    atomic_write_text(out / "table2.md", table2)
    plot_scaling(report, settings.aggregates, out / "scaling.png")
    done = [inst for inst in instances if inst.question_id in judgements]
    kmax = max(settings.ks)
    pred = [judgements[i.question_id].prefix(kmax, main_agg).score for i in done]
    plot_histogram(pred, [i.gt_score for i in done], out / "histogram.png", f"K={kmax} {main_agg}")
    calibration = report[str(kmax)][main_agg]["calibration"]
    plot_reliability(calibration, out / "reliability.png", f"K={kmax} {main_agg}")
    print(table1)
    print(table2)
    if failures:
        print(f"{len(failures)} instance(s) failed and were skipped; see results.json")
    print(f"reports in {out}")
