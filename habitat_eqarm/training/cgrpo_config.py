"""`CGRPOConfig`: C-GRPO (docs/method.md §4) = TRL's ``GRPOConfig`` + contrasts and rewards.

Defaults follow the paper's Appendix B (docs/method.md §5): lr 1e-6, cosine schedule, weight decay
0.01, max completion 768 tokens, G = 8 generations per prompt, beta_K = 0.04, max grad norm
5.0, bf16, gradient checkpointing. TRL's own defaults differ where it matters (beta 0, the
DAPO loss), so ``beta`` and ``loss_type="grpo"`` are set here explicitly.

One optimizer step holds one prompt's group of G = 8 completions, as in the paper (8 GPUs x
batch 1): on one GPU that is ``per_device_train_batch_size = 8`` (the default here); on 8
GPUs pass ``--per_device_train_batch_size 1``.

The three contrasts have one switch each (``temporal``, ``spatial``, ``reasoning``); the rows
of the paper's ablation table are those switches (``configs/cgrpo/ablation/``). With all three
off the trainer is TRL's GRPO with the accuracy and format rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from habitat_eqarm.rewards.backends.base import MAX_PIXELS
from habitat_eqarm.training.augment import CONDITIONS


@dataclass
class CGRPOConfig(GRPOConfig):
    """Options of `eqarm train cgrpo` (every ``GRPOConfig`` / ``TrainingArguments`` field too)."""

    model_name_or_path: str = field(
        default="outputs/rft",
        metadata={"help": "policy to train, normally the RFT model; it is also the reference"},
    )
    data: str | None = field(
        default=None, metadata={"help": "labelled instances with gt_score (D_F): .jsonl/dataset"}
    )
    data_split: str | None = field(default=None, metadata={"help": "split of a DatasetDict"})
    temporal: bool = field(default=True, metadata={"help": "temporal contrast: shuffled frames"})
    spatial: bool = field(default=True, metadata={"help": "spatial contrast: masked frames"})
    reasoning: bool = field(default=True, metadata={"help": "reasoning contrast: jumbled steps"})
    boost_delta: float = field(
        default=0.95, metadata={"help": "Eq. 4: boost iff mean_orig >= delta * mean_perturbed"}
    )
    boost_mu: float = field(default=0.3, metadata={"help": "Eq. 4: the boost mu"})
    boost_h_min: float = field(
        default=0.1, metadata={"help": "Eq. 4: min accuracy of an evaluation to get the boost"}
    )
    mask_fraction: float = field(default=0.15, metadata={"help": "spatial: masked share"})
    mask_patch: int = field(default=16, metadata={"help": "spatial: square side in pixels"})
    mask_value: float = field(default=0.0, metadata={"help": "spatial: value of masked pixels"})
    num_keyframes: int = field(default=5, metadata={"help": "keyframes per instance (N = 5)"})
    max_pixels: int = field(default=MAX_PIXELS, metadata={"help": "pixel cap per frame"})
    max_prompt_tokens: int | None = field(
        default=8142,
        metadata={"help": "skip instances whose prompt (image tokens included) is longer"},
    )
    curves_png: str = field(
        default="cgrpo_curves.png",
        metadata={"help": "accuracy/format/boost curves (the paper's Fig. 2), in output_dir"},
    )
    # the paper's hyperparameters (Appendix B) as defaults
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.01
    max_completion_length: int | None = 768
    num_generations: int | None = 8
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    beta: float = 0.04
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    multi_objective_aggregation: str = "sum_then_normalize"
    max_grad_norm: float = 5.0
    activation_checkpointing: bool = True  # transformers 5 name of gradient checkpointing
    remove_unused_columns: bool = False
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "C-GRPO sums the rewards (Eq. 5) before normalising them per group (Eq. 6): "
                "multi_objective_aggregation must be 'sum_then_normalize'"
            )
        if self.scale_rewards != "group":
            raise ValueError("Eq. 6 standardises within each prompt's group: scale_rewards='group'")
        for name in ("boost_delta", "boost_mu", "boost_h_min"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.use_vllm and self.contrasts:
            raise ValueError(
                "C-GRPO samples the perturbed conditions alongside the original ones, which "
                "TRL's vLLM path cannot group; run with use_vllm=False or every contrast off"
            )

    @property
    def contrasts(self) -> tuple[str, ...]:
        """The active contrasts, in the order of ``CONDITIONS``."""
        return tuple(c for c in CONDITIONS if getattr(self, c))
