"""No hand-written verdicts in the chapters' prose (issue 16).

A chapter's Verdict section, and any sentence that states a verdict, is generated from its graded
claims, so a rerun with other parameters can never read differently from its own table. These
checks read the jupytext sources: every chapter declares its claims in one ``claims`` cell, its
``## Verdict`` heading is followed by the generated section, and no markdown cell states a verdict
label outside code literals (where it names the term, as in "`not tested` means …").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("*.py"))

#: Verdict labels and the verbs that would state one by hand.
VERDICT_WORDS = re.compile(
    r"\b(not reproduced|partly reproduced|(is|are|was|were|is thus|is therefore) reproduced"
    r"|reproduces? (fully|partly|only partly)|not tested)\b", re.I)


def cells(path: Path) -> list[tuple[str, str, str]]:
    """(kind, header line, body) of each ``# %%`` cell of a jupytext percent file."""
    out = []
    for chunk in re.split(r"^(?=# %%)", path.read_text(), flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        kind = "markdown" if "[markdown]" in header else "code"
        out.append((kind, header, body))
    return out


def prose(body: str) -> str:
    """A markdown cell's text without its comment marks, code literals and math."""
    text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    return re.sub(r"\$[^$]*\$", " ", text)


def test_every_chapter_is_found():
    assert len(CHAPTERS) >= 7


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_verdict_section_is_generated(path):
    cs = cells(path)
    assert sum('"claims"' in h for k, h, _ in cs if k == "code") == 1, f"{path.name}: one claims cell"
    at = [i for i, (k, _, b) in enumerate(cs) if k == "markdown" and re.search(r"^# ## Verdict\b", b, re.M)]
    assert len(at) == 1, f"{path.name}: one '## Verdict' section"
    kind, header, body = cs[at[0] + 1]
    assert kind == "code" and "remove-input" in header and "verdict_section(" in body, (
        f"{path.name}: the cell after '## Verdict' must display verdict_section(...) (remove-input)")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_verdict_stated_by_hand(path):
    bad = [(m.group(0), prose(b).strip()[:80]) for k, _, b in cells(path) if k == "markdown"
           for m in [VERDICT_WORDS.search(prose(b))] if m]
    assert not bad, f"{path.name}: markdown states a verdict by hand: {bad}"
