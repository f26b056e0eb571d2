"""Per-episode costs of one EQA-RM judgement, measured, for docs/scaling.md.

What one episode costs the reward model, split where the bottleneck can sit:

- **frames**: decoding the keyframes and the Qwen2-VL image processor (resize, patchify) on
  the CPU, per frame, at the paper's ``max_pixels`` (401,408) from 1280x720 frames;
- **tokens**: vision tokens per frame and the prompt's length (the processor's own count;
  text tokens with the tiny model's tokenizer, which is smaller than Qwen's);
- **vision encoder**, **prefill** and **decode** of the tiny real-architecture Qwen2-VL on
  this CPU, in seconds and per token, with the FLOPs the tiny model spends on each (so the
  same split can be scaled to a real model by FLOPs and bytes, as docs/scaling.md does);
- **payload**: the bytes a request carries with its frames inline (JPEG data URLs) and with
  an episode reference instead.

Usage: python benchmarks/scaling.py [--frames 5] [--tokens 64] [--k 8] [--repeats 3]
Prints a Markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from habitat_eqarm.data.episode_ref import EpisodeRef, embed_ref
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.backends.base import MAX_PIXELS, GenerationRequest, SamplingParams
from habitat_eqarm.rewards.backends.chat_format import decode_image_url, encode_frame
from habitat_eqarm.rewards.backends.hf import HFBackend
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages
from habitat_eqarm.testing import make_tiny_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="decoded tokens per sample")
    parser.add_argument("--k", type=int, default=8, help="samples per episode (decode batch)")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def timed(fn, repeats: int) -> float:
    """The median seconds of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def episode_request(n_frames: int) -> tuple[GenerationRequest, list[str], EpisodeRef]:
    """One judgement request over 1280x720 keyframes, its frames as data URLs, its reference."""
    memory, questions = make_synthetic_episode(seed=0, size=(1280, 720), frames_per_room=4)
    inst = questions[0]
    inst.predicted_answer = "The mug is on the kitchen counter, left of the sink."
    inst.reasoning_steps = ["I entered the kitchen.", "A mug stands on the counter."]
    indices = memory.keyframes(n_frames)
    frames = memory.frames(indices)
    request = GenerationRequest(build_messages(REWARD_MODEL_PROMPT, inst, n_frames), frames)
    ref = EpisodeRef(inst.question, inst.question_id, inst.episode_id, list(indices))
    return request, [encode_frame(f, "jpeg") for f in frames], ref


def vision_and_lm_params(model: torch.nn.Module) -> tuple[int, int]:
    """Parameters of the vision tower and of everything else (the language model)."""
    vision = sum(p.numel() for n, p in model.named_parameters() if "visual" in n)
    return vision, sum(p.numel() for p in model.parameters()) - vision


def measure(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="scaling-"))
    backend = HFBackend(str(make_tiny_model(tmp / "tiny", seed=0)), dtype=torch.float32)
    model, processor = backend.model, backend.processor
    request, urls, ref = episode_request(args.frames)

    limit = 4096 * 4096  # the server's own limit on an incoming image (ServerSettings)
    decode_s = timed(lambda: [decode_image_url(u, limit) for u in urls], args.repeats)
    inputs = backend.encode([request])
    encode_s = timed(lambda: backend.encode([request]), args.repeats)
    grid = inputs["image_grid_thw"]
    merge = processor.image_processor.merge_size
    patches = int(grid.prod(-1).sum())
    vision_tokens = patches // (merge * merge)
    prompt_tokens = int(inputs["input_ids"].shape[1])

    with torch.inference_mode():
        vision_s = timed(
            lambda: model.model.get_image_features(inputs["pixel_values"], grid), args.repeats
        )
        prefill_s = timed(lambda: model(**inputs, use_cache=True), args.repeats)
    fixed = SamplingParams(k=1, temperature=0.0, max_new_tokens=1, min_new_tokens=1)
    one = timed(lambda: backend.generate([request], fixed), args.repeats)
    long = SamplingParams(
        k=args.k, temperature=0.8, max_new_tokens=args.tokens, min_new_tokens=args.tokens, seed=0
    )
    k_run = timed(lambda: backend.generate([request], long), args.repeats)
    decode_per_step = max(0.0, k_run - one) / max(1, args.tokens - 1)

    vision_params, lm_params = vision_and_lm_params(model)
    inline_bytes = len(json.dumps({"frames": [urls]}))
    ref_bytes = len(embed_ref("", ref))
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "frames": args.frames,
        "frame_size": [1280, 720],
        "max_pixels": MAX_PIXELS,
        "vision_tokens_per_frame": vision_tokens / args.frames,
        "vision_patches_per_frame": patches / args.frames,
        "prompt_tokens": prompt_tokens,
        "text_tokens_tiny_tokenizer": prompt_tokens - vision_tokens,
        "jpeg_decode_s_per_frame": decode_s / args.frames,
        "processor_s_per_frame": encode_s / args.frames,
        "vision_encoder_s": vision_s,
        "prefill_s_incl_vision": prefill_s,
        "lm_prefill_s": max(0.0, prefill_s - vision_s),
        "first_token_s": one,
        "k": args.k,
        "decode_tokens": args.tokens,
        "decode_step_s_k_samples": decode_per_step,
        "tiny_vision_params": vision_params,
        "tiny_lm_params": lm_params,
        "tiny_vision_gflop": 2 * vision_params * patches / 1e9,
        "tiny_prefill_gflop": 2 * lm_params * prompt_tokens / 1e9,
        "tiny_decode_gflop_per_step": 2 * lm_params * args.k / 1e9,
        "inline_payload_bytes": inline_bytes,
        "ref_payload_bytes": ref_bytes,
    }


def report(m: dict) -> None:
    rows = [
        ("JPEG decode, per frame", f"{m['jpeg_decode_s_per_frame'] * 1e3:.1f} ms"),
        ("image processor (+ tokenizing), per frame", f"{m['processor_s_per_frame'] * 1e3:.1f} ms"),
        ("vision tokens per frame", f"{m['vision_tokens_per_frame']:.0f}"),
        ("prompt tokens (vision + text)", f"{m['prompt_tokens']}"),
        ("vision encoder (tiny), per episode", f"{m['vision_encoder_s'] * 1e3:.1f} ms"),
        ("LM prefill (tiny), per episode", f"{m['lm_prefill_s'] * 1e3:.1f} ms"),
        (
            f"decode step (tiny), K={m['k']} samples",
            f"{m['decode_step_s_k_samples'] * 1e3:.2f} ms",
        ),
        ("payload with frames inline", f"{m['inline_payload_bytes'] / 1e3:.0f} kB"),
        ("payload with an episode reference", f"{m['ref_payload_bytes']} B"),
    ]
    print(f"{m['frames']} keyframes 1280x720, {m['cpus']} CPUs, {m['torch_threads']} threads\n")
    print("| cost | measured |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    args = parse_args()
    measured = measure(args)
    report(measured)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in measured.items()}))


if __name__ == "__main__":
    main()
