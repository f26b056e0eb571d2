"""Per-seed effects of the learning toys that the "it learns" tests check (docs/testing.md).

For each seed s: a tiny Qwen2-VL with random weights of seed s, RFT on the toy set with
training seed s (effect: well-formed rate after minus before), then from that RFT model three
C-GRPO runs with seed s on the inverted-label toy (``habitat_eqarm.testing.learning``): an
lr-0 control, C-GRPO with every contrast, and plain GRPO (every contrast off). Effects: mean
Eq. 3 accuracy reward over the second half of training, minus the control's.

The tests set their thresholds at no more than half the smallest effect this prints over 5
seeds. Seed 0 is exactly the tests' run. Prints a Markdown table, then one JSON object as the
last line.

Usage: python benchmarks/learning_effects.py [--seeds 0 1 2 3 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from habitat_eqarm.data import read_jsonl
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.learning import (
    CONTROL,
    cgrpo_config,
    format_valid_rate,
    inverted_labels,
    late_accuracy,
    opposite_extreme_labels,
    rft_config,
)
from habitat_eqarm.testing.toy import make_toy_rft_set
from habitat_eqarm.training.cgrpo import train_cgrpo
from habitat_eqarm.training.rft import train_rft

TOYS = {"inverted": inverted_labels, "extreme": opposite_extreme_labels}
RUNS = {
    "control": CONTROL,
    "cgrpo": {},
    "grpo": dict(temporal=False, spatial=False, reasoning=False),
}


def one_seed(root: Path, seed: int, toy: tuple[Path, Path], data: Path) -> dict:
    """RFT and the three C-GRPO runs for one seed; their measured quantities."""
    tiny = make_tiny_model(root / f"tiny-{seed}", seed=seed)
    held_out = read_jsonl(toy[0])[:8]
    before = format_valid_rate(tiny, held_out)
    rft_dir = root / f"rft-{seed}"
    train_rft(rft_config(rft_dir, tiny, toy, seed=seed))
    after = format_valid_rate(rft_dir, held_out)
    row = {"seed": seed, "format_before": before, "format_after": after}
    for name, kw in RUNS.items():
        start = time.perf_counter()
        trainer = train_cgrpo(cgrpo_config(root / f"{name}-{seed}", rft_dir, data, seed=seed, **kw))
        row[f"{name}_late_accuracy"] = late_accuracy(trainer.state.log_history)
        row[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
    row["rft_effect"] = after - before
    row["cgrpo_effect"] = row["cgrpo_late_accuracy"] - row["control_late_accuracy"]
    row["grpo_effect"] = row["grpo_late_accuracy"] - row["control_late_accuracy"]
    row["cgrpo_minus_grpo"] = row["cgrpo_late_accuracy"] - row["grpo_late_accuracy"]
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| seed | format before → after RFT | RFT effect | late accuracy: control / C-GRPO / "
        "GRPO | C-GRPO effect | GRPO effect | C-GRPO − GRPO |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['format_before']:.3f} → {r['format_after']:.3f} | "
            f"{r['rft_effect']:.3f} | {r['control_late_accuracy']:.3f} / "
            f"{r['cgrpo_late_accuracy']:.3f} / {r['grpo_late_accuracy']:.3f} | "
            f"{r['cgrpo_effect']:+.3f} | {r['grpo_effect']:+.3f} | {r['cgrpo_minus_grpo']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument(
        "--toy", choices=sorted(TOYS), default="inverted", help="C-GRPO labels (module doc)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        toy = make_toy_rft_set(root / "toy")
        data = TOYS[args.toy](toy[0], root / f"{args.toy}.jsonl")
        rows = [one_seed(root, seed, toy, data) for seed in args.seeds]
    print(table(rows))
    summary = {
        key: {
            "min": min(r[key] for r in rows),
            "mean": statistics.fmean(r[key] for r in rows),
            "max": max(r[key] for r in rows),
        }
        for key in ("rft_effect", "cgrpo_effect", "grpo_effect", "cgrpo_minus_grpo")
    }
    print(json.dumps({"toy": args.toy, "seeds": args.seeds, "summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
