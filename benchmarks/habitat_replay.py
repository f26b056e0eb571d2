"""Replay-simulator steps per second, and ScanNet ``.sens`` extraction frames per second.

Part 1 (needs habitat-lab: run with ``.venv-habitat/bin/python``): ``habitat.Env`` on
``EQARMReplaySim-v0`` over OpenEQA's demo video (168 frames, 1280x720, H.264), the
``openeqa_replay`` benchmark config without the reward measure, ``move_forward`` steps at the
rgb sensor sizes below; an episode that reaches the end of the video is reset (reset time
included). Also ``HabitatEQAEnv.step`` on the same config (the gymnasium bridge's cost). Where
habitat-sim is not installed, the test stand-ins of ``tests/habitat/standins.py`` let
``import habitat`` succeed; the replay itself never calls habitat-sim (the tests check this).

Part 2 (any venv): a synthetic ``.sens`` file at ScanNet's sizes (colour 1296x968 JPEG, depth
640x480 zlib) written by ``habitat_eqarm.testing.sens``, extracted with ``extract_sens`` into
OpenEQA's layout (rgb + depth PNGs + poses), PNG compress level 1, 2 encoding threads.

Usage: python benchmarks/habitat_replay.py [--steps 300] [--frames 60] [--repeats 3]
Prints Markdown tables, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = [(320, 180), (640, 360), (1280, 720)]


def _openeqa() -> Path:
    from habitat_eqarm.data.openeqa import find_openeqa_dir

    found = find_openeqa_dir()
    if found is None:
        sys.exit("OpenEQA data not found (set EQARM_OPENEQA)")
    return found


def _import_habitat() -> str:
    if importlib.util.find_spec("habitat") is None:
        return "missing"
    if importlib.util.find_spec("habitat_sim") is not None:
        return "habitat-sim"
    sys.path.insert(0, str(REPO / "tests" / "habitat"))
    import standins

    standins.install()
    return "test stand-ins"


def _overrides(data: Path, width: int, height: int) -> list[str]:
    sensor = "habitat.simulator.agents.main_agent.sim_sensors.rgb_sensor"
    return [
        f"habitat.dataset.data_path={data / 'open-eqa-demo-data.json'}",
        f"habitat.dataset.episodes_root={data}",
        "~habitat.task.measurements.eqarm_reward",
        f"{sensor}.width={width}",
        f"{sensor}.height={height}",
    ]


def bench_replay(steps: int, repeats: int) -> list[dict]:
    """Steps per second of habitat.Env and HabitatEQAEnv on the replay simulator."""
    import habitat

    import habitat_eqarm.envs.habitat_plugin as plugin
    from habitat_eqarm.envs.habitat_gym import HabitatEQAEnv

    data, rows = _openeqa(), []
    for width, height in SIZES:
        env = habitat.Env(plugin.get_config(overrides=_overrides(data, width, height)))
        gym_env = HabitatEQAEnv(habitat_env=env)

        def run_habitat(env=env) -> float:
            env.reset()
            t0 = time.perf_counter()
            for _ in range(steps):
                if env.episode_over:
                    env.reset()
                env.step("move_forward")
            return steps / (time.perf_counter() - t0)

        def run_gym(gym_env=gym_env) -> float:
            gym_env.reset(seed=0)
            t0 = time.perf_counter()
            for _ in range(steps):
                if gym_env.step({"kind": 0})[3]:
                    gym_env.reset()
            return steps / (time.perf_counter() - t0)

        run_habitat()  # warm-up: opens the video
        hab = statistics.median(run_habitat() for _ in range(repeats))
        gym = statistics.median(run_gym() for _ in range(repeats))
        rows.append({"size": f"{width}x{height}", "habitat_env_sps": hab, "gym_env_sps": gym})
        env.close()
    return rows


def bench_sens(frames: int, repeats: int) -> dict:
    """Frames per second of extract_sens on a ScanNet-sized synthetic file."""
    from habitat_eqarm.data.scannet import extract_sens
    from habitat_eqarm.testing.sens import synthetic_frames, write_sens

    color, depth = (1296, 968), (640, 480)
    with tempfile.TemporaryDirectory() as tmp:
        sens = Path(tmp) / "scene.sens"
        write_sens(sens, synthetic_frames(frames, color, depth), num_frames=frames,
                   color_size=color, depth_size=depth)  # fmt: skip
        rates = []
        for r in range(repeats):
            t0 = time.perf_counter()
            extract_sens(sens, Path(tmp) / f"out{r}")
            rates.append(frames / (time.perf_counter() - t0))
        size_mb = sens.stat().st_size / 2**20
    return {"frames": frames, "sens_mb": round(size_mb, 1), "fps": statistics.median(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result: dict = {"habitat_sim": _import_habitat()}
    if result["habitat_sim"] != "missing":
        result["replay"] = bench_replay(args.steps, args.repeats)
        print("| rgb size | habitat.Env steps/s | HabitatEQAEnv steps/s |\n|---|---|---|")
        for row in result["replay"]:
            print(f"| {row['size']} | {row['habitat_env_sps']:.0f} | {row['gym_env_sps']:.0f} |")
    result["sens"] = bench_sens(args.frames, args.repeats)
    s = result["sens"]
    print(f"\n| .sens frames | file MB | extraction frames/s |\n|---|---|---|\n"
          f"| {s['frames']} | {s['sens_mb']} | {s['fps']:.1f} |")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
