"""Test-time scaling cost: K samples via ``num_return_sequences`` vs one shared prefill.

One instance with 5 keyframes (OpenEQA's demo video, or the synthetic episode) on a
prefill-heavy tiny Qwen2-VL (long multimodal prompt, short fixed-length completion), sampled at
temperature 0.8 / top-p 0.9. For each K the two paths run alternately ``--repeats`` times; the
medians are reported. Prints a Markdown table, then one JSON object as the last line.

Usage: python benchmarks/tts.py [--ks 1,8,32] [--new-tokens 16] [--repeats 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from habitat_eqarm.data import EpisodeMemory, EQAInstance, find_openeqa_dir
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.backends.base import SamplingParams
from habitat_eqarm.rewards.backends.hf import HFBackend
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.testing import make_tiny_model


def load_memory() -> tuple[EpisodeMemory, str]:
    """The demo video if OpenEQA is here, else the synthetic episode."""
    data = find_openeqa_dir()
    if data is not None:
        return EpisodeMemory.from_path(data / "open-eqa-hm3d-demo.mp4"), "open-eqa-hm3d-demo.mp4"
    return make_synthetic_episode()[0], "synthetic episode"


def time_path(backend: HFBackend, inputs_fn, params: SamplingParams, shared: bool) -> float:
    """Seconds for one run of a generation path on fresh processor outputs."""
    inputs = inputs_fn()
    t0 = time.perf_counter()
    run = backend.generate_shared if shared else backend.generate_plain
    tokens = run(inputs, params)
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    assert tokens.shape == (params.k, params.max_new_tokens), tokens.shape
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model", default=None, help="checkpoint (default: a prefill-heavy tiny one)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(
            make_tiny_model(tmp, seed=0, hidden_size=256, num_layers=4, vision_dim=128)
        )
        backend = HFBackend(model_path, batch_size=1, min_new_tokens=args.new_tokens)
        memory, episode = load_memory()
        instance = EQAInstance(
            question_id="bench",
            question="How many chairs are around the dining table?",
            predicted_answer="Eight chairs.",
            reasoning_steps=["I enter the dining area.", "I count the chairs: eight."],
        )
        request, _ = EQARewardModel(backend).request_for(instance, memory)
        inputs_fn = lambda: backend.encode([request])  # noqa: E731
        prompt_tokens = int(inputs_fn()["input_ids"].shape[1])
        rows = []
        for k in [int(x) for x in args.ks.split(",")]:
            params = SamplingParams(
                k=k,
                temperature=0.8,
                top_p=0.9,
                max_new_tokens=args.new_tokens,
                seed=0,
            )
            time_path(backend, inputs_fn, params, shared=k > 1)  # warm-up
            plain, shared = [], []
            for _ in range(args.repeats):
                plain.append(time_path(backend, inputs_fn, params, shared=False))
                shared.append(time_path(backend, inputs_fn, params, shared=k > 1))
            p, s = statistics.median(plain), statistics.median(shared)
            rows.append(
                {"k": k, "num_return_sequences_s": p, "shared_prefill_s": s, "ratio": s / p}
            )
    print(f"episode: {episode}, prompt tokens: {prompt_tokens}, new tokens: {args.new_tokens}")
    print("| K | num_return_sequences (s) | shared prefill (s) | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['k']} | {r['num_return_sequences_s']:.3f} | {r['shared_prefill_s']:.3f} | "
            f"{r['ratio']:.2f} |"
        )
    last = rows[-1]
    print(
        json.dumps(
            {
                **last,
                "rows": rows,
                "prompt_tokens": prompt_tokens,
                "new_tokens": args.new_tokens,
                "device": str(backend.device),
                "model": args.model or "tiny prefill-heavy Qwen2-VL (hidden 256, 4 layers)",
                "episode": episode,
            }
        )
    )


if __name__ == "__main__":
    main()
