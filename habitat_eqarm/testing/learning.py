"""The learning toys that the "it learns" tests and ``benchmarks/learning_effects.py`` share.

One definition of each toy run, so the per-seed effects recorded in ``docs/testing.md`` are
measured with exactly the settings the tests use:

* RFT: the tiny random Qwen2-VL is fine-tuned on the toy RFT set (``toy.make_toy_rft_set``);
  the effect is the rise of its well-formed-output rate.
* C-GRPO: starting from that RFT model, C-GRPO trains against ground-truth scores that
  *invert* the ones RFT taught (``11 - s``: a right answer RFT scored 9 now has s_gt = 2, the
  wrong one 2 -> 9), so the start is far from s_gt on every prompt (Eq. 3 accuracy about 0.43)
  and Eq. 3 alone has to move the scores. The effect is the mean accuracy reward over the
  second half of training minus that of an lr-0 control (``CONTROL``), which sees the same
  prompts in the same order.

Why not the RFT set's own scores: the RFT model already scores them almost perfectly (Eq. 3
accuracy 0.99 from step 1), so C-GRPO has nothing left to raise, and an earlier RFT checkpoint
gave effects below the noise of a 4-sample group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CPU = dict(bf16=False, use_cpu=True, activation_checkpointing=False, report_to="none")
# small inputs keep CPU steps short: 3 keyframes of about 160x120 pixels
SMALL = dict(num_keyframes=3, max_pixels=20_000)
# the paper's lr of 1e-6 is for a pretrained 2B model; a random tiny one needs far more
RFT_TRAIN = dict(learning_rate=1e-2, per_device_train_batch_size=4, save_steps=50)
RFT_STEPS = 200
# G = 8 for one prompt a step (G = 4 learned about half as fast); lr 5e-4 held constant for 150
# steps: at 1e-3 for 60 steps one seed in ten lost the format half way and ended below its control
CGRPO_TOY = dict(
    num_generations=8,
    per_device_train_batch_size=8,
    max_completion_length=64,
    logging_steps=1,
    save_steps=10_000,
    learning_rate=5e-4,
    lr_scheduler_type="constant",
    weight_decay=0.0,  # a parameter that moves does so because its gradient reached it
    max_steps=150,
)
# the lr-0 control: its policy never changes, so the contrasts (3 more generations per prompt)
# would only cost time; it samples the same prompts in the same order
CONTROL = dict(learning_rate=0.0, temporal=False, spatial=False, reasoning=False)


def rft_fields(out: str | Path, model: str | Path, toy: tuple[Path, Path]) -> dict[str, Any]:
    """The toy RFT run's ``RFTConfig`` fields, without ``max_steps`` (``RFT_STEPS``)."""
    instances, candidates = toy
    return dict(
        output_dir=str(out),
        model_name_or_path=str(model),
        data=str(instances),
        candidates=str(candidates),
        logging_steps=50,
        seed=0,
        **CPU,
        **SMALL,
        **RFT_TRAIN,
    )


def endless_batches(trainer):
    """A trainer's training batches, epoch after epoch (the step benchmarks' batch source)."""
    while True:
        yield from trainer.get_train_dataloader()


def timed_step(trainer, batch, seed: int) -> float:
    """Seconds one ``trainer.training_step`` on ``batch`` takes, torch seeded with ``seed`` (the
    step benchmarks alternate trainers, so each sees the same random numbers). Outside
    ``Trainer.train()``, which would otherwise set them: the model in training mode, one
    gradient-accumulation step."""
    import time

    import torch

    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    torch.manual_seed(seed)
    start = time.perf_counter()
    trainer.training_step(trainer.model, batch, None)
    return time.perf_counter() - start


def rft_config(out: str | Path, model: str | Path, toy: tuple[Path, Path], **kw: Any):
    """The toy RFT run's ``RFTConfig`` (``kw`` overrides, e.g. ``seed``, ``max_steps``)."""
    from habitat_eqarm.training.rft_config import RFTConfig

    return RFTConfig(**{**rft_fields(out, model, toy), "max_steps": RFT_STEPS, **kw})


def format_valid_rate(model_path: str | Path, instances: list, *, k: int = 4) -> float:
    """Share of well-formed evaluations, K samples at T = 0.8 per instance (seeded)."""
    from habitat_eqarm.rewards.model import EQARewardModel

    with EQARewardModel.from_pretrained(str(model_path), batch_size=8, **SMALL) as rm:
        judgements = rm.score(instances, k=k, temperature=0.8, seed=0, max_new_tokens=48)
    samples = [s for j in judgements for s in j.samples]
    return sum(s.format_ok for s in samples) / len(samples)


