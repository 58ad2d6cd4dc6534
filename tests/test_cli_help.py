"""`seglib COMMAND --help` explains every option: each has help text that states its default, and each command
has a description."""

from __future__ import annotations

import argparse

import pytest

from seglib.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "seglib"):
    """(name, parser) of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = dict(_commands(build_parser()))


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        yield action


def _name(action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_of_every_command_has_help(command):
    missing = [_name(a) for a in _options(COMMANDS[command]) if not (a.help or "").strip()]
    assert not missing, f"{command}: options without help: {', '.join(missing)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_with_a_default_says_it_in_its_help(command):
    unsaid = []
    for action in _options(COMMANDS[command]):
        if action.default in (None, "", [], argparse.SUPPRESS) or isinstance(action.default, bool):
            continue  # nothing to state (a flag's default is its absence)
        if "default" not in (action.help or ""):
            unsaid.append(f"{_name(action)} (default {action.default!r})")
    assert not unsaid, f"{command}: the help does not state the default of {', '.join(unsaid)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_description(command):
    parser = COMMANDS[command]
    has_subcommands = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    assert has_subcommands or (parser.description or "").strip(), f"{command} --help has no description"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_page_renders(command):
    """A stray % in a help text would break `--help` only when it is shown."""
    assert COMMANDS[command].format_help().startswith(f"usage: {command}")
