"""Every relative link in README.md and docs/ (pages, pictures, source files, `#anchors`) resolves: the file
exists, and an anchor names a heading of the page it points to, slugged as GitHub renders headings."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)  # a run of n backticks closes at the next run of n
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HTML = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
EXPLICIT = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)


def _prose(text: str) -> str:
    """The page without fenced code blocks and code spans (their brackets are code, not links)."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and images as their text), lower case, without
    punctuation other than `-` and `_`, spaces as `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set(EXPLICIT.findall(text))
    for _, heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers repeated headings
    return out


def links(page: Path) -> list[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    return INLINE.findall(text) + REFERENCE.findall(text) + HTML.findall(text)


def test_the_parsers_on_a_known_page(tmp_path: Path) -> None:
    assert slug("The close's lines and `streamed_amount`") == "the-closes-lines-and-streamed_amount"
    assert slug("E-invoice (UBL 2.1 / EN 16931)") == "e-invoice-ubl-21--en-16931"
    assert slug("See [the API](api.md) now") == "see-the-api-now"
    page = tmp_path / "p.md"
    page.write_text("# A\n## A\n```\n# not a heading [x](nowhere.md)\n```\n"
                    "[one](b.md#a-1) ![pic](img/p.png \"title\") `[code](no.md)`\n"
                    "`` a`b `` [two](d.md) a lone `` [3](e.md)\n"
                    "[ref]: c.md\n"
                    "[ext](https://example.com) [self](#a)\n")  # fmt: skip
    assert anchors(page) == {"a", "a-1"}
    assert links(page) == ["b.md#a-1", "img/p.png", "d.md", "e.md", "https://example.com", "#a", "c.md"]


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _broken(page: Path) -> list[str]:
    out = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        if not dest.exists():
            out.append(f"{target}: no such file")
        elif page.is_relative_to(ROOT) and not dest.is_relative_to(ROOT):
            out.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            out.append(f"{target}: no heading #{anchor} in {_where(dest)}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    assert _broken(page) == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Here\n[gone](gone.md) [self](#here) [bad](#there) [up](p.md#here) [ok](./p.md)\n")
    assert _broken(page) == ["gone.md: no such file", "#there: no heading #there in p.md"]


def test_readme_links_every_page_of_docs() -> None:
    """A reader finds every page from the README (pages of a subfolder through its own README)."""
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    pages = [*sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs").glob("*/README.md"))]
    assert [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked] == []
