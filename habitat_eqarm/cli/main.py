"""`eqarm`: one console script, one module per verb (`make_parser()` + `main(args)`).

Every verb parses a config dataclass with TRL's ``TrlParser``, so ``--config file.yaml`` works for
all of them and command-line flags override the file.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Sequence

#: verb -> (module, one-line description). Multi-word verbs ("bench generate") go here too.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("habitat_eqarm.cli.demo", "score right and wrong answers on OpenEQA's demo episode"),
    "score": ("habitat_eqarm.cli.score", "critique and score one answer about one episode"),
    "eval": ("habitat_eqarm.cli.eval", "accuracy/RMSE of a reward model for every K, with reports"),
    "train rft": ("habitat_eqarm.cli.train_rft", "rejective fine-tuning: Eq. 1 filter, then SFT"),
    "train cgrpo": ("habitat_eqarm.cli.train_cgrpo", "C-GRPO: contrastive GRPO from the RFT model"),
    "serve": (
        "habitat_eqarm.cli.serve",
        "a reward model over HTTP: OpenAI-compatible and /v1/score",
    ),
    "bench generate": (
        "habitat_eqarm.cli.bench_generate",
        "EQARewardBench: N answers per question",
    ),
    "bench judge": ("habitat_eqarm.cli.bench_judge", "EQARewardBench: GT scores from a judge"),
    "bench review": ("habitat_eqarm.cli.bench_review", "EQARewardBench: human review web page"),
    "bench split": ("habitat_eqarm.cli.bench_split", "EQARewardBench: episode-disjoint splits"),
    "bench export": ("habitat_eqarm.cli.bench_export", "EQARewardBench: datasets export + card"),
    "extract scannet": ("habitat_eqarm.cli.extract_scannet", "ScanNet .sens to OpenEQA frames"),
    "extract hm3d": ("habitat_eqarm.cli.extract_hm3d", "render OpenEQA HM3D states (habitat-sim)"),
}


def _usage() -> str:
    width = max(len(v) for v in COMMANDS)
    rows = "\n".join(f"  {verb:<{width}}  {desc}" for verb, (_, desc) in sorted(COMMANDS.items()))
    return f"usage: eqarm <command> [--config FILE.yaml] [options]\n\ncommands:\n{rows}\n"


def _match(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The longest registered verb that prefixes ``argv``, and the remaining arguments."""
    for n in range(min(3, len(argv)), 0, -1):
        verb = " ".join(argv[:n])
        if verb in COMMANDS:
            return verb, list(argv[n:])
    return None


def merge_configs(args: list[str]) -> tuple[list[str], str | None]:
    """Several ``--config`` files: merged in order (later keys win) into one temporary file.

    Returns the arguments with a single ``--config`` and the temporary file to delete (or None).
    This is how an ablation row (a few keys) is laid over a base config.
    """
    import yaml

    files, rest, i = [], [], 0
    while i < len(args):
        if args[i] == "--config" and i + 1 < len(args):
            files.append(args[i + 1])
            i += 2
            continue
        if args[i].startswith("--config="):
            files.append(args[i].split("=", 1)[1])
        else:
            rest.append(args[i])
        i += 1
    if len(files) < 2:
        return args, None
    merged: dict = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config must be a mapping of option: value")
        merged.update(data)
    fd, tmp = tempfile.mkstemp(prefix="eqarm-config-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(merged, fh, sort_keys=False)
    return ["--config", tmp, *rest], tmp


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eqarm`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    matched = _match(argv)
    if matched is None:
        print(f"eqarm: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    verb, rest = matched
    module = importlib.import_module(COMMANDS[verb][0])
    try:
        rest, merged = merge_configs(rest)
    except (ValueError, OSError) as err:
        print(f"eqarm {verb}: error: {err}", file=sys.stderr)
        return 1
    try:
        (config,) = module.make_parser().parse_args_and_config(rest)
    finally:
        if merged:
            os.unlink(merged)
    try:
        return int(module.main(config) or 0)
    except (ValueError, OSError) as err:  # bad input: our errors name the file and the problem
        print(f"eqarm {verb}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
