"""What the trainers share: instances in, a lazily loaded dataset out, resumed training.

RFT, C-GRPO and agent GRPO read ``cfg.data``, skip and count the instances without ``gt_score``
(agent GRPO keeps them: it needs questions, not labels), turn the rest
into rows (each its own way), build a ``datasets.Dataset`` whose images are decoded when the
trainer asks for a row, drop the rows over a token limit (truncating would cut through image
tokens, which Qwen2-VL cannot run), write their statistics, and train resuming from the newest
complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.episode_cache import keyframe_images
from habitat_eqarm.data.io import atomic_write_text
from habitat_eqarm.data.loading import load_instances
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.backends.hf import pixel_size

Rows = list[dict[str, Any]]


def prepare_dataset(
    cfg: Any,
    name: str,
    stats: Any,
    make_rows: Callable[[list[EQAInstance]], Rows],
    tokens: Callable[[dict[str, Any], Any], int],
    max_tokens: int | None,
    *,
    needs_gt_score: bool = True,
) -> tuple[Any, Any]:
    """``(dataset, processor)`` for a trainer; writes ``<output_dir>/<name>_stats.json``.

    ``cfg``: the trainer's config (``data``, ``data_split``, ``model_name_or_path``,
    ``max_pixels``, ``output_dir``); ``name``: the trainer's, in messages (``C-GRPO``) and,
    lower-cased without dashes, in the stats file name (``cgrpo_stats.json``). ``stats``
    counts ``instances``, ``skipped_no_gt_score`` and ``skipped_too_long``; ``make_rows``
    turns the labelled instances into rows and counts the rest. Rows of more than
    ``max_tokens`` (``tokens(example, processor)``; None: no limit) are dropped. Raises
    ValueError, after writing the stats, when no instance gave a row. ``needs_gt_score=False``
    (agent GRPO: questions, not labelled answers) keeps the instances without ``gt_score``.
    """
    from transformers import AutoProcessor

    if not cfg.data:
        what = "labelled instances with gt_score" if needs_gt_score else "EQA instances"
        raise ValueError(f"{name} needs --data: {what}")
    instances = load_instances(cfg.data, cfg.data_split)
    labelled = [inst for inst in instances if inst.gt_score is not None or not needs_gt_score]
    stats.instances = len(instances)
    stats.skipped_no_gt_score = len(instances) - len(labelled)
    rows = make_rows(labelled)
    processor = AutoProcessor.from_pretrained(cfg.model_name_or_path)
    processor.image_processor.size = pixel_size(cfg.max_pixels)  # TRL has no max_pixels option
    dataset = None
    if rows:
        from datasets import Dataset

        dataset = Dataset.from_list(rows).with_transform(attach_images)
        dataset, stats.skipped_too_long = drop_longer(
            dataset, max_tokens, lambda example: tokens(example, processor)
        )
    stats_file = Path(cfg.output_dir) / f"{name.lower().replace('-', '')}_stats.json"
    atomic_write_text(stats_file, json.dumps(stats.to_dict(), indent=2) + "\n")
    if dataset is None:
        raise ValueError(f"{name}: no usable instance in {cfg.data} ({stats.to_dict()})")
    return dataset, processor


def instance_keyframes(inst: EQAInstance, num_keyframes: int) -> list[int]:
    """The keyframes a trainer shows for ``inst``: its own, else ``num_keyframes`` of its episode.

    Raises ValueError (no episode, no frames) or OSError (the episode cannot be read).
    """
    if not inst.episode_path:
        raise ValueError("no episode_path")
    memory = EpisodeMemory.from_path(inst.episode_path)
    indices = list(inst.keyframe_indices) or memory.keyframes(num_keyframes)
    if not indices:
        raise ValueError("the episode has no frames")
    return indices


def train_with_resume(
    trainer_class: type, cfg: Any, dataset: Any, processor: Any, callbacks: list | None = None
) -> Any:
    """Train ``trainer_class`` on ``dataset``, resuming from the newest complete checkpoint in
    ``cfg.output_dir``; save the model and processor there; return the trainer.

    ``callbacks`` come after :class:`CompleteCheckpointMarker`. Raises ValueError when every
    row was over the token limit.
    """
    from habitat_eqarm.training.checkpoints import (
        CompleteCheckpointMarker,
        last_complete_checkpoint,
    )

    if len(dataset) == 0:
        raise ValueError(
            f"{cfg.data}: no example left to train on: each is over the token limit "
            f"(see the stats in {cfg.output_dir})"
        )
    trainer = trainer_class(
        model=cfg.model_name_or_path,
        args=cfg,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[CompleteCheckpointMarker(), *(callbacks or [])],
    )
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(cfg.output_dir))
    trainer.save_model(cfg.output_dir)  # every process: ZeRO-3 gathers the shards for it
    if trainer.args.should_save:  # one writer per output folder
        processor.save_pretrained(cfg.output_dir)
    return trainer


@contextlib.contextmanager
def one_process_inference(cfg: Any) -> Iterator[None]:
    """Inside the block, models load whole and generate alone, as outside a distributed run.

    Under ``accelerate launch`` with ZeRO-3, transformers partitions every model it loads
    across the processes (``deepspeed.zero.Init``) and makes ``generate`` step in lockstep
    with them (``synced_gpus``): both are collective. A model that one process runs alone
    for inference (RFT's auxiliary evaluator, on the main process) would wait for the others
    forever. Outside ZeRO-3 the block changes nothing.
    """
    from transformers.integrations.deepspeed import (
        is_deepspeed_zero3_enabled,
        set_hf_deepspeed_config,
        unset_hf_deepspeed_config,
    )

    plugin = getattr(cfg, "deepspeed_plugin", None)
    # the HfDeepSpeedConfig that TrainingArguments registered (accelerate's or --deepspeed's)
    holder = getattr(plugin, "dschf", None) or getattr(plugin, "hf_ds_config", None)
    if holder is None or not is_deepspeed_zero3_enabled():
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(holder)


def attach_images(batch: dict[str, list]) -> dict[str, list]:
    """Dataset transform: decode each row's keyframes when the trainer asks for the row."""
    out = dict(batch)
    out["images"] = [
        list(keyframe_images(path, tuple(indices)))
        for path, indices in zip(batch["episode_path"], batch["keyframe_indices"], strict=True)
    ]
    return out


def drop_longer(dataset: Any, limit: int | None, tokens: Callable[[dict], int]) -> tuple[Any, int]:
    """The rows of ``dataset`` with at most ``limit`` tokens, and how many were dropped.

    Truncating instead would cut through image tokens, which Qwen2-VL cannot run.
    """
    if limit is None:
        return dataset, 0
    keep = [i for i in range(len(dataset)) if tokens(dataset[i]) <= limit]
    return dataset.select(keep), len(dataset) - len(keep)


def example_tokens(example: dict[str, Any], processor: Any, cfg: Any) -> int:
    """Prompt + completion tokens of one example, image tokens included (``cfg.max_pixels``)."""
    text = processor.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    size = pixel_size(cfg.max_pixels)
    encoded = processor(text=[text], images=example["images"], images_kwargs={"size": size})
    return len(encoded["input_ids"][0])
