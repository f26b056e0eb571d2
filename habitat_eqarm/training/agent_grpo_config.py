"""`AgentGRPOConfig`: GRPO for an EQA agent against EQA-RM = TRL's ``GRPOConfig`` + the RM.

The policy is a VLM that answers EQA questions in the generator prompt's format
(``eqarm-gen-v1``: ``<reasoning_trace><think>…</think>…</reasoning_trace>
<predicted_answer>…</predicted_answer>``). Each completion's reward is, with weights,

* ``rm_reward``: EQA-RM's aggregated score of the completion (K samples, ``rm_aggregate``)
  divided by 10, so in [0, 1]; 0 for an output with no parsable answer or when none of the
  K evaluations was well formed (the reason is logged);
* ``gt_reward`` (``gt_weight > 0``, for ablations): 1 when the answer matches the instance's
  ``gt_answer`` (:func:`~habitat_eqarm.rewards.textmatch.answers_match`), else 0;
* ``improvement`` (``mode: revise``, ``improvement_weight > 0``): R2 - R1, the revised
  answer's ``rm_reward`` minus the first answer's.

``mode: revise`` trains the revision turn of critique-guided answering (docs/agent_grpo.md):
each prompt is a question, the start agent's first answer and EQA-RM's critique and score of
it (made once before training and cached in ``output_dir/revision_rows.jsonl``); ``rm_reward``
is then EQA-RM's score of the revised answer.

The reward model runs in-process (``rm_backend: hf`` on ``rm_device``, which may be another GPU
than the policy's) or behind any OpenAI-compatible endpoint (``rm_backend: openai`` with
``rm_base_url``: ``eqarm serve``, vLLM, a gateway). Every step's completions are scored in one
batched call (``rm_batch: false`` scores them one call each: for the benchmark only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from habitat_eqarm.rewards.backends.base import MAX_PIXELS
from habitat_eqarm.rewards.parsing import AGGREGATES

RM_BACKENDS = ("hf", "openai")
MODES = ("answer", "revise")


@dataclass
class AgentGRPOConfig(GRPOConfig):
    """Options of `eqarm train agent` (every ``GRPOConfig`` / ``TrainingArguments`` field too)."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2-VL-2B-Instruct",
        metadata={"help": "the agent (policy) to train: path or hub id; also the reference"},
    )
    data: str | None = field(
        default=None,
        metadata={"help": "EQA instances (question, episode_path; gt_answer for gt_reward)"},
    )
    data_split: str | None = field(default=None, metadata={"help": "split of a DatasetDict"})
    num_keyframes: int = field(default=5, metadata={"help": "keyframes per question"})
    max_pixels: int = field(default=MAX_PIXELS, metadata={"help": "pixel cap per frame"})
    max_prompt_tokens: int | None = field(
        default=8142,
        metadata={"help": "skip questions whose prompt (image tokens included) is longer"},
    )
    rm_model: str = field(
        default="outputs/cgrpo",
        metadata={"help": "EQA-RM: a path/hub id (hf) or the model name an endpoint serves"},
    )
    rm_backend: str = field(default="hf", metadata={"help": "hf (in-process) or openai"})
    rm_device: str | None = field(
        default=None, metadata={"help": "hf: the RM's device (cuda:1 ...); default: auto"}
    )
    rm_dtype: str | None = field(default=None, metadata={"help": "hf: the RM's dtype"})
    rm_batch_size: int = field(
        default=16, metadata={"help": "hf: instances per forward (>= completions per step)"}
    )
    rm_base_url: str | None = field(
        default=None, metadata={"help": "openai: the endpoint up to /v1 (eqarm serve: .../v1)"}
    )
    rm_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "openai: env variable holding the key"}
    )
    rm_timeout: float = field(default=120.0, metadata={"help": "openai: seconds per request"})
    rm_max_retries: int = field(
        default=5, metadata={"help": "openai: retries of a failed request before the step fails"}
    )
    rm_k: int = field(default=1, metadata={"help": "EQA-RM samples per completion (K)"})
    rm_aggregate: str = field(default="mean", metadata={"help": "mean, majority or median"})
    rm_temperature: float = field(default=0.8, metadata={"help": "EQA-RM sampling (0: greedy)"})
    rm_top_p: float = field(default=0.9, metadata={"help": "EQA-RM nucleus"})
    rm_max_new_tokens: int = field(default=512, metadata={"help": "EQA-RM tokens per sample"})
    rm_batch: bool = field(
        default=True,
        metadata={"help": "one RM call per step (false: one per completion, for benchmarks)"},
    )
    rm_weight: float = field(default=1.0, metadata={"help": "weight of rm_reward"})
    gt_weight: float = field(
        default=0.0, metadata={"help": "weight of gt_reward (answer matches gt_answer); 0: off"}
    )
    mode: str = field(
        default="answer",
        metadata={
            "help": "answer: prompts are questions; revise: prompts are the revision turn "
            "(first answer + EQA-RM's critique and score), rewarded by the revised answer's score"
        },
    )
    improvement_weight: float = field(
        default=0.0,
        metadata={"help": "revise: weight of the improvement column (R2 - R1); 0: off"},
    )
    first_answers: int = field(
        default=1,
        metadata={"help": "revise: first answers the start agent writes per question"},
    )
    curves_png: str = field(
        default="agent_grpo_curves.png", metadata={"help": "reward curves, in output_dir"}
    )
    # GRPO defaults for a 2B VLM agent; the loss as in C-GRPO
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.01
    max_completion_length: int | None = 512
    num_generations: int | None = 8
    per_device_train_batch_size: int = 8
    beta: float = 0.04
    loss_type: str = "grpo"
    max_grad_norm: float = 5.0
    activation_checkpointing: bool = True
    remove_unused_columns: bool = False
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rm_backend not in RM_BACKENDS:
            raise ValueError(f"rm_backend must be one of {RM_BACKENDS}, got {self.rm_backend!r}")
        if self.rm_backend == "openai" and not self.rm_base_url:
            raise ValueError("rm_backend openai needs rm_base_url (e.g. http://host:8000/v1)")
        if self.rm_aggregate not in AGGREGATES:
            raise ValueError(f"rm_aggregate must be one of {AGGREGATES}, got {self.rm_aggregate!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "revise" and self.rm_weight <= 0:
            raise ValueError("mode revise needs rm_weight > 0: EQA-RM judges both answers")
        if self.improvement_weight < 0 or (self.improvement_weight > 0 and self.mode != "revise"):
            raise ValueError(
                f"improvement_weight must be >= 0 and needs mode revise, got "
                f"{self.improvement_weight} with mode {self.mode!r}"
            )
        if self.first_answers < 1:
            raise ValueError(f"first_answers must be at least 1, got {self.first_answers}")
        if self.rm_k < 1:
            raise ValueError(f"rm_k must be at least 1, got {self.rm_k}")
        if self.rm_weight < 0 or self.gt_weight < 0 or self.rm_weight + self.gt_weight == 0:
            raise ValueError(
                f"rm_weight and gt_weight must be >= 0 and not both 0, got "
                f"{self.rm_weight} and {self.gt_weight}"
            )
