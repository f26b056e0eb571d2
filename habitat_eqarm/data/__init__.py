"""Episodes and their recorder, OpenEQA and the instance schema.

The names below are imported on first use.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.data.episode import DEPTH_UNITS_PER_METRE, EpisodeMemory, EpisodeMemoryError
    from habitat_eqarm.data.episode_cache import EpisodeCache, keyframe_images
    from habitat_eqarm.data.keyframes import select_keyframes, uniform_indices, view_spread
    from habitat_eqarm.data.openeqa import (
        CATEGORIES,
        OpenEQAError,
        find_openeqa_dir,
        load_openeqa,
    )
    from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
    from habitat_eqarm.data.schema import (
        EQAInstance,
        InstanceError,
        dataset_features,
        from_dataset,
        iter_jsonl,
        read_jsonl,
        split_reasoning,
        to_dataset,
        write_jsonl,
    )
    from habitat_eqarm.data.synthetic import make_synthetic_episode

__all__ = [
    "CATEGORIES",
    "DEPTH_UNITS_PER_METRE",
    "EQAInstance",
    "EpisodeCache",
    "EpisodeMemory",
    "EpisodeMemoryError",
    "EpisodeMemoryRecorder",
    "InstanceError",
    "OpenEQAError",
    "dataset_features",
    "find_openeqa_dir",
    "from_dataset",
    "iter_jsonl",
    "keyframe_images",
    "load_openeqa",
    "make_synthetic_episode",
    "read_jsonl",
    "select_keyframes",
    "split_reasoning",
    "to_dataset",
    "uniform_indices",
    "view_spread",
    "write_jsonl",
]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
