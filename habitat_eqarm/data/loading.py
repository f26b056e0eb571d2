"""Labelled instances from any format we write: JSONL, parquet, or a saved Dataset(Dict).

What `eqarm eval` and both trainers read; relative episode paths are resolved here, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from habitat_eqarm.data.schema import EQAInstance, InstanceError, from_dataset, read_jsonl


def load_instances(
    path: str | os.PathLike[str], split: str | None = None, data_root: str | None = None
) -> list[EQAInstance]:
    """Labelled instances from JSONL, parquet, or a ``save_to_disk`` Dataset / DatasetDict.

    A relative ``episode_path`` is resolved against ``data_root`` (default: the data's folder).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        instances = read_jsonl(path)
    elif path.suffix == ".parquet":
        from datasets import Dataset

        instances = from_dataset(Dataset.from_parquet(str(path)))
    elif path.is_dir():
        instances = from_dataset(_load_dataset_dir(path, split))
    else:
        raise InstanceError(f"{path}: expected a .jsonl or .parquet file or a dataset folder")
    root = Path(data_root) if data_root else (path if path.is_dir() else path.parent)
    for inst in instances:
        if inst.episode_path and not Path(inst.episode_path).is_absolute():
            inst.episode_path = str(root / inst.episode_path)
    return instances


def _load_dataset_dir(path: Path, split: str | None) -> Any:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise InstanceError(f"{path}: not a saved dataset ({err})") from None
    if isinstance(data, DatasetDict):
        if split is None:
            split = "test" if "test" in data else next(iter(data))
        if split not in data:
            raise InstanceError(f"{path}: no split {split!r} (has {', '.join(data)})")
        return data[split]
    return data
