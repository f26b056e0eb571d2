"""`eqarm`: one console script, one module per verb (`make_parser()` + `main(args)`).

The command tree (commands, groups such as ``bench`` and their verbs, ``--help``, ``--version``)
is argparse's subparsers; every verb then parses a config dataclass with TRL's ``TrlParser``, so
``--config file.yaml`` works for all of them and command-line flags override the file.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from habitat_eqarm import __version__

#: verb -> (module, one-line description). Multi-word verbs ("bench generate") go here too.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("habitat_eqarm.cli.demo", "score right and wrong answers on OpenEQA's demo episode"),
    "score": ("habitat_eqarm.cli.score", "critique and score one answer about one episode"),
    "eval": ("habitat_eqarm.cli.eval", "accuracy/RMSE of a reward model for every K, with reports"),
    "train rft": ("habitat_eqarm.cli.train_rft", "rejective fine-tuning: Eq. 1 filter, then SFT"),
    "train cgrpo": ("habitat_eqarm.cli.train_cgrpo", "C-GRPO: contrastive GRPO from the RFT model"),
    "train agent": ("habitat_eqarm.cli.train_agent", "GRPO for an EQA agent, EQA-RM as the reward"),
    "train value-head": (
        "habitat_eqarm.cli.train_value_head",
        "a value head on each response's last token: Bradley-Terry or listwise loss",
    ),
    "rollouts": (
        "habitat_eqarm.cli.rollouts",
        "play an agent over an env; write the episodes as EQA-RM data (JSONL)",
    ),
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
    "bench split": ("habitat_eqarm.cli.bench_split", "EQARewardBench: room-disjoint splits"),
    "bench export": ("habitat_eqarm.cli.bench_export", "EQARewardBench: datasets export + card"),
    "extract scannet": ("habitat_eqarm.cli.extract_scannet", "ScanNet .sens to OpenEQA frames"),
    "extract hm3d": ("habitat_eqarm.cli.extract_hm3d", "render OpenEQA HM3D states (habitat-sim)"),
}


#: command group -> one-line description; its verbs are the COMMANDS that start with its name.
GROUPS: dict[str, str] = {
    "bench": "build your own EQARewardBench, stage by stage",
    "extract": "OpenEQA episode folders from ScanNet .sens files or HM3D agent states",
    "train": "train EQA-RM (RFT, then C-GRPO), a value head, or an agent against EQA-RM",
}

DESCRIPTION = "EQA-RM: a generative multimodal reward model for Embodied Question Answering."
EPILOG = (
    "Every command takes --config FILE.yaml (keys = option names; flags override the file; "
    "several files are merged in order). 'eqarm <command> --help' lists a command's options."
)


def make_parser() -> argparse.ArgumentParser:
    """The command tree: ``eqarm [--version] <command> [<verb>] [options]``.

    A verb's own options are left unparsed here (its parser has no arguments and no ``-h``):
    :func:`main` hands them to the verb module's ``make_parser()``. A parsed namespace carries
    ``verb`` (a key of :data:`COMMANDS`, or None) and ``help_parser`` (the innermost parser).
    """
    parser = argparse.ArgumentParser(prog="eqarm", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(verb=None, help_parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    groups: dict[str, Any] = {}  # group name -> the subparsers action holding its verbs
    for verb, (_, description) in sorted(COMMANDS.items()):
        *group, name = verb.split()
        siblings = commands
        if group:
            if group[0] not in groups:
                about = GROUPS[group[0]]
                sub = commands.add_parser(group[0], help=about, description=about, epilog=EPILOG)
                sub.set_defaults(help_parser=sub)
                groups[group[0]] = sub.add_subparsers(title="verbs", metavar="<verb>")
            siblings = groups[group[0]]
        leaf = siblings.add_parser(name, help=description, add_help=False)
        leaf.set_defaults(verb=verb)
    return parser


def exit_status(stop: SystemExit) -> int:
    """The status a ``SystemExit`` (argparse's ``--help``, ``--version``, usage error) carries."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    return 1


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


def run_verb(verb: str, args: list[str]) -> int:
    """Parse ``args`` with the verb's own parser (``--config`` files merged) and run it."""
    module = importlib.import_module(COMMANDS[verb][0])
    try:
        args, merged = merge_configs(args)
    except (ValueError, OSError) as err:
        print(f"eqarm {verb}: error: {err}", file=sys.stderr)
        return 1
    parser = module.make_parser()
    parser.prog = f"eqarm {verb}"
    try:
        (config,) = parser.parse_args_and_config(args)
    except SystemExit as stop:  # --help, or a usage error argparse has printed
        return exit_status(stop)
    finally:
        if merged:
            os.unlink(merged)
    try:
        return int(module.main(config) or 0)
    except (ValueError, OSError) as err:  # bad input: our errors name the file and the problem
        print(f"eqarm {verb}: error: {err}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eqarm`` console script; returns the exit status.

    ``eqarm`` or ``eqarm <group>`` alone prints the commands (resp. verbs) and returns 0; an
    unknown command returns 2 with argparse's message, which names it and the choices.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    try:
        namespace, rest = parser.parse_known_args(argv)
        if namespace.verb is None and rest:
            namespace.help_parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as stop:
        return exit_status(stop)
    if namespace.verb is None:
        namespace.help_parser.print_help()
        return 0
    return run_verb(namespace.verb, rest)


if __name__ == "__main__":
    sys.exit(main())
