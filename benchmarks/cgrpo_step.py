"""C-GRPO step cost: three contrasts (4 x G completions) vs TRL GRPO with as many completions.

Both trainers run on the same tiny Qwen2-VL and the same instances (OpenEQA's demo questions
on its real 1280x720 video when OpenEQA is here, else a synthetic episode), with completions
forced to one fixed length so the two generate the same number of tokens:

* C-GRPO: one prompt per step, G completions on the original and G on each of the three
  perturbed conditions, all in one generation call; the loss on the G originals;
* GRPO (TRL's ``GRPOTrainer``): 4 prompts x G completions per step, the loss on all of them.

A step is ``trainer.training_step`` (generation, rewards, loss, backward). The two alternate
``--steps`` times after one warm-up step each; medians are reported, and the share of C-GRPO's
step spent building the perturbed inputs. Prints a Markdown table, then one JSON object as
the last line.

Usage: python benchmarks/cgrpo_step.py [--g 4] [--tokens 32] [--steps 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from habitat_eqarm.data import EQAInstance, write_jsonl
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.learning import endless_batches, timed_step
from habitat_eqarm.testing.toy import demo_or_synthetic_questions


def instances(folder: Path) -> tuple[Path, str]:
    """Labelled instances with 3-step traces: the demo questions, or synthetic ones."""
    found, where = demo_or_synthetic_questions(folder)
    labelled = []
    for n, inst in enumerate(found * 4):  # enough prompts for GRPO's 4 per step
        labelled.append(
            EQAInstance(
                **{
                    **inst.to_dict(),
                    "question_id": f"{inst.question_id}#{n}",
                    "predicted_answer": inst.gt_answer,
                    "reasoning_steps": [
                        "I looked at the frames in order.",
                        "I found the object the question names.",
                        f"So the answer is {inst.gt_answer}.",
                    ],
                    "gt_score": 8 + n % 3,
                }
            )
        )
    return write_jsonl(folder / "instances.jsonl", labelled), where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--g", type=int, default=4, help="completions per prompt and condition")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per completion")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per trainer")
    parser.add_argument("--model", default=None, help="model folder (default: a tiny one)")
    args = parser.parse_args()

    from trl import GRPOTrainer

    from habitat_eqarm.training.cgrpo import CGRPOTrainer, prepare
    from habitat_eqarm.training.cgrpo_config import CGRPOConfig
    from habitat_eqarm.training.rewards import AccuracyReward, FormatReward

    tmp = Path(tempfile.mkdtemp(prefix="cgrpo-bench-"))
    model = args.model or str(make_tiny_model(tmp / "model", seed=0))
    data, where = instances(tmp)
    g = args.g
    common = dict(
        model_name_or_path=model,
        data=str(data),
        bf16=False,
        use_cpu=True,
        activation_checkpointing=False,
        report_to="none",
        num_generations=g,
        max_completion_length=args.tokens,
        generation_kwargs={"min_new_tokens": args.tokens},
        seed=0,
    )
    ours_cfg = CGRPOConfig(output_dir=str(tmp / "c"), per_device_train_batch_size=g, **common)
    theirs_cfg = CGRPOConfig(
        output_dir=str(tmp / "g"),
        per_device_train_batch_size=4 * g,
        temporal=False,
        spatial=False,
        reasoning=False,
        **common,
    )
    dataset, processor, _ = prepare(ours_cfg)
    ours = CGRPOTrainer(
        model=model, args=ours_cfg, train_dataset=dataset, processing_class=processor
    )
    theirs = GRPOTrainer(
        model=model,
        reward_funcs=[AccuracyReward(), FormatReward()],
        args=theirs_cfg,
        train_dataset=dataset,
        processing_class=processor,
    )
    batches = {"cgrpo": endless_batches(ours), "grpo": endless_batches(theirs)}
    trainers = {"cgrpo": ours, "grpo": theirs}
    times: dict[str, list[float]] = {"cgrpo": [], "grpo": []}
    perturb: list[float] = []
    for step in range(args.steps + 1):
        for name, trainer in trainers.items():
            batch = next(batches[name])
            before = ours.perturb_seconds
            elapsed = timed_step(trainer, batch, step)
            if step == 0:
                continue  # warm-up
            times[name].append(elapsed)
            if name == "cgrpo":
                perturb.append((ours.perturb_seconds - before) / elapsed)
    cgrpo_s = statistics.median(times["cgrpo"])
    grpo_s = statistics.median(times["grpo"])
    result = {
        "frames": where,
        "g": g,
        "completions_per_step": 4 * g,
        "tokens_per_completion": args.tokens,
        "steps": args.steps,
        "cgrpo_step_s": round(cgrpo_s, 3),
        "grpo_step_s": round(grpo_s, 3),
        "ratio": round(cgrpo_s / grpo_s, 3),
        "perturb_share": round(statistics.median(perturb), 4),
        "torch_threads": torch.get_num_threads(),
    }
    print("| trainer | completions/step | in the loss | step (median) |")
    print("|---|---|---|---|")
    print(f"| C-GRPO, 3 contrasts | {4 * g} | {g} | {cgrpo_s:.2f} s |")
    print(f"| TRL GRPO | {4 * g} | {4 * g} | {grpo_s:.2f} s |")
    print(
        f"\nratio {result['ratio']}; perturbations {100 * result['perturb_share']:.2f} % of a step"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
