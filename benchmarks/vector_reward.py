"""Vector-env rewards: one batched reward-model call vs one call per sub-env; recorder cost.

Part 1: 8 EMEQA sub-envs (synthetic episodes, 320x240) answer on the same step, round after
round, with the scripted agent. ``batched``: :class:`EQARMVectorReward` scores the 8 finished
episodes in one call. ``per_env``: each sub-env wrapped in :class:`EQARMReward` (through
``gymnasium.make_vec(..., wrappers=...)``), one call each. Same tiny model instance, same code
path (the backend's batch is simply 8 or 1), same episodes, keyframes, sampling (K, tokens),
CPU. The two modes alternate round by round (batched, per-env, batched, ...) after a warm-up
round each, so both see the same machine load; a round's throughput is its scored episodes
per second of the whole step loop, and medians over the rounds are reported, with the median
of the per-round ratios (adjacent rounds) and the process CPU time, which a busy machine
disturbs less than wall time.

Part 2: :meth:`EpisodeMemoryRecorder.add` on OpenEQA's demo frames (1280x720), with disk
writing on (PNG folder and lossless mp4), timed in the step loop; the writer thread's drain
time at the end is reported separately.

Critiques are forced to a fixed length (``--tokens``, default 128: a short critique; the paper
allows 768) so that both modes decode the same number of tokens. ``--threads`` sets torch's
intra-op threads for both modes; the default (0) leaves torch's own choice, one per core, as a
user gets it. On a busy machine ``--threads 1`` is steadier: oversubscribed cores stall the
threads of a parallel op.

The hf backend's CPU settings are those a user gets: sort-free top-p sampling, the patch
embedding as a matrix product, and glibc heap retention (``--retain-memory off`` measures
without it; it is process-wide, so an A/B needs two runs).

Usage: python benchmarks/vector_reward.py [--envs 8] [--rounds 7] [--k 1] [--tokens 128]
[--threads 0] [--breakdown] [--no-recorder] [--retain-memory auto|on|off]
``--breakdown`` adds where one call's time goes, stage by stage, batched vs per-env.
Prints Markdown tables, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

import habitat_eqarm.envs  # noqa: F401 - registers the env
from habitat_eqarm.data import EpisodeMemory, EpisodeMemoryRecorder, find_openeqa_dir
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.envs.agents import ScriptedAgent
from habitat_eqarm.rewards.backends.base import SamplingParams
from habitat_eqarm.rewards.model import EQARewardModel, Sample
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


class Loop:
    """A vector env driven by the scripted agent, one round (every sub-env answers) at a time."""

    def __init__(self, env, num_envs: int) -> None:
        self.env, self.num_envs = env, num_envs
        self.agent = ScriptedAgent(watch_frames=WATCH)
        self.obs, self.info = env.reset(seed=0)

    def round(self) -> int:
        """Step until ``num_envs`` episodes have ended; the number that ended."""
        scored = 0
        while scored < self.num_envs:
            action = self.agent.act_batch(self.obs, self.info, self.num_envs)
            self.obs, _, terminated, _, self.info = self.env.step(action)
            scored += int(np.sum(terminated))
        return scored


def timed_round(loop: Loop, spent: list[float]) -> dict[str, float]:
    """One round: wall and process CPU seconds, seconds inside ``score``, episodes."""
    spent[0] = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    episodes = loop.round()
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "score_s": spent[0],
        "episodes": episodes,
    }


def vector_part(model: EQARewardModel, args) -> dict:
    kw = dict(k=args.k, max_new_tokens=args.tokens, temperature=0.8, seed=0)
    batched_env = EQARMVectorReward(
        gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=args.envs, questions="synthetic"),
        model,
        **kw,
    )
    per_env_env = gym.make_vec(
        "habitat_eqarm/EMEQA-v0",
        num_envs=args.envs,
        questions="synthetic",
        wrappers=[lambda env: EQARMReward(env, model, **kw)],
    )
    spent = time_scoring(model)
    loops = {"batched": Loop(batched_env, args.envs), "per_env": Loop(per_env_env, args.envs)}
    for loop in loops.values():  # warm-up
        loop.round()
    calls_before = batched_env.calls
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in loops}
    for _ in range(args.rounds):  # alternate: both modes see the same load
        for name, loop in loops.items():
            rounds[name].append(timed_round(loop, spent))

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] / r["episodes"] for r in rounds[name])

    b, p = rounds["batched"], rounds["per_env"]
    return {
        "envs": args.envs,
        "rounds": args.rounds,
        "batched_eps_per_s": 1.0 / median("batched", "wall_s"),
        "per_env_eps_per_s": 1.0 / median("per_env", "wall_s"),
        "speedup": median("per_env", "wall_s") / median("batched", "wall_s"),
        "speedup_paired_median": statistics.median(
            (y["wall_s"] / y["episodes"]) / (x["wall_s"] / x["episodes"])
            for x, y in zip(b, p, strict=True)
        ),
        "speedup_cpu_time": median("per_env", "cpu_s") / median("batched", "cpu_s"),
        "speedup_min": min(r["wall_s"] / r["episodes"] for r in p)
        / min(r["wall_s"] / r["episodes"] for r in b),
        "scoring_only_speedup": median("per_env", "score_s") / median("batched", "score_s"),
        "batched_calls_per_round": (batched_env.calls - calls_before) / args.rounds,
        "scoring_share_batched": sum(r["score_s"] for r in b) / sum(r["wall_s"] for r in b),
        "scoring_share_per_env": sum(r["score_s"] for r in p) / sum(r["wall_s"] for r in p),
        "k": args.k,
        "critique_tokens": args.tokens,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }


class Clock:
    """Wall and process CPU seconds since construction, per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, stage: str) -> None:
        now = (time.perf_counter(), time.process_time())
        wall, cpu = self.seconds.setdefault(stage, [0.0, 0.0])
        self.seconds[stage] = [wall + now[0] - self._last[0], cpu + now[1] - self._last[1]]
        self._last = now


