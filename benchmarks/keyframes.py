"""Keyframe selection on OpenEQA's real demo video: timings and how distinct the picks are.

Usage: python benchmarks/keyframes.py [--video PATH] [--repeats 5]
Prints a Markdown table, then one JSON object as the last line.

"places" counts how many of the demo video's four places the 5 picks cover, from hand labels
made by looking at every 8th frame: living room 0-44, kitchen/dining 45-92, hallway 93-132,
bedroom 133-167 (only reported for that video).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from habitat_eqarm.data import EpisodeMemory, find_openeqa_dir, view_spread
from habitat_eqarm.data.synthetic import make_synthetic_episode

DEMO_PLACES = ((0, 44), (45, 92), (93, 132), (133, 167))


def timed(fn, repeats: int) -> tuple[object, float]:
    """Run ``fn`` ``repeats`` times; its last result and the median seconds."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def places_covered(indices: list[int]) -> int:
    """How many of the demo video's hand-labelled places the indices fall in."""
    return len({p for i in indices for p, (a, b) in enumerate(DEMO_PLACES) if a <= i <= b})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=None, help="episode video or folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = find_openeqa_dir()
    video = args.video or (data and str(data / "open-eqa-hm3d-demo.mp4"))
    if video:
        (memory, open_s) = timed(lambda: EpisodeMemory.from_path(video), args.repeats)
        name = Path(video).name
    else:
        memory, _ = make_synthetic_episode()
        open_s, name = 0.0, "synthetic episode"
    result = {"episode": name, "frames": len(memory), "open_s": open_s, "methods": {}}
    for method in ("uniform", "diverse"):
        picks, pick_s = timed(lambda m=method: memory.keyframes(5, m), args.repeats)
        _, decode_s = timed(lambda p=picks: memory.frames(p), args.repeats)
        row = {"keyframes": picks, "select_s": pick_s, "decode_5_s": decode_s}
        row.update(view_spread(memory.thumbnails(picks)))
        if name == "open-eqa-hm3d-demo.mp4":
            row["places_covered_of_4"] = places_covered(picks)
        result["methods"][method] = row
    _, all_s = timed(lambda: memory.frames(), 1)
    result["decode_all_s"] = all_s
    print("| method | keyframes | select (s) | decode 5 (s) | mean / min pixel dist | hist dist |")
    print("|---|---|---|---|---|---|")
    for method, r in result["methods"].items():
        print(
            f"| {method} | {r['keyframes']} | {r['select_s']:.3f} | {r['decode_5_s']:.3f} | "
            f"{r['mean_pixel_distance']:.3f} / {r['min_pixel_distance']:.3f} | "
            f"{r['mean_histogram_distance']:.3f} |"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
