"""`--help` describes every option of every command: what it does, not only its default."""

from __future__ import annotations

import argparse
import re

import pytest

from gradtwin.cli import main
from gradtwin.cli.parser import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", list(_commands()))
def test_every_option_has_a_description(command: str) -> None:
    bare = []
    for action in _commands()[command]._actions:
        text = re.sub(r"\(default[^)]*\)", "", action.help or "").strip()
        if action.help is argparse.SUPPRESS or len(text.split()) < 3:
            bare.append(f"{'/'.join(action.option_strings)}: {action.help!r}")
    assert not bare, f"gradtwin {command}: these options' help does not say what they do: {bare}"


@pytest.mark.parametrize("command", list(_commands()))
def test_help_prints_and_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for action in _commands()[command]._actions:
        for option in action.option_strings:
            assert option in out