def generate_fn(backend):
    """The generation method the backend's ``generate`` uses."""
    return backend.generate_shared if backend.share_prefill else backend.generate_plain


def score_in_stages(model: EQARewardModel, requests, params, clock: Clock) -> None:
    """What one ``score`` call does with ``requests``, stage by stage, on the same code path."""
    backend = model.backend
    for start in range(0, len(requests), backend.batch_size):
        batch = requests[start : start + backend.batch_size]
        clock.lap("other")
        for r in batch:
            backend.processor.apply_chat_template(
                r.messages, add_generation_prompt=True, tokenize=False
            )
        clock.lap("chat template")
        inputs = backend.encode(batch)  # template again (cheap) + tokenize + images
        clock.lap("processor (tokens + images)")
        with torch.inference_mode():
            backend.model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
            clock.lap("vision encoder")
            if backend.share_prefill:  # the prefill generate_shared runs
                # imported here so the script also runs against older packages (A/B runs)
                from habitat_eqarm.rewards.backends.hf import split_prompts

                prefill, _ = split_prompts(inputs, backend.processor.tokenizer.pad_token_id)
            else:
                prefill = inputs
            backend.model(**prefill, use_cache=True, logits_to_keep=1)
        clock.lap("vision encoder + prefill")
        tokens = generate_fn(backend)(inputs, params)
        clock.lap("generate")
        texts = backend.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        for text in texts:
            Sample.from_text(text)
        clock.lap("detokenize + parse")


def capture_requests(model: EQARewardModel, env, num_envs: int) -> list:
    """The backend requests of one batched round (what the vector wrapper sends)."""
    seen = []
    real = model.backend.generate

    def spy(requests, params):
        seen.extend(requests)
        return real(requests, params)

    model.backend.generate = spy
    try:
        Loop(env, num_envs).round()
    finally:
        model.backend.generate = real
    return seen


def breakdown_part(model: EQARewardModel, args) -> dict:
    """Stage seconds of one batched call (B = envs) vs envs calls of B = 1, alternated.

    The vision encoder and the prefill are timed as extra forward passes, as the backend runs
    them; ``generate`` repeats them, so its decode share is generate - (vision + prefill).
    Decode per step is also fitted as fixed + per_row * B over B = 1, 2, 4, ..., envs.
    """
    env = EQARMVectorReward(
        gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=args.envs, questions="synthetic"),
        model,
        k=1,
        max_new_tokens=args.tokens,
    )
    requests = capture_requests(model, env, args.envs)
    params = SamplingParams(1, 0.8, 0.9, args.tokens, 0)  # fixed length: the backend option
    one_token = SamplingParams(1, 0.8, 0.9, 1, 0)
    runs: dict[str, list[dict[str, list[float]]]] = {"batched": [], "per_env": []}
    score_in_stages(model, requests, params, Clock())  # warm-up
    for _ in range(args.rounds):
        for name in runs:
            clock = Clock()
            model.backend.batch_size = len(requests) if name == "batched" else 1
            score_in_stages(model, requests, params, clock)
            runs[name].append(clock.seconds)
    model.backend.batch_size = args.envs
    out: dict[str, dict] = {}
    for name, laps in runs.items():
        stages = {}
        for stage in laps[0]:
            if stage == "other":
                continue
            for i, unit in enumerate(("wall_s", "cpu_s")):
                stages.setdefault(stage, {})[unit] = statistics.median(
                    lap[stage][i] for lap in laps
                )
        for unit in ("wall_s", "cpu_s"):
            stages["decode"] = stages.get("decode", {})
            stages["decode"][unit] = (
                stages["generate"][unit] - stages["vision encoder + prefill"][unit]
            )
            stages["prefill"] = stages.get("prefill", {})
            stages["prefill"][unit] = (
                stages["vision encoder + prefill"][unit] - stages["vision encoder"][unit]
            )
        out[name] = stages
    # decode cost per step as a function of the batch size
    sizes = sorted({1, 2, 4, len(requests)} & set(range(1, len(requests) + 1)))
    per_step: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(args.rounds):
        for b in sizes:
            inputs = model.backend.encode(requests[:b])
            cpu = time.process_time()
            generate_fn(model.backend)(inputs, params)
            long = time.process_time() - cpu
            cpu = time.process_time()
            generate_fn(model.backend)(inputs, one_token)
            short = time.process_time() - cpu
            per_step[b].append((long - short) / (args.tokens - 1))
    xs = np.array(sizes, dtype=float)
    ys = np.array([statistics.median(per_step[b]) for b in sizes])
    per_row, fixed = np.polyfit(xs, ys, 1)
    out["decode_step_cpu_ms"] = {str(b): 1000 * y for b, y in zip(sizes, ys, strict=True)}
    out["decode_step_fit_ms"] = {"fixed": 1000 * fixed, "per_row": 1000 * per_row}
    env.close()
    return out


