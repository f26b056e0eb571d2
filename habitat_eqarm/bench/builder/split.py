"""Stage 4 of EQARewardBench (docs/method.md §2, paper Table 4): room-disjoint splits.

Like the paper: the benchmark ``test`` (D_B) holds every HM3D episode (out of distribution for
a model fine-tuned on ScanNet) and part of the ScanNet episodes (in distribution); the
fine-tuning set ``train`` (D_F) holds the other ScanNet episodes. Whole rooms are assigned
(:func:`~habitat_eqarm.data.openeqa.room_of`: a ScanNet scene with all its rescans
``sceneXXXX_00``, ``_01``.., an HM3D scene), so no room, and hence no episode memory, is in
both; OpenEQA's 89 ScanNet episodes are 74 rooms. :func:`check_disjoint` verifies it before
anything is written and names every shared room. The ScanNet share of the benchmark is a
fraction of ScanNet instances (paper: 713 of 1,410, about one half) or an instance count,
reached as closely as whole rooms allow; the room order is shuffled with ``seed``.

Writes ``test.jsonl``, ``train.jsonl``, ``summary.md`` (by source, by category) and
``summary.json`` into ``out``.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.bench.builder.common import StageReport, read_instances, split_list
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.openeqa import room_of
from habitat_eqarm.data.schema import (
    EQAInstance,
    InstanceError,
    base_question_id,
    check_unique_ids,
    write_jsonl,
)

SPLITS = ("test", "train")
SPLIT_NAMES = {"test": "benchmark D_B, EQARewardBench", "train": "fine-tuning D_F"}
DESTINATIONS = (*SPLITS, "drop")


@dataclass
class SplitConfig:
    """Options of `eqarm bench split`."""

    data: str = field(
        default="outputs/bench/verified.jsonl",
        metadata={"help": "reviewed JSONL file(s), comma-separated (e.g. every reviewer's)"},
    )
    out: str = field(default="outputs/bench/splits", metadata={"help": "output folder"})
    scannet_benchmark_fraction: float = field(
        default=0.5, metadata={"help": "share of ScanNet instances in the benchmark (paper ~0.5)"}
    )
    benchmark_scannet: int | None = field(
        default=None, metadata={"help": "ScanNet instances in the benchmark (overrides fraction)"}
    )
    hm3d_split: str = field(
        default="test", metadata={"help": "HM3D episodes go to: test, train, drop"}
    )
    other_split: str = field(
        default="test", metadata={"help": "other sources go to: test, train, drop"}
    )
    require_review: bool = field(
        default=True, metadata={"help": "leave out instances without a human review"}
    )
    seed: int = 0


def gather(cfg: SplitConfig, report: StageReport) -> list[EQAInstance]:
    """Labelled, reviewed instances from every input file; duplicates are an error."""
    paths = split_list(cfg.data)
    if not paths:
        raise ValueError("--data names no file")
    loaded = [(path, read_instances(path)) for path in paths]
    check_unique_ids(loaded)
    out = []
    for _, instances in loaded:
        for inst in instances:
            status = inst.meta.get("review", {}).get("status")
            if status == "rejected":
                report.skip(inst.question_id, "rejected by a reviewer")
            elif cfg.require_review and status is None:
                report.skip(inst.question_id, "not reviewed (--require_review false keeps it)")
            elif inst.gt_score is None:
                report.skip(inst.question_id, "no GT score")
            elif not inst.episode_id:
                report.skip(inst.question_id, "no episode_id: cannot keep splits disjoint")
            else:
                out.append(inst)
    report.total = sum(len(instances) for _, instances in loaded)
    return out


def scannet_target(cfg: SplitConfig, total: int) -> int:
    """How many ScanNet instances the benchmark should get."""
    if cfg.benchmark_scannet is not None:
        if cfg.benchmark_scannet < 0:
            raise ValueError("--benchmark_scannet must be at least 0")
        return min(cfg.benchmark_scannet, total)
    if not 0.0 <= cfg.scannet_benchmark_fraction <= 1.0:
        raise ValueError("--scannet_benchmark_fraction must be in 0..1")
    return round(cfg.scannet_benchmark_fraction * total)


def pick_rooms(sizes: dict[str, int], target: int, seed: int) -> set[str]:
    """Whole rooms whose instance counts sum as close to ``target`` as a greedy pass gets.

    Rooms are visited in a seeded shuffle of their sorted ids; one is taken when that brings
    the sum no further from the target.
    """
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    chosen: set[str] = set()
    total = 0
    for room in order:
        if abs(total + sizes[room] - target) <= abs(total - target) and total < target:
            chosen.add(room)
            total += sizes[room]
    return chosen


def assign(instances: list[EQAInstance], cfg: SplitConfig) -> dict[str, list[EQAInstance]]:
    """Instances by split, every room (all its episodes) in exactly one split (or dropped)."""
    for option in ("hm3d_split", "other_split"):
        if getattr(cfg, option) not in DESTINATIONS:
            raise ValueError(f"--{option} must be one of {', '.join(DESTINATIONS)}")
    sources: dict[str, set[str]] = defaultdict(set)
    sizes: Counter = Counter()
    for inst in instances:
        room = room_of(inst.episode_id)
        sources[room].add(inst.source)
        if inst.source == "scannet":
            sizes[room] += 1
    mixed = sorted(r for r, s in sources.items() if len(s) > 1)
    if mixed:
        found = ", ".join(sorted(sources[mixed[0]]))
        raise InstanceError(f"room {mixed[0]!r} has instances from several sources ({found})")
    benchmark = pick_rooms(dict(sizes), scannet_target(cfg, sum(sizes.values())), cfg.seed)
    splits: dict[str, list[EQAInstance]] = {name: [] for name in SPLITS}
    for inst in instances:
        if inst.source == "scannet":
            where = "test" if room_of(inst.episode_id) in benchmark else "train"
        else:
            where = cfg.hm3d_split if inst.source == "hm3d" else cfg.other_split
        if where != "drop":
            splits[where].append(inst)
    return splits


def shared_rooms(splits: dict[str, list[EQAInstance]]) -> dict[str, dict[str, list[str]]]:
    """Rooms found in more than one split: room -> split -> its episodes there (sorted)."""
    where: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name, instances in splits.items():
        for inst in instances:
            where[room_of(inst.episode_id)][name].add(inst.episode_id)
    return {
        room: {name: sorted(episodes) for name, episodes in by_split.items()}
        for room, by_split in sorted(where.items())
        if len(by_split) > 1
    }


def check_disjoint(splits: dict[str, list[EQAInstance]]) -> None:
    """Raise if an instance id, or a room (hence an episode), is in more than one split.

    The error lists every shared room with its episodes in each split.
    """
    ids: dict[str, str] = {}
    for name, instances in splits.items():
        for inst in instances:
            if ids.setdefault(inst.question_id, name) != name:
                raise InstanceError(
                    f"instance {inst.question_id!r} is in {ids[inst.question_id]} and {name}"
                )
    shared = shared_rooms(splits)
    if shared:
        names = sorted({name for by_split in shared.values() for name in by_split})
        rows = [
            f"{room} ("
            + "; ".join(f"{name}: {', '.join(eps)}" for name, eps in by_split.items())
            + ")"
            for room, by_split in shared.items()
        ]
        raise InstanceError(
            f"{len(shared)} room(s) in both {' and '.join(names)}: " + ", ".join(rows)
        )


def summarise(splits: dict[str, list[EQAInstance]]) -> dict[str, Any]:
    """Counts per split: instances, questions, episodes, mean GT score, by source and category."""
    out: dict[str, Any] = {}
    for name, instances in splits.items():
        by_source: dict[str, Any] = {}
        for source in sorted({i.source for i in instances}):
            part = [i for i in instances if i.source == source]
            by_source[source] = _counts(part)
        out[name] = {
            **_counts(instances),
            "by_source": by_source,
            "by_category": dict(sorted(Counter(i.category for i in instances).items())),
        }
    return out


def _counts(instances: list[EQAInstance]) -> dict[str, Any]:
    scores = [i.gt_score for i in instances if i.gt_score is not None]
    return {
        "instances": len(instances),
        "questions": len({base_question_id(i.question_id) for i in instances}),
        "episodes": len({i.episode_id for i in instances}),
        "rooms": len({room_of(i.episode_id) for i in instances}),
        "mean_gt_score": round(sum(scores) / len(scores), 2) if scores else None,
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """Two Markdown tables: split x source (like the paper's Table 4), category x split/source."""
    lines = [
        "| split | source | instances | questions | episodes | rooms | mean GT score |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        for source, c in s["by_source"].items():
            lines.append(
                f"| {name} ({SPLIT_NAMES.get(name, name)}) | {source} | {c['instances']} | "
                f"{c['questions']} | {c['episodes']} | {c['rooms']} | {c['mean_gt_score']} |"
            )
        lines.append(
            f"| **{name} total** | | **{s['instances']}** | **{s['questions']}** | "
            f"**{s['episodes']}** | **{s['rooms']}** | **{s['mean_gt_score']}** |"
        )
    return "\n".join(lines) + "\n"


def category_markdown(splits: dict[str, list[EQAInstance]]) -> str:
    """Instances per category (rows) for each split and source (columns)."""
    columns = sorted({(n, i.source) for n, insts in splits.items() for i in insts})
    counts = Counter((n, i.source, i.category) for n, insts in splits.items() for i in insts)
    categories = sorted({c for _, _, c in counts})
    head = "| category | " + " | ".join(f"{n} {s}" for n, s in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    rows = [
        f"| {c} | " + " | ".join(str(counts[(n, s, c)]) for n, s in columns) + " |"
        for c in categories
    ]
    return "\n".join([head, rule, *rows]) + "\n"


def left_out_markdown(report: StageReport) -> str:
    """Instances read, kept, and left out by reason."""
    rows = [("instances read", report.total), ("kept in a split", report.done_now)]
    rows += sorted(report.to_dict()["skipped_by_reason"].items())
    return "| | instances |\n|---|---:|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def run_split(cfg: SplitConfig) -> tuple[dict[str, Any], StageReport]:
    """Make, verify and write the splits; returns the summary and the skip report."""
    report = StageReport("split")
    instances = gather(cfg, report)
    splits = assign(instances, cfg)
    check_disjoint(splits)
    out = Path(cfg.out)
    for name, part in splits.items():
        write_jsonl(out / f"{name}.jsonl", part)
    summary = summarise(splits)
    report.done_now = sum(len(p) for p in splits.values())
    report.counts.update({f"{n} instances": len(p) for n, p in splits.items()})
    document = {
        "config": asdict(cfg),
        "room_disjoint": True,  # check_disjoint raised otherwise
        "episode_disjoint": True,  # implied: an episode is in one room
        "splits": summary,
        "report": report.to_dict(),
    }
    atomic_write_text(out / "summary.json", json.dumps(document, indent=2) + "\n")
    markdown = (
        "# EQARewardBench splits\n\n"
        "Room-disjoint: yes (checked; a ScanNet scene's rescans count as one room), "
        "so episode-disjoint too.\n\n"
        f"{summary_markdown(summary)}\n## By category\n\n{category_markdown(splits)}\n"
        f"## Left out\n\n{left_out_markdown(report)}"
    )
    atomic_write_text(out / "summary.md", markdown)
    return summary, report
