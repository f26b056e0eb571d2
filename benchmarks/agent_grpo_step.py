"""Agent GRPO step cost: EQA-RM scoring a step's completions in one batched call vs one each.

The agent is the tiny Qwen2-VL taught the answer format (``testing.agent_toy``), so its answers
parse and reach the reward model; EQA-RM is a tiny Qwen2-VL on the in-process ``hf`` backend
with its evaluations forced to ``--rm_tokens`` tokens. Two ``AgentGRPOTrainer`` objects share
the data and one reward model and differ only in ``rm_batch``: one RM call per step (batched)
or one per completion. A step is ``trainer.training_step`` (the agent's generation, EQA-RM's
scoring, the loss, backward); it does not update the weights, so with the same seed both see
the same completions. The two alternate ``--steps`` times after a warm-up step each; medians
are reported: step time, RM time, their ratios, and the RM's share of a step. Prints a Markdown
table, then one JSON object as the last line.

Why 128 EQA-RM tokens by default: an evaluation is a critique that weighs the answer and the
trace's logic and grounding, then a score, so it runs to several sentences (128 tokens are about
90 words; ``rm_max_new_tokens`` defaults to 512); docs/benchmarks.md also gives 64 and 256.

Usage: python benchmarks/agent_grpo_step.py [--completions 16] [--g 8] [--tokens 48]
    [--rm_tokens 128] [--steps 5] [--device cpu] [--format_steps 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=16, help="completions per step")
    parser.add_argument("--g", type=int, default=8, help="completions per question (G)")
    parser.add_argument("--tokens", type=int, default=48, help="agent tokens per completion")
    parser.add_argument("--rm_tokens", type=int, default=128, help="EQA-RM tokens per evaluation")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--device", default="cpu", help="EQA-RM's device (cpu, cuda:1, ...)")
    parser.add_argument("--format_steps", type=int, default=200, help="SFT steps of the agent")
    args = parser.parse_args()

    from habitat_eqarm.rewards.model import EQARewardModel
    from habitat_eqarm.testing import make_tiny_model
    from habitat_eqarm.testing.agent_toy import (
        CPU,
        SMALL,
        make_toy_questions,
        teach_agent_format,
    )
    from habitat_eqarm.testing.learning import endless_batches, timed_step
    from habitat_eqarm.training.agent_grpo import AgentGRPOTrainer, prepare
    from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig

    tmp = Path(tempfile.mkdtemp(prefix="agent-grpo-bench-"))
    base = make_tiny_model(tmp / "model", seed=0)
    questions = make_toy_questions(tmp / "toy")
    agent = teach_agent_format(tmp / "agent", base, questions, steps=args.format_steps)
    # fixed-length evaluations: the hf backend's benchmark option, capped by max_new_tokens
    rm = EQARewardModel.from_pretrained(
        str(base),
        device=args.device,
        batch_size=args.completions,
        min_new_tokens=args.rm_tokens,
        **SMALL,
    )

    def make(name: str, batch: bool) -> AgentGRPOTrainer:
        cfg = AgentGRPOConfig(
            output_dir=str(tmp / name),
            model_name_or_path=str(agent),
            data=str(questions),
            rm_model=str(base),
            rm_batch=batch,
            rm_max_new_tokens=args.rm_tokens,
            num_generations=args.g,
            per_device_train_batch_size=args.completions,
            max_completion_length=args.tokens,
            seed=0,
            **CPU,
            **SMALL,
        )
        dataset, processor, _ = prepare(cfg)
        trainer = AgentGRPOTrainer(
            model=str(agent),
            args=cfg,
            reward_model=rm,
            train_dataset=dataset,
            processing_class=processor,
        )
        return trainer

    trainers = {"batched": make("batched", True), "per_completion": make("one", False)}
    batches = {name: endless_batches(t) for name, t in trainers.items()}
    step_s: dict[str, list[float]] = {name: [] for name in trainers}
    rm_s: dict[str, list[float]] = {name: [] for name in trainers}
    requests: dict[str, list[float]] = {name: [] for name in trainers}
    for step in range(args.steps + 1):
        for name, trainer in trainers.items():
            batch = next(batches[name])
            reward = trainer.rm_reward
            rm_before, calls_before = reward.seconds, reward.calls
            elapsed = timed_step(trainer, batch, step)
            if step == 0:
                continue  # warm-up
            step_s[name].append(elapsed)
            rm_s[name].append(reward.seconds - rm_before)
            requests[name].append(
                args.completions * (1 - trainer._metrics["train"]["agent/unparsable"][-1])
            )
            assert name == "batched" or reward.calls - calls_before == round(requests[name][-1])
    med = {name: statistics.median(v) for name, v in step_s.items()}
    rm_med = {name: statistics.median(v) for name, v in rm_s.items()}
    scored = statistics.median(requests["batched"])
    result = {
        "completions_per_step": args.completions,
        "g": args.g,
        "agent_tokens": args.tokens,
        "rm_tokens": args.rm_tokens,
        "rm_device": args.device,
        "steps": args.steps,
        "scored_per_step": scored,
        "same_parsed_counts": requests["batched"] == requests["per_completion"],
        "batched_step_s": round(med["batched"], 3),
        "per_completion_step_s": round(med["per_completion"], 3),
        "step_ratio": round(med["per_completion"] / med["batched"], 3),
        "batched_rm_s": round(rm_med["batched"], 3),
        "per_completion_rm_s": round(rm_med["per_completion"], 3),
        "rm_ratio": round(rm_med["per_completion"] / rm_med["batched"], 3),
        "rm_share_batched": round(rm_med["batched"] / med["batched"], 3),
        "rm_share_per_completion": round(rm_med["per_completion"] / med["per_completion"], 3),
        "torch_threads": torch.get_num_threads(),
    }
    print("| EQA-RM calls | step (median) | EQA-RM time (median) | EQA-RM share of a step |")
    print("|---|---|---|---|")
    for name, label in (("batched", "one per step"), ("per_completion", "one per completion")):
        share = rm_med[name] / med[name]
        print(f"| {label} | {med[name]:.2f} s | {rm_med[name]:.2f} s | {100 * share:.0f} % |")
    print(
        f"\n{scored:.0f} of {args.completions} completions parsed and scored per step; "
        f"step ratio {result['step_ratio']}, RM ratio {result['rm_ratio']}"
    )
    rm.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
