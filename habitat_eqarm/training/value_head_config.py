"""`ValueHeadConfig`: the discriminative multi-response reward model's trainer (issue 14.2).

A plain dataclass (parsed by ``TrlParser`` like every other command, ``--config`` YAML too):
the trainer is a short PyTorch loop, not a ``transformers.Trainer``, because with the backbone
frozen (the default) it trains a single linear layer on features computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from habitat_eqarm.rewards.backends.base import MAX_PIXELS

LOSSES = ("bradley_terry", "listwise")


@dataclass
class ValueHeadConfig:
    """Options of `eqarm train value-head`."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2-VL-2B-Instruct", metadata={"help": "backbone VLM: path or hub id"}
    )
    data: str | None = field(
        default=None, metadata={"help": "labelled instances (several responses per question)"}
    )
    data_split: str | None = field(default=None, metadata={"help": "split of a DatasetDict"})
    eval_data: str | None = field(
        default=None, metadata={"help": "held-out labelled instances: pairwise accuracy after"}
    )
    output_dir: str = field(default="outputs/value_head", metadata={"help": "output folder"})
    loss: str = field(
        default="bradley_terry",
        metadata={"help": "bradley_terry (every pair with different GT) or listwise (ListNet)"},
    )
    listwise_temperature: float = field(
        default=1.0, metadata={"help": "listwise: target = softmax(gt_score / temperature)"}
    )
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = field(default=20, metadata={"help": "passes over the groups"})
    train_backbone: bool = field(
        default=False, metadata={"help": "also fine-tune the VLM (else: head on frozen features)"}
    )
    max_responses: int = field(
        default=8, metadata={"help": "responses per prompt; larger groups are split"}
    )
    shuffle: bool = field(
        default=True, metadata={"help": "each epoch lists a group's responses in a new order"}
    )
    num_keyframes: int = field(default=5, metadata={"help": "keyframes per question"})
    max_pixels: int = field(default=MAX_PIXELS, metadata={"help": "pixel cap per frame"})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu (default: CUDA if any)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16 (default: auto)"})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.max_responses < 2 or self.epochs < 0 or self.listwise_temperature <= 0:
            raise ValueError(
                "need max_responses >= 2, epochs >= 0 and listwise_temperature > 0, got "
                f"{self.max_responses}, {self.epochs}, {self.listwise_temperature}"
            )
