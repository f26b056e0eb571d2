"""`eqarm`: one console script, one module per verb (`make_parser()` + `main(args)`).

Every verb parses a config dataclass with TRL's ``TrlParser``, so ``--config file.yaml`` works for
all of them and command-line flags override the file.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: verb -> (module, one-line description). Multi-word verbs ("bench generate") go here too.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("habitat_eqarm.cli.demo", "score right and wrong answers on OpenEQA's demo episode"),
    "score": ("habitat_eqarm.cli.score", "critique and score one answer about one episode"),
    "eval": ("habitat_eqarm.cli.eval", "accuracy/RMSE of a reward model for every K, with reports"),
    "train rft": ("habitat_eqarm.cli.train_rft", "rejective fine-tuning: Eq. 1 filter, then SFT"),
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
    (config,) = module.make_parser().parse_args_and_config(rest)
    try:
        return int(module.main(config) or 0)
    except (ValueError, OSError) as err:  # bad input: our errors name the file and the problem
        print(f"eqarm {verb}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
