"""Rewrite the ``--help`` output embedded in the Markdown pages under docs/.

A page embeds a command's help between two marker comments; the start marker holds
the shell command whose output belongs there::

    <!-- help:start imgkit train --help -->
    ```text
    (the output of imgkit train --help, written by this script)
    ```
    <!-- help:end -->

Only the text between the markers is rewritten; the prose around it is the author's.
Run it after changing a command or an option (``make docs``); running it twice changes
nothing the second time. ``--check`` writes nothing and exits 1 when a block is stale
(tests/test_docs.py makes the same comparison).

The help is rendered by click at a fixed width (``WIDTH``), so the pages do not depend
on the terminal of whoever ran the script.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
WIDTH = 80

# Document the checkout this script sits in, not whatever imgkit is installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Each marker is a line of its own, so a marker quoted in `inline code` is left alone.
START = re.compile(r"^<!-- help:start (?P<command>[^\n]*?) -->$", re.MULTILINE)
BLOCK = re.compile(
    r"(?P<start>^<!-- help:start (?P<command>[^\n]*?) -->\n)"
    r"(?P<body>(?:(?!<!-- help:start ).)*?)(?P<end>^<!-- help:end -->$)",
    re.DOTALL | re.MULTILINE,
)


def help_args(command: str) -> list[str]:
    """The arguments after ``imgkit`` of a marker's command, e.g. ``["train", "--help"]``.

    Raises:
        ValueError: the marker does not hold ``imgkit [NAME...] --help``.
    """
    words = shlex.split(command)
    if len(words) < 2 or words[0] != "imgkit" or words[-1] != "--help":
        raise ValueError(f"a help marker must hold 'imgkit [COMMAND] --help', not {command!r}")
    return words[1:]


def help_text(args: list[str]) -> str:
    """What ``imgkit ARGS`` prints, rendered at ``WIDTH`` columns, trailing spaces removed.

    Raises:
        RuntimeError: the command did not exit 0 (an unknown command, a broken import).
    """
    from click.testing import CliRunner

    from imgkit.commands import cli

    result = CliRunner().invoke(cli, args, prog_name="imgkit", terminal_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"imgkit {shlex.join(args)} exited {result.exit_code}:\n{result.output}")
    return "".join(line.rstrip() + "\n" for line in result.output.rstrip().splitlines())


def blocks(text: str) -> list[tuple[str, str]]:
    """The (command, body) of every help block in a page, in order.

    Raises:
        ValueError: a start marker has no end marker before the next block.
    """
    for start in START.finditer(text):
        if not BLOCK.match(text, start.start()):
            raise ValueError(f"the help block {start['command']!r} has no <!-- help:end --> line")
    return [(m["command"], m["body"]) for m in BLOCK.finditer(text)]


def render(text: str, cache: dict[str, str] | None = None) -> str:
    """``text`` with every help block's body replaced by the current help."""
    cache = {} if cache is None else cache
    blocks(text)  # refuse an unclosed block before rewriting anything

    def body(match: re.Match) -> str:
        command = match["command"]
        if command not in cache:
            cache[command] = help_text(help_args(command))
        return f"{match['start']}```text\n{cache[command]}```\n{match['end']}"

    return BLOCK.sub(body, text)


def pages() -> list[Path]:
    """Every Markdown page under docs/, sorted."""
    return sorted(DOCS.rglob("*.md"))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a block is stale"
    )
    options = parser.parse_args(argv)
    cache: dict[str, str] = {}
    stale = []
    for path in pages():
        old = path.read_text(encoding="utf-8")
        new = render(old, cache)
        if new == old:
            continue
        stale.append(path.relative_to(ROOT))
        if not options.check:
            _write(path, new)
    verb = "stale" if options.check else "rewrote"
    for path in stale:
        print(f"{verb}: {path}")
    if options.check and stale:
        print("run `make docs` (python3 docs/gen_help.py) to update them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
