"""`eqarm extract hm3d`: render OpenEQA's HM3D episode histories from agent-state pickles.

Needs habitat-sim (``conda install habitat-sim -c conda-forge -c aihabitat``) and the HM3D
scenes. ``--states`` is one episode folder of pickles, or a folder of such folders (OpenEQA's
``hm3d-v0``); each becomes ``--out/<folder name>``. An episode that fails is reported and
skipped; existing output folders are left alone.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExtractHM3DConfig:
    """Options of `eqarm extract hm3d`."""

    states: str = field(metadata={"help": "episode folder of *.pkl, or a folder of them"})
    scene_root: str = field(metadata={"help": "HM3D scenes, e.g. data/scene_datasets/hm3d/val"})
    out: str = field(metadata={"help": "where episode folders are written"})
    rgb_only: bool = field(default=False, metadata={"help": "no depth, poses or intrinsics"})


def episode_folders(states: str | Path) -> list[Path]:
    """The episode folders under ``states`` (itself, if it holds pickles)."""
    states = Path(states)
    if not states.is_dir():
        raise FileNotFoundError(f"{states}: not a folder")
    if any(states.glob("*.pkl")):
        return [states]
    folders = sorted(p for p in states.iterdir() if p.is_dir() and any(p.glob("*.pkl")))
    if not folders:
        raise FileNotFoundError(f"{states}: no folder of agent-state pickles (*.pkl)")
    return folders


def make_parser():
    """The `eqarm extract hm3d` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ExtractHM3DConfig)


def main(cfg: ExtractHM3DConfig) -> int:
    """Render every episode; prints a JSON summary (rendered, skipped, failed)."""
    try:
        from habitat_eqarm.envs.habitat_render import render_hm3d_episode
    except ImportError as err:
        print(f"eqarm extract hm3d: error: {err}", file=sys.stderr)
        return 1
    from habitat_eqarm.cli.common import progress_bar

    folders = episode_folders(cfg.states)
    done, skipped, failed = [], [], {}
    with progress_bar(len(folders), "extract hm3d") as bar:
        for folder in folders:
            target = Path(cfg.out) / folder.name
            if target.exists():
                skipped.append(folder.name)
            else:
                try:
                    render_hm3d_episode(folder, cfg.scene_root, target, rgb_only=cfg.rgb_only)
                    done.append(folder.name)
                except (ValueError, OSError, RuntimeError) as err:
                    failed[folder.name] = f"{type(err).__name__}: {err}"
                    print(f"eqarm extract hm3d: {folder}: {err}", file=sys.stderr)
            bar.update(1)
    print(json.dumps({"rendered": done, "skipped": skipped, "failed": failed}))
    return 1 if failed else 0
