"""The README and the pages in docs/: the README stays short and starts with what CI runs, and
every relative link and anchor in them leads somewhere (a page moved or a heading renamed breaks
this test, not a reader's click)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

#: The README's two set-up commands; `.ci/run` runs the second verbatim.
COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . && .venv/bin/genrify classify examples",
    "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test]' && .venv/bin/python -m pytest",
]

# Markdown links and images `[text](target)` / `![alt](target "title")`, and HTML `src=`/`href=`.
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are not links)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lowercased, punctuation other than '-' and
    '_' dropped, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = prose(page.read_text(encoding="utf-8"))
    return [m.group(1) for pattern in (MD_LINK, HTML_LINK) for m in pattern.finditer(text)]


def test_the_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_opens_with_a_title_one_line_and_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"# \S.*", lines[0]), "the first line is the title"
    assert lines[1] == "", "a blank line after the title"
    assert lines[2].strip() and not lines[2].startswith(("#", "`", "-", "|", "!", "<")), \
        "the third line says in one line what genrify does"
    assert lines[3] == "", "the description is one line, then a blank line"
    assert lines[4:8] == ["```bash", *COMMANDS, "```"], "then the two set-up commands, exactly as CI runs them"


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run")
    if not ci.exists():
        pytest.skip(".ci/run is not in this checkout")
    assert COMMANDS[1] in ci.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("//"):
            continue  # http:, https:, mailto: ... are not checked here
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
            continue
        if anchor and (dest.suffix != ".md" or unquote(anchor) not in anchors(dest)):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_slug_rules_match_githubs():
    assert slug("Few songs? Transfer learning") == "few-songs-transfer-learning"
    assert slug("Pretrained taggers (musicnn)") == "pretrained-taggers-musicnn"
    assert slug("Your music, laid out by genre") == "your-music-laid-out-by-genre"
    assert slug("A plan: one million tracks on 50 workers") == "a-plan-one-million-tracks-on-50-workers"
    assert slug("`genrify_model` and snake_case") == "genrify_model-and-snake_case"


def test_the_link_check_sees_a_broken_link(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](#page) [gone](missing.md) ![img](pic.png)\n"
                    "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n", encoding="utf-8")
    assert links(page) == ["#page", "missing.md", "pic.png"]
    assert anchors(page) == {"page"}


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a page."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def genrify_calls(source: str) -> list[str]:
    """What a Python example gets wrong about genrify: an import that fails, or a keyword argument
    that the genrify function it calls (imported by name in the example) does not take."""
    import ast
    import importlib
    import inspect

    problems: list[str] = []
    names: dict[str, object] = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genrify"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                try:  # a name in the module, or a module in the package
                    names[alias.asname or alias.name] = getattr(module, alias.name, None) or \
                        importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    problems.append(f"from {node.module} import {alias.name}: no such name")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
            continue
        func = names[node.func.id]
        if not inspect.isfunction(func):
            continue
        parameters = inspect.signature(func).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        problems += [f"{node.func.id}(... {k.arg}=...): no such parameter" for k in node.keywords
                     if k.arg is not None and k.arg not in parameters]
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_import_and_call_what_genrify_has(page: Path):
    problems = [p for block in code_blocks(page.read_text(encoding="utf-8"), "python") for p in genrify_calls(block)]
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_example_check_sees_a_wrong_keyword():
    assert genrify_calls("from genrify.store.extract import extract\nextract('m', 's', client=1)\n") == [
        "extract(... client=...): no such parameter"]
    assert genrify_calls("from genrify.store.extract import extract, nothing\n") == [
        "from genrify.store.extract import nothing: no such name"]


def test_every_option_the_pages_give_a_command_is_in_its_help():
    from typer.testing import CliRunner

    from genrify.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    helps: dict[str, str] = {}
    missing = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for command, rest in re.findall(r"genrify (\w+)([^`\n|#]*)", line):
                if command not in commands:
                    continue
                if command not in helps:
                    helps[command] = CliRunner().invoke(app, [command, "--help"], terminal_width=300).output
                missing += [f"{page.relative_to(ROOT)}:{number}: genrify {command} {option}"
                            for option in re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", rest)
                            if option != "--help" and option not in helps[command]]
    assert not missing, "options not in the command's --help: " + "; ".join(missing)
