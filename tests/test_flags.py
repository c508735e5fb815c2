"""The flags as a newcomer reads them: titled groups, short usage, examples that run, defaults from the environment."""

from __future__ import annotations

import argparse
import os
import re
import shlex

import pytest

from document_it.cli import main
from document_it.flags import build_parser, command_index

UNTITLED = ("options", "optional arguments", "positional arguments")


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def test_every_flag_sits_in_a_titled_group_of_a_readable_size():
    parser = build_parser({})
    groups = {id(action): group.title for group in parser._action_groups for action in group._group_actions}
    flags = _flags(parser)
    assert len(flags) >= 58
    assert all(groups.get(id(action)) not in (None, *UNTITLED) for action in flags)
    sizes = [len(group._group_actions) for group in parser._action_groups if group.title not in UNTITLED]
    assert len(sizes) >= 8 and max(sizes) <= 12


def test_help_has_no_untitled_block_and_a_short_usage(capsys):
    out = _help(capsys)
    titles = [line[:-1] for line in out.splitlines() if re.match(r"^[a-zA-Z].*:$", line)]
    assert not set(titles) & set(UNTITLED)
    for title in ("what to read and where to write", "the LLM", "parallelism", "limits, retries and budgets",
                  "batching and cache", "crawling", "job queue and nightly runs", "dask mode"):
        assert title in titles
    usage = out.split("\n\n", 1)[0].splitlines()
    assert usage == ["usage: document-it [options]", "       document-it cache {stats,clear} [--state-dir DIR]"]
    assert len(out.splitlines()) < 185  # a budget: every flag has its say in a line or two


def test_help_shows_every_default_there_is(capsys):
    out = "".join(_help(capsys).split())  # long values (paths) may be wrapped anywhere
    for action in _flags(build_parser(os.environ)):  # the help shows what the environment sets
        if action.default not in (None, argparse.SUPPRESS) and not isinstance(action.default, bool):
            assert f"(default:{action.default})" in out, action.option_strings
    for shown in ("(default:hybrid)", "(default:20)", "(default:8)", "(default:output)", "(default:auto)"):
        assert shown in out


def test_examples_cover_folders_local_sites_and_nightly_runs_and_all_parse(capsys):
    out = _help(capsys)
    examples = out.split("examples:\n", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    commands = [shlex.split(line.split("#", 1)[0]) for line in examples.splitlines() if line.strip()]
    joined = [" ".join(argv) for argv in commands]
    assert "python main.py --source ./docs/html" in joined
    assert any("--source http://127.0.0.1:8000/ --allow-private" in line for line in joined)
    assert any("--incremental" in line for line in joined) and any("--resume" in line for line in joined)
    assert any(line.endswith("cache stats") for line in joined)
    parser = build_parser({})
    for argv in commands:
        assert argv[:2] == ["python", "main.py"]
        word = command_index(parser, argv[2:])
        if word is None:
            parser.parse_args(argv[2:])  # a mistake in an example would exit here
        else:
            assert argv[2:][word] == "cache"


@pytest.mark.parametrize("argv, index", [
    (["cache", "stats"], 0),
    (["--state-dir", "s", "cache", "stats"], 2),
    (["--state-dir=s", "cache", "clear"], 1),
    (["--state", "s", "cache", "stats"], 2),  # an abbreviation still takes its value
    (["--quiet", "cache"], 1),
    (["--output-dir", "cache", "--limit", "3"], None),  # a folder named cache is not the command
    (["--max-workers", "4"], None),
])
def test_the_command_word_is_found_wherever_the_flags_stand(argv, index):
    assert command_index(build_parser({}), argv) == index


def test_every_value_flag_reads_its_environment_variable():
    parser = build_parser({})
    value_flags = [action for action in _flags(parser) if action.nargs != 0]
    env = {f"DOCUMENT_IT_{action.option_strings[-1][2:].upper().replace('-', '_')}": "1" for action in value_flags}
    assert set(build_parser(env).env_used) == {action.option_strings[-1] for action in value_flags}
