"""`RFTConfig`: rejective fine-tuning (docs/method.md §3) = TRL's ``SFTConfig`` + what RFT adds.

Defaults follow the paper's Appendix B (docs/method.md §5): lr 1e-6, batch 1x1, max grad norm 5.0,
bf16, gradient checkpointing. ``max_length`` is None: TRL would cut prompt + completion from
the right and, on a prompt longer than the limit, through its image tokens, which Qwen2-VL
cannot run; examples longer than ``max_tokens`` are skipped and counted instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from habitat_eqarm.rewards.backends.base import MAX_PIXELS


@dataclass
class RFTConfig(SFTConfig):
    """Options of `eqarm train rft` (every ``SFTConfig`` / ``TrainingArguments`` field too)."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2-VL-2B-Instruct", metadata={"help": "model to fine-tune: path or hub id"}
    )
    data: str | None = field(
        default=None, metadata={"help": "labelled instances with gt_score (D_F): .jsonl/dataset"}
    )
    data_split: str | None = field(default=None, metadata={"help": "split of a DatasetDict"})
    candidates: str | None = field(
        default=None,
        metadata={"help": "candidate evaluations (JSONL sample cache); generated if missing"},
    )
    evaluator: str | None = field(
        default=None, metadata={"help": "auxiliary evaluator: path or hub id (default: the model)"}
    )
    evaluator_backend: str = field(default="hf", metadata={"help": "backend of the evaluator"})
    n_rft: int = field(default=8, metadata={"help": "candidate evaluations per instance (N_RFT)"})
    tau: float = field(
        default=2.0, metadata={"help": "Eq. 1: a candidate is correct iff |s_gt - s| < tau"}
    )
    candidate_temperature: float = field(default=0.8, metadata={"help": "evaluator sampling"})
    candidate_max_new_tokens: int = field(default=512, metadata={"help": "evaluator tokens"})
    num_keyframes: int = field(default=5, metadata={"help": "keyframes per instance (N = 5)"})
    max_pixels: int = field(default=MAX_PIXELS, metadata={"help": "pixel cap per frame"})
    max_tokens: int | None = field(
        default=4096,
        metadata={"help": "skip examples whose prompt + completion exceed this (5 frames ~2,400)"},
    )
    # the paper's hyperparameters (Appendix B) as defaults
    learning_rate: float = 1e-6
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 5.0
    activation_checkpointing: bool = True  # transformers 5 name of gradient checkpointing
    max_length: int | None = None
    remove_unused_columns: bool = False
