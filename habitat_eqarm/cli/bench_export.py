"""`eqarm bench export`: the splits as a Hugging Face DatasetDict (disk + parquet) with a card."""

from __future__ import annotations

from habitat_eqarm.bench.builder.export import ExportConfig, run_export


def make_parser():
    """The `eqarm bench export` argument parser (``--config file.yaml`` supported)."""
    from trl import TrlParser

    return TrlParser(ExportConfig)


def main(cfg: ExportConfig) -> int:
    """Write the export folder; returns 0."""
    import json

    out = run_export(cfg)
    written = json.loads((out / "export.json").read_text(encoding="utf-8"))
    for name, count in written["splits"].items():
        print(f"{name}: {count} instances")
    for name in written["empty_splits_left_out"]:
        print(f"{name}: empty, left out (datasets cannot load an empty saved split)")
    print(f"dataset in {out}: load_from_disk, load_dataset (parquet) or `eqarm eval --data {out}`")
    return 0
