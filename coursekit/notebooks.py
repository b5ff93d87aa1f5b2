"""Structure and accessibility checks for course notebooks (used by tests and by authors).

A check returns a list of human-readable problems; an empty list means the
notebook passes.  Checks read the notebook's JSON only; those about figures
need an executed copy (outputs present).
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_VAGUE_LINK_TEXT = {"here", "click here", "this", "link", "this link", "read more", "more"}


def headings(nb) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading in Markdown cells, outside code fences."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            if _FENCE.match(line):
                fenced = not fenced
                continue
            m = None if fenced else _ATX.match(line)
            if m:
                found.append((len(m.group(1)), m.group(2).strip()))
            # HTML headings (e.g. inside <details>) count too
            for level, text in re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", "" if fenced else line, flags=re.I):
                found.append((int(level), re.sub(r"<[^>]+>", "", text).strip()))
    return found


def heading_problems(nb) -> list[str]:
    hs = headings(nb)
    problems = []
    h1 = [t for level, t in hs if level == 1]
    if len(h1) != 1:
        problems.append(f"expected exactly one H1, found {len(h1)}: {h1}")
    if hs and hs[0][0] != 1:
        problems.append(f"the first heading should be the H1, found H{hs[0][0]} '{hs[0][1]}'")
    for (prev, _), (level, text) in zip(hs, hs[1:]):
        if level > prev + 1:
            problems.append(f"heading level jumps from H{prev} to H{level} at '{text}'")
    return problems


def link_problems(nb) -> list[str]:
    problems = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for text, _url in _LINK.findall(cell.source):
                if text.strip().lower() in _VAGUE_LINK_TEXT or text.strip().startswith("http"):
                    problems.append(f"link text does not describe its target: '{text}'")
    return problems


def lesson_frame_problems(nb) -> list[str]:
    """A lesson opens with objectives, a central question and a time, and ends with a check."""
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    lower = text.lower()
    problems = []
    if "learning objectives" not in lower:
        problems.append("no 'Learning objectives'")
    if "central question" not in lower:
        problems.append("no 'central question'")
    if not re.search(r"(estimated time|time needed|minutes)", lower):
        problems.append("no estimated time")
    if "check your understanding" not in lower:
        problems.append("no 'Check your understanding' section")
    return problems


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.alts: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))


def figure_problems(executed_nb, *, require_alt: bool = True, min_alt: int = 40) -> list[str]:
    """Every figure output has alt text (HTML <img alt>) and a '**Figure N.**' caption cell after it."""
    problems = []
    cells = executed_nb.cells
    n_fig = 0
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        figs_here = 0
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data and "<img" in data["text/html"]:
                parser = _Imgs()
                parser.feed(data["text/html"])
                for alt in parser.alts:
                    figs_here += 1
                    if require_alt and (not alt or len(alt.strip()) < min_alt):
                        problems.append(f"cell {i}: figure image has no useful alt text ({alt!r})")
            elif "image/png" in data or "image/svg+xml" in data:
                figs_here += 1
                if require_alt:
                    problems.append(f"cell {i}: figure is a bare image output (no alt text possible)")
        if figs_here:
            n_fig += figs_here
            nxt = next((c for c in cells[i + 1:] if c.cell_type == "markdown"), None)
            if nxt is None or not re.match(r"\s*\*\*Figure\s+\d+\.?\*\*", nxt.source):
                problems.append(f"cell {i}: figure is not followed by a '**Figure N.**' caption")
    return problems


def count_figures(executed_nb) -> int:
    n = 0
    for cell in executed_nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if "text/html" in data and "<img" in data["text/html"]:
                n += data["text/html"].count("<img")
            elif "image/png" in data or "image/svg+xml" in data:
                n += 1
    return n
