"""The README matches the code: every ``dmd <command> ...`` the README shows names a real command, and every
option it gives that command exists (issue 17: the README listed ``--threads`` and ``-j`` on commands
that lack them). The commands' own parsers are asked, so a renamed flag fails here."""

from __future__ import annotations

import re

import pytest
import typer.main

from dmd_pipeline.cli.app import app
from dmd_pipeline.utils import REPO_ROOT

README = REPO_ROOT / "README.md"
#: ``dmd <command>`` then the rest of the line, in code spans, code blocks and tables.
_COMMAND = re.compile(r"\bdmd (analyze|extract|train|evaluate|selftest|info|doctor|serve)\b([^`\n|]*)")
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _options(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]
    names = {"-h", "--help"}
    for p in cmd.params:
        names.update(p.opts)
        names.update(p.secondary_opts)
    return names


def _readme_uses() -> list[tuple[int, str, str]]:
    """(line number, command, option) of every option the README gives a dmd command."""
    uses = []
    for n, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        for m in _COMMAND.finditer(line):
            rest = m.group(2).split("#")[0]  # a shell comment is prose
            rest = re.split(r"\s(?:\||&&|;)\s", rest)[0]  # the next command of a pipeline
            uses.extend((n, m.group(1), opt) for opt in _OPTION.findall(rest))
    return uses


def test_readme_shows_commands() -> None:
    commands = {c for _, c, _ in _readme_uses()}
    assert {"analyze", "extract", "train", "evaluate"} <= commands


@pytest.mark.parametrize("command", ["analyze", "extract", "train", "evaluate", "selftest", "serve"])
def test_every_readme_option_exists(command: str) -> None:
    known = _options(command)
    wrong = [
        f"README.md:{n}: dmd {c} {opt}" for n, c, opt in _readme_uses() if c == command and opt not in known
    ]
    assert not wrong, "options the README gives but the command lacks:\n" + "\n".join(wrong)


def test_conventions_paragraph_names_the_commands_that_have_each_option() -> None:
    """The "shared by every command" conventions say which commands take ``-j`` and ``--threads``."""
    text = README.read_text(encoding="utf-8")
    para = text[text.index("Conventions shared by every command") :].split("\n\n")[0]
    for opt, claimed in (
        ("-j", r"`-j/--workers N` \(([^)]*)\)"),
        ("--threads", r"`--threads N` \(([^)]*)\)"),
    ):
        m = re.search(claimed, para)
        assert m, f"the conventions paragraph does not say which commands take {opt}"
        named = set(re.findall(r"`?(analyze|extract|train|evaluate|serve|selftest)`?", m.group(1)))
        having = {
            c for c in ("analyze", "extract", "train", "evaluate", "serve", "selftest") if opt in _options(c)
        }
        assert named == having, (opt, named, having)
