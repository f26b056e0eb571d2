"""Multi-response scoring cost: one prompt for N responses vs N separate pointwise calls.

One question about 5 keyframes (OpenEQA's demo video, or the synthetic episode) with N
responses, on a prefill-heavy tiny Qwen2-VL. ``pointwise``: N calls of
``EQARewardModel.score`` (one response each, as a caller scoring them one by one would make);
``multi``: one ``score_multi`` call with the N responses in one prompt. Both sample one vote at
temperature 0.8 / top-p 0.9 with a forced output length: ``--new-tokens`` per pointwise call
and N times that for the multi call (the same critique text in total), so the difference is
the N - 1 prefills of the frames that multi saves, against its longer single decode. The two
paths alternate ``--repeats`` times after a warm-up; medians are reported. Prints a Markdown
table, then one JSON object as the last line.

Usage: python benchmarks/multi_response.py [--n 8] [--new-tokens 16] [--repeats 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from tts import load_memory  # benchmarks/tts.py: the demo video if OpenEQA is here, else synthetic

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.data.schema import response_id
from habitat_eqarm.rewards.backends.hf import HFBackend
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.multi_response import (
    MULTI_RESPONSE_PROMPT,
    group_requests,
    vote_orders,
)
from habitat_eqarm.testing import make_tiny_model

ANSWERS = ["Eight chairs.", "Six chairs.", "Four chairs.", "Two chairs.", "Ten chairs."]


def responses(n: int) -> list[EQAInstance]:
    """N responses to one question, each with a short two-step trace."""
    return [
        EQAInstance(
            question_id=response_id("bench", i),
            question="How many chairs are around the dining table?",
            predicted_answer=ANSWERS[i % len(ANSWERS)],
            reasoning_steps=["I enter the dining area.", f"I count: {ANSWERS[i % len(ANSWERS)]}"],
        )
        for i in range(n)
    ]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    """Time both paths; the figures as a dict."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or str(
            make_tiny_model(tmp, seed=0, hidden_size=256, num_layers=4, vision_dim=128)
        )
        model = EQARewardModel(HFBackend(model_path, batch_size=1))
        memory, episode = load_memory()
        group = responses(args.n)
        tokens = args.new_tokens
        sampling = dict(k=1, temperature=0.8, top_p=0.9, seed=0)
        point_tokens = dict(max_new_tokens=tokens, min_new_tokens=tokens)
        multi_tokens = dict(max_new_tokens=args.n * tokens, min_new_tokens=args.n * tokens)

        def pointwise():
            for inst in group:  # N separate calls, one response each
                model.score([inst], memories=[memory], **sampling, **point_tokens)

        def multi():
            model.score_multi([group], memories=[memory], **sampling, **multi_tokens)

        orders = vote_orders(args.n, 1, 0, shuffle=True)
        multi_request = group_requests(model, group, orders, memory, MULTI_RESPONSE_PROMPT)[0]
        prompt_tokens = {
            "pointwise": prompt_length(model, [model.request_for(group[0], memory)[0]]),
            "multi": prompt_length(model, multi_request),
        }
        timed(pointwise), timed(multi)  # warm-up
        point_s, multi_s = [], []
        for _ in range(args.repeats):
            point_s.append(timed(pointwise))
            multi_s.append(timed(multi))
        device = str(model.backend.device)
        model.close()
    p, m = statistics.median(point_s), statistics.median(multi_s)
    return {
        "n": args.n,
        "pointwise_s": p,
        "multi_s": m,
        "ratio": m / p,
        "pointwise_runs_s": point_s,
        "multi_runs_s": multi_s,
        "prompt_tokens": prompt_tokens,
        "new_tokens_per_response": tokens,
        "device": device,
        "model": args.model or "tiny prefill-heavy Qwen2-VL (hidden 256, 4 layers)",
        "episode": episode,
    }


def prompt_length(model: EQARewardModel, requests) -> int:
    """Prompt tokens of one request (frames included)."""
    return int(model.backend.encode(requests)["input_ids"].shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="responses to the question")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per response")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="checkpoint (default: a tiny one)")
    result = run(parser.parse_args())
    tokens = result["prompt_tokens"]
    print(f"episode: {result['episode']}, prompt tokens: {tokens}, N = {result['n']}")
    print("| path | calls | new tokens | median (s) |")
    print("|---|---|---|---|")
    n, t = result["n"], result["new_tokens_per_response"]
    print(f"| pointwise | {n} | {n} x {t} | {result['pointwise_s']:.3f} |")
    print(f"| multi | 1 | {n * t} | {result['multi_s']:.3f} |")
    print(f"ratio multi / pointwise: {result['ratio']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
