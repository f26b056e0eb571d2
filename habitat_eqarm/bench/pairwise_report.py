"""Pairwise reports people look at: a Markdown table with a row per K and a scaling plot."""

from __future__ import annotations

import os
from typing import Any

from habitat_eqarm.bench.report import _pct, _save, _with_ci, k_axis


def _consistent(r: dict[str, Any]) -> str:
    c = r["consistent"]
    return f"{_pct(c['rate'])} ({c['pairs']}/{r['pairs']})"


def table_pairwise(
    report: dict[str, Any], aggregate: str, title: str, over: str = "K votes per order"
) -> str:
    """A row per K: accuracy per order, their mean, both orders' votes pooled, the share of
    decided verdicts won by the first position, order consistency and the accuracy of the
    consistent verdicts; with bootstrap intervals [lo, hi] and the ties and invalid counts."""
    lines = [
        f"Pairwise accuracy (%) of {title}, {aggregate} over {over} (smaller K are "
        "prefixes of the same samples), percentile-bootstrap intervals over questions [lo, "
        "hi]. A pair: two responses to one question with different GT scores, asked in both "
        "orders. Ties and invalid outcomes are misses. First wins: % of decided verdicts "
        "that name the response shown first (0.5 = no position bias). Consistent: pairs "
        "whose two orders name the same response.",
        "",
        "| K | (A, B) | (B, A) | mean of orders | both orders' votes | first wins | consistent "
        "| accuracy when consistent | ties AB/BA | invalid AB/BA |",
        "|---" * 10 + "|",
    ]
    for k, per_agg in report.items():
        r = per_agg[aggregate]
        ab, ba = r["orders"]["AB"], r["orders"]["BA"]
        lines.append(
            f"| {k} | {_with_ci(ab, 'accuracy')} | {_with_ci(ba, 'accuracy')} | "
            f"{_with_ci(r, 'accuracy')} | {_with_ci(r['both_orders'], 'accuracy')} | "
            f"{_pct(r['position_bias'])} | {_consistent(r)} | "
            f"{_with_ci(r['consistent'], 'accuracy')} | {ab['ties']}/{ba['ties']} | "
            f"{ab['invalid']}/{ba['invalid']} |"
        )
    return "\n".join(lines) + "\n"


def table_invalid(report: dict[str, Any], aggregate: str) -> str:
    """Invalid verdict samples by reason and order, one row per K (generative protocol)."""
    reasons = sorted(
        {
            reason
            for per_agg in report.values()
            for counts in per_agg[aggregate].get("invalid_samples", {}).values()
            for reason in counts
        }
    )
    lines = [
        "Invalid verdict samples by reason, (A, B) / (B, A) order, of all K samples per order.",
        "",
        "| K | samples | " + " | ".join(reasons) + " |",
        "|---" * (len(reasons) + 2) + "|",
    ]
    for k, per_agg in report.items():
        r = per_agg[aggregate]
        counts = r.get("invalid_samples", {})
        cells = [f"{counts['AB'].get(x, 0)}/{counts['BA'].get(x, 0)}" for x in reasons]
        lines.append(f"| {k} | {r.get('samples', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_pairwise_scaling(report: dict[str, Any], aggregate: str, path: str | os.PathLike[str]):
    """Pairwise accuracy per order, pooled and on consistent pairs (left), and position bias
    and consistency (right), against K on a log-2 axis; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in report]
    rows = [report[str(k)][aggregate] for k in ks]

    def pct(values):
        return [None if v is None else 100 * v for v in values]

    fig, (ax_acc, ax_bias) = plt.subplots(1, 2, figsize=(9, 3.5))
    curves = {
        "(A, B)": [r["orders"]["AB"]["accuracy"] for r in rows],
        "(B, A)": [r["orders"]["BA"]["accuracy"] for r in rows],
        "both orders' votes": [r["both_orders"]["accuracy"] for r in rows],
        "when consistent": [r["consistent"]["accuracy"] for r in rows],
    }
    for label, values in curves.items():
        ax_acc.plot(ks, pct(values), marker="o", label=label)
    ax_bias.plot(ks, pct([r["position_bias"] for r in rows]), marker="o", label="first wins")
    ax_bias.plot(ks, pct([r["consistent"]["rate"] for r in rows]), marker="o", label="consistent")
    ax_bias.axhline(50, color="k", linestyle="--", linewidth=1)
    if all(r["position_bias"] is None for r in rows):
        ax_bias.text(0.5, 0.6, "no decided verdicts", ha="center", transform=ax_bias.transAxes)
    for ax, title in (
        (ax_acc, "pairwise accuracy (%)"),
        (ax_bias, "position bias, consistency (%)"),
    ):
        ax.set_ylim(0, 100)
        k_axis(ax, ks, "K votes per order", title)
    fig.tight_layout()
    _save(fig, path)
