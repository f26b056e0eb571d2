"""Stage 5 of EQARewardBench: a Hugging Face ``DatasetDict`` with a dataset card.

One folder serves every reader: ``save_to_disk`` files (``dataset_dict.json`` and one folder
per split) for ``datasets.load_from_disk``, ``eqarm eval --data FOLDER`` and the trainers;
``data/<split>-00000-of-00001.parquet`` plus ``README.md`` (a dataset card whose YAML header
lists the parquet files) for ``datasets.load_dataset(FOLDER)`` and the Hub. The folder is built
beside its destination and moved into place, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from habitat_eqarm.bench.builder.common import read_instances
from habitat_eqarm.bench.builder.split import SPLIT_NAMES, category_markdown, summarise
from habitat_eqarm.bench.builder.split import summary_markdown as split_table
from habitat_eqarm.data.schema import EQAInstance, to_dataset


@dataclass
class ExportConfig:
    """Options of `eqarm bench export`."""

    splits: str = field(
        default="outputs/bench/splits", metadata={"help": "folder of <split>.jsonl files"}
    )
    out: str = field(default="outputs/bench/EQARewardBench", metadata={"help": "output folder"})
    relative_to: str | None = field(
        default=None,
        metadata={"help": "store episode paths relative to this folder (the frames' root)"},
    )
    name: str = field(default="EQARewardBench", metadata={"help": "dataset name in the card"})


def read_splits(folder: str | os.PathLike[str]) -> dict[str, list[EQAInstance]]:
    """Every ``<split>.jsonl`` in ``folder``, by split name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ValueError(f"{folder}: no <split>.jsonl files (run `eqarm bench split` first)")
    return {path.stem: read_instances(path) for path in files}


def relative_episodes(splits: dict[str, list[EQAInstance]], root: str | None) -> int:
    """Make episode paths under ``root`` relative to it; returns how many stayed absolute."""
    if root is None:
        return 0
    base = Path(root).resolve()
    outside = 0
    for instances in splits.values():
        for inst in instances:
            if not inst.episode_path:
                continue
            path = Path(inst.episode_path).resolve()
            if path.is_relative_to(base):
                inst.episode_path = path.relative_to(base).as_posix()
            else:
                outside += 1
    return outside


def size_category(n: int) -> str:
    """The Hub's size bucket for ``n`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def provenance(splits: dict[str, list[EQAInstance]]) -> dict[str, Any]:
    """Who made the data: generator and judge models, prompt ids, review outcomes."""
    every = [inst for instances in splits.values() for inst in instances]
    tally: dict[str, Counter] = {k: Counter() for k in ("generator", "judge", "prompts", "review")}
    reviewers = set()
    for inst in every:
        gen, judge = inst.meta.get("generation", {}), inst.meta.get("judge", {})
        review = inst.meta.get("review", {})
        tally["generator"][gen.get("model", "unknown")] += 1
        tally["judge"][judge.get("model", "unknown")] += 1
        for pid in (gen.get("prompt_id"), judge.get("prompt_id")):
            if pid:
                tally["prompts"][pid] += 1
        tally["review"][review.get("status", "not reviewed")] += 1
        if review.get("reviewer"):
            reviewers.add(review["reviewer"])
    return {**{k: dict(v) for k, v in tally.items()}, "reviewers": len(reviewers)}


def dataset_card(
    name: str, splits: dict[str, list[EQAInstance]], relative: bool, outside: int
) -> str:
    """README.md: YAML header (licence, parquet files per split) and what the data is."""
    n = sum(len(v) for v in splits.values())
    files = "".join(f"  - split: {split}\n    path: data/{split}-*.parquet\n" for split in splits)
    made = provenance(splits)
    listing = "\n".join(
        f"- {what}: " + ", ".join(f"`{k}` ({v})" for k, v in sorted(made[what].items()))
        for what in ("generator", "judge", "prompts", "review")
    )
    split_lines = "\n".join(f"- `{s}`: {SPLIT_NAMES.get(s, s)}" for s in splits)
    if relative:
        paths = "relative to the folder of OpenEQA's episode histories: pass it as `--data_root`"
    else:
        paths = "as on the machine that built the data"
    if outside:
        paths += f"; {outside} lie outside that folder and stay absolute"
    return f"""---