def inverted_labels(instances_path: str | Path, out_path: str | Path) -> Path:
    """The toy instances with ``gt_score`` replaced by ``11 - gt_score`` (see the module doc)."""
    from habitat_eqarm.data import read_jsonl, write_jsonl

    instances = read_jsonl(instances_path)
    for inst in instances:
        if inst.gt_score is None:
            raise ValueError(f"{instances_path}: {inst.question_id} has no gt_score to invert")
        inst.gt_score = 11 - inst.gt_score
    return write_jsonl(out_path, instances)


def opposite_extreme_labels(instances_path: str | Path, out_path: str | Path) -> Path:
    """The toy instances with ``gt_score`` sent to the opposite extreme: 0 where RFT taught a high
    score (``gt_score >= 5``), 10 where it taught a low one (the contrast toy, see the module doc).
    """
    from habitat_eqarm.data import read_jsonl, write_jsonl

    instances = read_jsonl(instances_path)
    for inst in instances:
        if inst.gt_score is None:
            raise ValueError(f"{instances_path}: {inst.question_id} has no gt_score to move")
        inst.gt_score = 0 if inst.gt_score >= 5 else 10
    return write_jsonl(out_path, instances)


def cgrpo_config(out: str | Path, start_model: str | Path, data: str | Path, **kw: Any):
    """The toy C-GRPO run's ``CGRPOConfig``; ``kw`` overrides (``seed``, ``learning_rate``,
    ``temporal=False`` ...)."""
    from habitat_eqarm.training.cgrpo_config import CGRPOConfig

    fields = dict(
        output_dir=str(out),
        model_name_or_path=str(start_model),
        data=str(data),
        seed=0,
        **CPU,
        **SMALL,
        **CGRPO_TOY,
    )
    return CGRPOConfig(**{**fields, **kw})


def late_accuracy(log_history: list[dict[str, Any]]) -> float:
    """Mean Eq. 3 accuracy reward of the logged steps in the second half of a run."""
    key = "rewards/accuracy_reward/mean"
    values = [e[key] for e in log_history if "step" in e and key in e]
    if len(values) < 2:
        raise ValueError(f"need at least 2 logged steps with an accuracy reward, got {len(values)}")
    late = values[len(values) // 2 :]
    return sum(late) / len(late)


# The value-head toy: the head (backbone frozen) learns to rank the toy preference set's three
# answers per question; trained on one synthetic episode, measured on the questions of another.
VALUE_HEAD_TOY = dict(epochs=40, learning_rate=3e-2, num_keyframes=3, max_pixels=20_000)


def value_head_config(out: str | Path, model: str | Path, data: Path, eval_data: Path, **kw):
    """The toy value-head run's ``ValueHeadConfig``; ``kw`` overrides (``seed``, ``loss``,
    ``learning_rate=0`` for the control)."""
    from habitat_eqarm.training.value_head_config import ValueHeadConfig

    fields = dict(
        output_dir=str(out),
        model_name_or_path=str(model),
        data=str(data),
        eval_data=str(eval_data),
        device="cpu",
        dtype="float32",
        seed=0,
        **VALUE_HEAD_TOY,
    )
    return ValueHeadConfig(**{**fields, **kw})


def value_head_effect(folder: str | Path, model: str | Path, seed: int, **kw: Any) -> dict:
    """Held-out pairwise accuracy of the toy value head trained with ``seed`` and of its lr-0
    control (same zero head, same order of steps; it ties every pair, which counts as a miss);
    ``effect`` = trained - control."""
    from habitat_eqarm.testing.toy import make_toy_preference_set
    from habitat_eqarm.training.value_head import train_value_head

    folder = Path(folder)
    train = make_toy_preference_set(folder / "train", episode_seed=0)
    held_out = make_toy_preference_set(folder / "held_out", episode_seed=1)
    out = {}
    for name, lr in (("trained", VALUE_HEAD_TOY["learning_rate"]), ("control", 0.0)):
        cfg = value_head_config(folder / name, model, train, held_out, seed=seed, **kw)
        cfg.learning_rate = lr
        out[name] = train_value_head(cfg)["eval_pairwise"]["accuracy"]
    return {**out, "effect": out["trained"] - out["control"]}
