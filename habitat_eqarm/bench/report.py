"""Reports people look at: Markdown tables shaped like the paper's and PNG plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from habitat_eqarm.data.io import atomic_path

SOURCE_COLUMNS = (("hm3d", "HM3D (OOD)"), ("scannet", "ScanNet (ID)"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _with_ci(metrics: dict[str, Any], key: str, fmt=_pct) -> str:
    """``61.86 [58.10, 65.40]``: the value and its bootstrap interval, when there is one."""
    cell = fmt(metrics.get(key))
    interval = metrics.get("ci", {}).get(key, {})
    if interval.get("lo") is None or metrics.get(key) is None:
        return cell
    return f"{cell} [{fmt(interval['lo'])}, {fmt(interval['hi'])}]"


def table_by_source(
    report: dict[str, Any],
    aggregate: str,
    model: str,
    formats: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Table 1's shape: accuracy per source and overall, RMSE, malformed outputs; a row per K.

    Accuracy, RMSE and pairwise accuracy show their bootstrap interval in brackets when the
    report has one; ECE has none. ``formats``
    (:func:`~habitat_eqarm.bench.evaluate.format_report`) adds the per-sample format-failure
    rate (the paper's) next to the instances with no valid sample.
    """
    lines = [
        f"Accuracy (%, |pred - gt| <= tau) and RMSE of {model}, {aggregate} over K samples "
        "(smaller K are prefixes of the same samples), with percentile-bootstrap intervals "
        "[lo, hi]. Pairwise: % of same-question pairs with different GT scores ordered "
        "right. ECE: calibration error of score/10 against correct = GT score >= the "
        "threshold in results.json. Malformed samples: % of all K samples per instance that "
        "did not parse; no valid sample: instances none of whose K samples parsed (a miss "
        "for accuracy, left out of RMSE and ECE).",
        "",
        "| K | "
        + " | ".join(title for _, title in SOURCE_COLUMNS)
        + " | Overall | RMSE | pairwise | ECE | malformed samples | no valid sample |",
        "|---" * (len(SOURCE_COLUMNS) + 7) + "|",
    ]
    for k, per_agg in report.items():
        r = per_agg[aggregate]
        by_source = [_with_ci(r["by_source"].get(src, {}), "accuracy") for src, _ in SOURCE_COLUMNS]
        overall = r["overall"]
        ece = r.get("calibration", {}).get("overall", {}).get("ece")
        f = (formats or {}).get(k)
        malformed = (
            "-"
            if f is None
            else (f"{_pct(f['sample_failure_rate'])} ({f['malformed_samples']}/{f['samples']})")
        )
        lines.append(
            f"| {k} | {' | '.join(by_source)} | {_with_ci(overall, 'accuracy')} | "
            f"{_with_ci(overall, 'rmse', _num)} | {_with_ci(r.get('pairwise', {}), 'accuracy')} | "
            f"{_num(ece)} | {malformed} | {overall['n_invalid']}/{overall['n']} |"
        )
    return "\n".join(lines) + "\n"


def table_by_category(report: dict[str, Any], aggregate: str, ks: Sequence[str]) -> str:
    """Table 2's shape: accuracy per OpenEQA category, one column per chosen K."""
    categories = sorted({c for k in ks for c in report[k][aggregate]["by_category"]})
    lines = [
        f"Accuracy (%) by question category, {aggregate} over K samples.",
        "",
        "| category | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---" * (len(ks) + 1) + "|",
    ]
    for cat in categories:
        cells = [_pct(report[k][aggregate]["by_category"].get(cat, {}).get("accuracy")) for k in ks]
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_scaling(report: dict[str, Any], aggregates: Sequence[str], path: str | os.PathLike[str]):
    """Accuracy and RMSE against K (log-2 axis), one line per aggregate; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in report]
    fig, (ax_acc, ax_rmse) = plt.subplots(1, 2, figsize=(9, 3.5))
    for aggregate in aggregates:
        acc = [report[str(k)][aggregate]["overall"]["accuracy"] for k in ks]
        rmse = [report[str(k)][aggregate]["overall"]["rmse"] for k in ks]
        ax_acc.plot(ks, [None if a is None else 100 * a for a in acc], marker="o", label=aggregate)
        ax_rmse.plot(ks, rmse, marker="o", label=aggregate)
    ax_acc.set_ylim(0, 100)
    if all(report[str(k)][a]["overall"]["rmse"] is None for k in ks for a in aggregates):
        ax_rmse.text(0.5, 0.5, "no valid predictions", ha="center", transform=ax_rmse.transAxes)
    for ax, title in ((ax_acc, "accuracy (%)"), (ax_rmse, "RMSE")):
        k_axis(ax, ks, "K samples", title)
    fig.tight_layout()
    _save(fig, path)


def k_axis(ax, ks: Sequence[int], label: str, title: str) -> None:
    """A log-2 K axis with a tick per K, the title, a light grid and the legend."""
    ax.set_xlim(min(ks) / 1.3, max(ks) * 1.3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_histogram(
    pred: Sequence[float | None], gt: Sequence[float], path: str | os.PathLike[str], title: str
):
    """Histogram of predicted vs ground-truth scores (0..10); invalid predictions counted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = [p for p in pred if p is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [b - 0.5 for b in range(12)]
    ax.hist([gt, valid], bins=bins, label=["ground truth", "predicted"], alpha=0.8)
    ax.set_xticks(range(11))
    ax.set_xlabel("score")
    ax.set_ylabel("instances")
    ax.set_title(f"{title} ({len(pred) - len(valid)} invalid of {len(pred)})")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_reliability(calibration: dict[str, Any], path: str | os.PathLike[str], title: str):
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal.

    ``calibration``: one ``{"overall", "by_source"}`` entry of the report
    (:func:`~habitat_eqarm.bench.metrics.expected_calibration_error` results). Bars: overall
    accuracy per bin; markers: each source; below, how many responses fall in each bin.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = calibration["overall"]
    width = 1.0 / overall["n_bins"]
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    lows = [b["lo"] for b in overall["bins"]]
    acc = [b["accuracy"] or 0.0 for b in overall["bins"]]
    ax.bar(lows, acc, width=width, align="edge", alpha=0.6, edgecolor="k", label="overall")
    for source, cal in calibration.get("by_source", {}).items():
        points = [(b["confidence"], b["accuracy"]) for b in cal["bins"] if b["n"]]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", linestyle="", label=str(source))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"share correct (GT score >= {overall['correct_at']:g})")
    ece = "n/a" if overall["ece"] is None else f"{overall['ece']:.3f}"
    ax.set_title(
        f"{title}: ECE {ece}, {overall['n']} valid of {overall['n'] + overall['n_invalid']}"
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax_n.bar(lows, [b["n"] for b in overall["bins"]], width=width, align="edge", edgecolor="k")
    ax_n.set_xlabel("confidence (predicted score / 10)")
    ax_n.set_ylabel("responses")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str | os.PathLike[str]) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)