license: mit
pretty_name: {name}
language:
- en
task_categories:
- visual-question-answering
tags:
- embodied-question-answering
- reward-model
- openeqa
size_categories:
- {size_category(n)}
configs:
- config_name: default
  data_files:
{files}---

# {name}

Reward-model evaluation data for Embodied Question Answering, built with habitat-eqarm's
`eqarm bench` commands following EQA-RM (Chen, Tan, Chen, EMNLP 2025): OpenEQA questions,
responses (reasoning steps and an answer) written by a generator model, and ground-truth
scores (integers 0..10) proposed by a judge model that saw the reference answer, then
verified by people.

Splits, room-disjoint (no room, a ScanNet scene with all its rescans or an HM3D scene, and
so no episode memory, is in two splits):

{split_lines}

{split_table(summarise(splits))}
## By category

{category_markdown(splits)}
## How it was made

{listing}
- reviewers: {made["reviewers"]}

## Fields

Each row is an `EQAInstance`: `question_id` (`<OpenEQA question id>#<response>`), `question`,
`category`, `source` (`hm3d` / `scannet`), `episode_id`, `gt_answer`, `predicted_answer`,
`reasoning_steps`, `episode_path` ({paths}), `keyframe_indices` (the frames generator and judge
saw), `gt_score`, `gt_critique` (the judge's critique, for analysis only: never a training
target), `meta` (a JSON string: how the response was generated, judged and reviewed).
Frames are not included; get OpenEQA's episode histories from
<https://github.com/facebookresearch/open-eqa>.

## Use

```bash
eqarm eval --model PATH_OR_ID --data THIS_FOLDER --split test --data_root OPENEQA_FRAMES
```

```python
from datasets import load_dataset, load_from_disk
bench = load_from_disk("THIS_FOLDER")        # or load_dataset("THIS_FOLDER") (parquet)
```

## Licence and sources

OpenEQA's questions and answers are MIT-licensed (Meta Platforms). Responses and critiques were
written by the models listed above; their terms of use may apply.

```bibtex
@inproceedings{{majumdar2024openeqa,
  title={{OpenEQA: Embodied Question Answering in the Era of Foundation Models}},
  author={{Majumdar, Arjun and others}}, booktitle={{CVPR}}, year={{2024}}}}
@inproceedings{{chen2025eqarm,
  title={{EQA-RM: A Generative Embodied Reward Model with Test-time Scaling}},
  author={{Chen and Tan and Chen}}, booktitle={{EMNLP}}, year={{2025}},
  note={{arXiv:2506.10389}}}}
```
"""


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished export into place, replacing an earlier export only."""
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif not (out / "dataset_dict.json").is_file():
            raise ValueError(f"{out} exists and is not an export: refusing to replace it")
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def run_export(cfg: ExportConfig) -> Path:
    """Write the export folder (see the module doc); returns its path."""
    from datasets import DatasetDict

    every = read_splits(cfg.splits)
    # an empty split cannot be saved and loaded back by `datasets`: leave it out, and say so
    splits = {name: part for name, part in every.items() if part}
    empty = sorted(set(every) - set(splits))
    if not splits:
        raise ValueError(f"{cfg.splits}: every split is empty")
    outside = relative_episodes(splits, cfg.relative_to)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        data = DatasetDict({name: to_dataset(instances) for name, instances in splits.items()})
        data.save_to_disk(str(tmp))
        (tmp / "data").mkdir()
        for name, dataset in data.items():
            dataset.to_parquet(str(tmp / "data" / f"{name}-00000-of-00001.parquet"))
        (tmp / "README.md").write_text(
            dataset_card(cfg.name, splits, cfg.relative_to is not None, outside), encoding="utf-8"
        )
        counts = {name: len(instances) for name, instances in splits.items()}
        (tmp / "export.json").write_text(
            json.dumps(
                {
                    "splits": counts,
                    "empty_splits_left_out": empty,
                    "episodes_outside_root": outside,
                },
                indent=2,
            )
            + "\n"
        )
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
