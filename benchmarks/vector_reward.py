"""Vector-env rewards: one batched reward-model call vs one call per sub-env; recorder cost.

Part 1: 8 EMEQA sub-envs (synthetic episodes, 320x240) answer on the same step, round after
round, with the scripted agent. ``batched``: :class:`EQARMVectorReward` scores the 8 finished
episodes in one call. ``per_env``: each sub-env wrapped in :class:`EQARMReward` (through
``gymnasium.make_vec(..., wrappers=...)``), one call each. Same tiny model instance, same
sampling (K, tokens), CPU. Reported as scored episodes per second of the whole loop.

Part 2: :meth:`EpisodeMemoryRecorder.add` on OpenEQA's demo frames (1280x720), with disk
writing on (PNG folder and lossless mp4), timed in the step loop; the writer thread's drain
time at the end is reported separately.

Critiques are forced to a fixed length (``--tokens``, default 128: a short critique; the paper
allows 768) so that both modes decode the same number of tokens.

Usage: python benchmarks/vector_reward.py [--envs 8] [--rounds 3] [--k 1] [--tokens 128]
Prints Markdown tables, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np

import habitat_eqarm.envs  # noqa: F401 - registers the env
from habitat_eqarm.data import EpisodeMemory, find_openeqa_dir
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.envs import EpisodeMemoryRecorder
from habitat_eqarm.envs.agents import ScriptedAgent
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.vector import EQARMVectorReward
from habitat_eqarm.rewards.wrapper import EQARMReward
from habitat_eqarm.testing import make_tiny_model

WATCH = 4


def time_scoring(model: EQARewardModel) -> list[float]:
    """Accumulate the seconds spent inside ``model.score`` (the real call still runs)."""
    spent = [0.0]
    real = model.score

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    model.score = timed
    return spent


def run_loop(env, num_envs: int, rounds: int) -> tuple[float, int]:
    """Seconds for ``rounds`` rounds of all sub-envs answering together; episodes scored."""
    agent = ScriptedAgent(watch_frames=WATCH)
    obs, info = env.reset(seed=0)
    scored = 0
    t0 = time.perf_counter()
    while scored < rounds * num_envs:
        obs, _, terminated, _, info = env.step(agent.act_batch(obs, info, num_envs))
        scored += int(np.sum(terminated))
    return time.perf_counter() - t0, scored


def fixed_length(wrapper, tokens: int):
    """Force fixed-length critiques so both modes decode the same number of tokens."""
    wrapper.params.min_new_tokens = tokens
    return wrapper


def vector_part(model: EQARewardModel, args) -> dict:
    kw = dict(k=args.k, max_new_tokens=args.tokens, temperature=0.8, seed=0)
    batched = EQARMVectorReward(
        gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=args.envs, questions="synthetic"),
        model,
        **kw,
    )
    fixed_length(batched, args.tokens)
    per_env = gym.make_vec(
        "habitat_eqarm/EMEQA-v0",
        num_envs=args.envs,
        questions="synthetic",
        wrappers=[lambda env: fixed_length(EQARMReward(env, model, **kw), args.tokens)],
    )
    spent = time_scoring(model)
    run_loop(batched, args.envs, 1)  # warm-up
    spent[0] = 0.0
    b_s, b_n = run_loop(batched, args.envs, args.rounds)
    b_score, spent[0] = spent[0], 0.0
    p_s, p_n = run_loop(per_env, args.envs, args.rounds)
    p_score = spent[0]
    return {
        "envs": args.envs,
        "rounds": args.rounds,
        "batched_eps_per_s": b_n / b_s,
        "per_env_eps_per_s": p_n / p_s,
        "speedup": (b_n / b_s) / (p_n / p_s),
        "batched_calls": batched.calls,
        "scoring_only_speedup": (b_n / b_score) / (p_n / p_score),
        "scoring_share_batched": b_score / b_s,
        "scoring_share_per_env": p_score / p_s,
        "k": args.k,
        "critique_tokens": args.tokens,
    }


def recorder_part(fmt: str, frames: np.ndarray) -> dict:
    with tempfile.TemporaryDirectory() as out:
        recorder = EpisodeMemoryRecorder(max_frames=256, out_dir=out, write_format=fmt)
        recorder.start("episode")
        times = []
        for frame in frames:
            t0 = time.perf_counter()
            recorder.add(frame)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recorder.finish()
        drain = time.perf_counter() - t0
    ms = [1000 * t for t in times]
    return {
        "format": fmt,
        "frames": len(frames),
        "mean_ms": statistics.mean(ms),
        "p95_ms": float(np.percentile(ms, 95)),
        "writer_drain_s": drain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=1, help="samples per episode (wrapper default)")
    parser.add_argument("--tokens", type=int, default=128, help="critique length (fixed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = EQARewardModel.from_pretrained(str(make_tiny_model(tmp)), batch_size=args.envs)
        vector = vector_part(model, args)
    data = find_openeqa_dir()
    if data is not None:
        frames = EpisodeMemory.from_path(data / "open-eqa-hm3d-demo.mp4").frames()
    else:  # no OpenEQA: synthetic frames upscaled to 1280x720
        from PIL import Image

        small = make_synthetic_episode()[0].frames()
        frames = np.stack([np.asarray(Image.fromarray(f).resize((1280, 720))) for f in small])
    recorder = [recorder_part(fmt, frames) for fmt in ("folder", "mp4")]
    print(
        "| sub-envs | K | tokens | batched eps/s | per-env eps/s | speedup | scoring-only speedup |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {vector['envs']} | {args.k} | {args.tokens} | {vector['batched_eps_per_s']:.2f} | "
        f"{vector['per_env_eps_per_s']:.2f} | {vector['speedup']:.2f} | "
        f"{vector['scoring_only_speedup']:.2f} |"
    )
    print("\n| recorder format | frames (1280x720) | add() mean ms | p95 ms | writer drain s |")
    print("|---|---|---|---|---|")
    for r in recorder:
        print(
            f"| {r['format']} | {r['frames']} | {r['mean_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['writer_drain_s']:.2f} |"
        )
    worst = max(r["mean_ms"] for r in recorder)
    print(json.dumps({**vector, "recorder_step_overhead_ms": worst, "recorder": recorder}))


if __name__ == "__main__":
    main()
