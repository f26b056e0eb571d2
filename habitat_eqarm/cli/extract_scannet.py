"""`eqarm extract scannet`: a ScanNet ``.sens`` file to an OpenEQA episode folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class ExtractScanNetConfig:
    """Options of `eqarm extract scannet`."""

    sens: str = field(metadata={"help": "the scene's .sens file"})
    out: str = field(metadata={"help": "episode folder to create (must not exist)"})
    frame_skip: int = field(default=1, metadata={"help": "keep every N-th frame"})
    max_frames: int | None = field(
        default=None, metadata={"help": "stop after M kept frames (OpenEQA kept 600)"}
    )
    rgb_only: bool = field(default=False, metadata={"help": "no depth, poses or intrinsics"})
    png_compress_level: int = field(default=1, metadata={"help": "0-9: file size vs speed"})
    workers: int = field(default=2, metadata={"help": "threads encoding PNGs"})


def make_parser():
    """The `eqarm extract scannet` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ExtractScanNetConfig)


def main(cfg: ExtractScanNetConfig) -> int:
    """Extract the frames, with a progress bar; prints a JSON summary."""
    from tqdm.auto import tqdm

    from habitat_eqarm.data.scannet import SensReader, extract_sens

    with SensReader(cfg.sens) as reader:
        total = len(range(0, len(reader), max(1, cfg.frame_skip)))
    if cfg.max_frames is not None:
        total = min(total, cfg.max_frames)
    with tqdm(total=total, desc="extract scannet", unit="frame", dynamic_ncols=True) as bar:
        stats = extract_sens(
            cfg.sens,
            cfg.out,
            frame_skip=cfg.frame_skip,
            max_frames=cfg.max_frames,
            rgb_only=cfg.rgb_only,
            png_compress_level=cfg.png_compress_level,
            workers=cfg.workers,
            on_frame=lambda n: bar.update(n - bar.n),
        )
    summary = {"out": str(stats.out), "frames": stats.frames, "sens_frames": stats.total_frames}
    print(json.dumps(summary))
    return 0
