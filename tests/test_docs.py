"""The command's documentation covers the command: every subcommand, flag and exit code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from qxt_pandas.cli import EXIT_CODES, _parser

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_and_flag_is_in_docs_cli():
    text = DOCS.read_text(encoding="utf-8")
    for name, sub in subcommands().items():
        assert f"qxt {name}" in text, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in text, f"qxt {name} {flag} is not in docs/cli.md"


def test_every_exit_code_is_in_the_help_and_the_docs():
    helptext = _parser().format_help()
    table = re.findall(r"^\| (\d+) \|", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    assert sorted(map(int, table)) == sorted(EXIT_CODES)
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s", helptext, re.MULTILINE), code
