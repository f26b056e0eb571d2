"""The `eqarm` command tree: help for the program and each group, --version, unknown verbs."""

import pytest

from habitat_eqarm import __version__
from habitat_eqarm.cli.main import COMMANDS, GROUPS, main, make_parser

VERBS = {
    "bench": ["export", "generate", "judge", "review", "split"],
    "extract": ["hm3d", "scannet"],
    "train": ["cgrpo", "rft", "value-head"],
}


def listed(text: str, names) -> bool:
    """Every name opens a row of an argparse listing."""
    rows = {line.split()[0] for line in text.splitlines() if line.startswith("    ")}
    return set(names) <= rows


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []])
def test_program_help_lists_every_command(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: eqarm")
    assert listed(out, ["bench", "demo", "eval", "extract", "score", "serve", "train"])


@pytest.mark.parametrize("group", sorted(VERBS))
@pytest.mark.parametrize("help_flag", [["--help"], []])
def test_group_help_lists_its_verbs(group, help_flag, capsys):
    assert main([group, *help_flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eqarm {group}") and GROUPS[group] in out
    assert listed(out, VERBS[group])


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"eqarm {__version__}"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["frobnicate"], ["'frobnicate'", "'bench'", "'demo'", "'train'"]),
        (["bench", "frob"], ["'frob'", "'split'", "'export'"]),
    ],
)
def test_an_unknown_verb_names_itself_and_the_choices(argv, named, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and all(name in err for name in named)


def test_an_unknown_option_without_a_command_is_an_error(capsys):
    assert main(["--frobnicate"]) == 2
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_every_command_is_reachable():
    parser = make_parser()
    for verb in COMMANDS:
        namespace, rest = parser.parse_known_args([*verb.split(), "--k", "-1", "-h"])
        assert namespace.verb == verb and rest == ["--k", "-1", "-h"]


def test_a_verbs_help_comes_from_its_own_parser(capsys):
    assert main(["bench", "split", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: eqarm bench split") and "--data" in out