def print_breakdown(bd: dict) -> None:
    print(
        "\n| stage | batched wall s | per-env wall s | batched CPU s | per-env CPU s "
        "| per-env / batched (CPU) |"
    )
    print("|---|---|---|---|---|---|")
    order = [
        "chat template",
        "processor (tokens + images)",
        "vision encoder",
        "prefill",
        "decode",
        "detokenize + parse",
    ]
    for stage in order:
        b, p = bd["batched"][stage], bd["per_env"][stage]
        print(
            f"| {stage} | {b['wall_s']:.3f} | {p['wall_s']:.3f} | {b['cpu_s']:.3f} | "
            f"{p['cpu_s']:.3f} | {p['cpu_s'] / max(b['cpu_s'], 1e-9):.2f} |"
        )
    fit = bd["decode_step_fit_ms"]
    steps = ", ".join(f"B={b}: {ms:.2f}" for b, ms in bd["decode_step_cpu_ms"].items())
    print(f"\ndecode CPU ms per step: {steps}; fit {fit['fixed']:.2f} + {fit['per_row']:.2f} x B")


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
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per mode")
    parser.add_argument("--k", type=int, default=1, help="samples per episode (wrapper default)")
    parser.add_argument("--tokens", type=int, default=128, help="critique length (fixed)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)"
    )
    parser.add_argument(
        "--no-recorder", action="store_true", help="skip part 2 (no recorder fields in the JSON)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the stages of one call (B=envs vs envs x B=1) and decode cost vs B",
    )
    parser.add_argument(
        "--preallocate-cache",
        choices=("auto", "on", "off"),
        default="auto",
        help="the hf backend's preallocated KV cache (auto: on for Qwen2-VL), for A/B checks",
    )
    parser.add_argument(
        "--retain-memory",
        choices=("auto", "on", "off"),
        default="auto",
        help="the hf backend's glibc heap retention on CPU (auto: on), for A/B checks",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        extra = {}
        if args.preallocate_cache != "auto":
            extra["preallocate_cache"] = args.preallocate_cache == "on"
        if args.retain_memory != "auto":
            extra["retain_memory"] = args.retain_memory == "on"
        # min_new_tokens: fixed-length critiques, so both modes decode as many tokens
        model = EQARewardModel.from_pretrained(
            str(make_tiny_model(tmp)), batch_size=args.envs, min_new_tokens=args.tokens, **extra
        )
        vector = vector_part(model, args)
        if args.breakdown:
            vector["breakdown"] = breakdown_part(model, args)
    vector["preallocated_cache"] = getattr(model.backend, "preallocate_cache", False)
    vector["retains_memory"] = getattr(model.backend, "retains_memory", False)
    vector["linear_patch_embed"] = getattr(model.backend, "linear_patch_embed", False)
    print(
        "| sub-envs | K | tokens | threads | batched eps/s | per-env eps/s | speedup "
        "| paired median | CPU-time speedup | load (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {vector['envs']} | {args.k} | {args.tokens} | {args.threads} | "
        f"{vector['batched_eps_per_s']:.2f} | {vector['per_env_eps_per_s']:.2f} | "
        f"{vector['speedup']:.2f} | {vector['speedup_paired_median']:.2f} | "
        f"{vector['speedup_cpu_time']:.2f} | {vector['load_avg_1min']:.1f} |"
    )
    if args.breakdown:
        print_breakdown(vector["breakdown"])
    if args.no_recorder:
        print(json.dumps(vector))
        return
    data = find_openeqa_dir()
    if data is not None:
        frames = EpisodeMemory.from_path(data / "open-eqa-hm3d-demo.mp4").frames()
    else:  # no OpenEQA: synthetic frames upscaled to 1280x720
        from PIL import Image

        small = make_synthetic_episode()[0].frames()
        frames = np.stack([np.asarray(Image.fromarray(f).resize((1280, 720))) for f in small])
    recorder = [recorder_part(fmt, frames) for fmt in ("folder", "mp4")]
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
