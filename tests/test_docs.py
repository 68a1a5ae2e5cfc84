"""Every command has help with an example and a section in README.md."""
from __future__ import annotations

from pathlib import Path

import click
import pytest

from sync.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "ecrf") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(commands(command, f"{prefix} {name}"))
        else:
            found.append((f"{prefix} {name}", command))
    return found


@pytest.mark.parametrize("name,command", commands(cli), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_with_an_example_and_a_readme_section(name, command):
    assert command.help and "Example:" in command.help, f"{name} needs help with an Example:"
    assert f"### `{name}`" in README, f"README.md needs a section '### `{name}`'"


def test_readme_starts_with_the_demo_and_the_test_command():
    first_block = README.split("```")[1]
    assert "./scripts/demo" in first_block and "./scripts/test" in first_block
