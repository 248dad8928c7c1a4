"""The docs cannot drift from the CLI: every command has a page, every option is described
there, each page's embedded --help is current, examples call only real commands and
options, links resolve, the README stays short.

docs/gen_help.py writes the help blocks; these tests only read. When one fails on a
stale block, run `make docs`.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click
import pytest

from imgkit.commands import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND_DOCS = DOCS / "commands"
README_MAX_LINES = 300


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_help", DOCS / "gen_help.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_help = _load_generator()
CONTEXT = click.Context(cli, info_name="imgkit", **cli.context_settings)
COMMANDS = cli.list_commands(CONTEXT)
PAGES = [ROOT / "README.md", *gen_help.pages()]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _page(name: str) -> Path:
    return COMMAND_DOCS / f"{name}.md"


def _prose(text: str) -> str:
    """A page without its generated help blocks: what an author wrote."""
    return gen_help.BLOCK.sub("", text)


def _documented_names(option: click.Option) -> list[str]:
    """The names a page must use for an option: its long names, else its short ones."""
    names = option.opts + option.secondary_opts
    return [n for n in names if n.startswith("--")] or names


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_there_are_commands_to_document():
    assert len(COMMANDS) >= 12, COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_page_with_examples(name):
    page = _page(name)
    assert page.is_file(), f"`imgkit {name}` has no page: write {_rel(page)} (see docs/README.md)"
    text = page.read_text(encoding="utf-8")
    assert f"imgkit {name} --help" in [command for command, _ in gen_help.blocks(text)], (
        f"{_rel(page)} embeds no `<!-- help:start imgkit {name} --help -->` block"
    )
    examples = re.findall(r"```bash\n(.*?)```", _prose(text), re.DOTALL)
    assert any(re.search(rf"^imgkit {name}\b", ex, re.MULTILINE) for ex in examples), (
        f"{_rel(page)} shows no `imgkit {name} ...` example in a ```bash block"
    )
    index = (COMMAND_DOCS / "README.md").read_text(encoding="utf-8")
    assert f"]({name}.md)" in index, f"docs/commands/README.md does not link {name}.md"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_described_in_its_page(name):
    page = _page(name)
    if not page.is_file():
        pytest.fail(f"`imgkit {name}` has no page: write {_rel(page)}")
    # The help block would name every option by itself; the prose has to as well.
    prose = _prose(page.read_text(encoding="utf-8"))
    command = cli.get_command(CONTEXT, name)
    help_names = set(command.get_help_option_names(CONTEXT))
    missing = [
        "/".join(_documented_names(p))
        for p in command.params
        if isinstance(p, click.Option)
        and not p.hidden
        and not help_names & set(p.opts)
        and not any(_mentions(prose, n) for n in _documented_names(p))
    ]
    assert not missing, f"{_rel(page)} does not describe {', '.join(missing)} outside --help"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_embedded_help_is_current(page):
    for command, body in gen_help.blocks(page.read_text(encoding="utf-8")):
        current = gen_help.help_text(gen_help.help_args(command))
        assert body == f"```text\n{current}```\n", (
            f"{_rel(page)}: the `{command}` block differs from the CLI's; run `make docs`"
        )


def _example_calls(text: str) -> list[tuple[str, str]]:
    """(command, arguments) of every `imgkit CMD ...` call in a page's ```bash blocks."""
    calls = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)  # a comment, not a '#' inside a word
            calls += re.findall(r"\bimgkit(?: -v)? ([a-z][\w-]*)([^|;&]*)", line)
    return calls


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_examples_use_real_commands_and_options(page):
    wrong = []
    for name, args in _example_calls(page.read_text(encoding="utf-8")):
        command = cli.get_command(CONTEXT, name)
        if command is None:
            wrong.append(f"imgkit {name} (no such command)")
            continue
        known = {n for p in command.params for n in getattr(p, "opts", []) + p.secondary_opts}
        known |= set(command.get_help_option_names(CONTEXT))
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", args):
            if flag not in known:
                wrong.append(f"imgkit {name} {flag}")
    assert not wrong, f"{_rel(page)}: examples use what the CLI lacks: {'; '.join(wrong)}"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference to docs/"
    )


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors in a Markdown page (fenced code skipped)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    broken = []
    for link in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no {target})")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link} (no heading #{anchor} in {_rel(path)})")
    assert not broken, f"{_rel(page)} has broken links: {'; '.join(broken)}"
