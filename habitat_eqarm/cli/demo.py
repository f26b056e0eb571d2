"""`eqarm demo`: load an episode, pick keyframes, write a contact sheet, print the questions.

The episode is, in order of preference: ``--episode`` (a folder or video), OpenEQA's demo
episode found through ``--data``, ``$EQARM_OPENEQA`` or ``../shared/openeqa``, or a synthetic
episode drawn on the fly (a fresh machine without OpenEQA).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from habitat_eqarm.data import EpisodeMemory, EQAInstance, find_openeqa_dir, load_openeqa
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.openeqa import DATA_ENV
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.data.visualize import contact_sheet, save_image

DEMO_QUESTIONS = "open-eqa-demo-data.json"
GET_OPENEQA = (
    "OpenEQA was not found (looked at --data, ${env} and ../shared/openeqa).\n"
    "To use it: clone https://github.com/facebookresearch/open-eqa, download the episode\n"
    "histories as its README explains, and pass the folder holding open-eqa-v0.json with\n"
    "--data DIR or ${env}=DIR. Running on a synthetic episode instead."
)


@dataclass
class DemoConfig:
    """Options of `eqarm demo`."""

    data: str | None = field(default=None, metadata={"help": "folder with OpenEQA's files"})
    episode: str | None = field(
        default=None, metadata={"help": "an episode folder or video to use instead"}
    )
    questions: str | None = field(
        default=None, metadata={"help": "OpenEQA-format questions JSON to print with --episode"}
    )
    out: str = field(default="outputs/demo", metadata={"help": "output folder"})
    num_keyframes: int = field(default=5, metadata={"help": "keyframes to pick"})
    keyframe_method: str = field(default="uniform", metadata={"help": "uniform or diverse"})
    seed: int = field(default=0, metadata={"help": "seed of the synthetic episode"})


def make_parser():
    """The `eqarm demo` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(DemoConfig)


def load_demo_episode(cfg: DemoConfig) -> tuple[EpisodeMemory, list[EQAInstance], str]:
    """The episode, its questions and where it came from (see module doc)."""
    if cfg.episode:
        questions = load_openeqa(cfg.questions) if cfg.questions else []
        return EpisodeMemory.from_path(cfg.episode), questions, f"episode {cfg.episode}"
    data = Path(cfg.data) if cfg.data else find_openeqa_dir()
    if data is not None and (data / DEMO_QUESTIONS).is_file():
        questions = load_openeqa(data / DEMO_QUESTIONS, data_root=data)
        episode = questions[0].episode_path
        return EpisodeMemory.from_path(episode), questions, f"OpenEQA demo episode {episode}"
    if cfg.data:
        raise FileNotFoundError(f"{cfg.data}: no {DEMO_QUESTIONS} in this folder")
    print(GET_OPENEQA.replace("${env}", f"${DATA_ENV}"))
    memory, questions = make_synthetic_episode(seed=cfg.seed)
    return memory, questions, f"synthetic episode (seed {cfg.seed})"


def questions_table(questions: list[EQAInstance]) -> str:
    """The questions as a Markdown table."""
    rows = ["| # | category | question | answer |", "|---|---|---|---|"]
    for i, q in enumerate(questions, 1):
        rows.append(f"| {i} | {q.category} | {q.question} | {q.gt_answer or ''} |")
    return "\n".join(rows)


def main(cfg: DemoConfig) -> int:
    """Run the demo; writes ``contact_sheet.png``, ``demo.json`` and ``questions.md``."""
    out = Path(cfg.out)
    t0 = time.perf_counter()
    memory, questions, origin = load_demo_episode(cfg)
    t1 = time.perf_counter()
    indices = memory.keyframes(cfg.num_keyframes, cfg.keyframe_method)
    t2 = time.perf_counter()
    frames = memory.frames(indices)
    t3 = time.perf_counter()
    labels = [f"#{i}" + (f"  t={i / memory.fps:.1f}s" if memory.fps else "") for i in indices]
    sheet = contact_sheet(frames, labels, title=f"{origin}: {cfg.keyframe_method} keyframes")
    sheet_path = save_image(sheet, out / "contact_sheet.png")
    table = questions_table(questions)
    atomic_write_text(out / "questions.md", table + "\n")
    summary = {
        "origin": origin,
        "frames": len(memory),
        "fps": memory.fps,
        "frame_size": list(frames.shape[1:3][::-1]),
        "keyframe_method": cfg.keyframe_method,
        "keyframes": indices,
        "seconds": {"open": t1 - t0, "keyframes": t2 - t1, "decode_keyframes": t3 - t2},
        "questions": [q.to_dict() for q in questions],
        "config": asdict(cfg),
    }
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    print(f"\n{origin}: {len(memory)} frames" + (f" at {memory.fps:.1f} fps" if memory.fps else ""))
    print(f"{cfg.keyframe_method} keyframes: {indices}  (picked in {t2 - t1:.3f}s)")
    print(f"contact sheet: {sheet_path}\n\n{table}\n")
    return 0
