"""Sphinx extension: the ``{scorecard}`` directive, one table of every claim of every chapter.

The chapters execute while Sphinx *reads* the book, and each writes its results record (see
:mod:`eoslib.book.results`). The directive leaves a placeholder; once every document has been read
(``doctree-resolved``, in the writing phase) the placeholder becomes a table built from the
records. A chapter in the book without a record is a warning — an error under ``-W`` — so a
chapter that silently stopped writing its record fails the build.

Records are read from ``$EOSLIB_RECORDS``, else ``<book>/_build/records``.
"""

from __future__ import annotations

import os
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from eoslib.book.results import VERDICTS, read_records

logger = logging.getLogger(__name__)
CHAPTER_PREFIX = "notebooks/"


class scorecard_node(nodes.General, nodes.Element):
    """Placeholder replaced by the table once all chapters have run."""


class ScorecardDirective(SphinxDirective):
    has_content = False

    def run(self):
        docs = getattr(self.env, "eoslib_scorecard_docs", set())
        docs.add(self.env.docname)
        self.env.eoslib_scorecard_docs = docs
        return [scorecard_node()]


def records_folder(app) -> Path:
    return Path(os.environ.get("EOSLIB_RECORDS") or Path(app.srcdir) / "_build" / "records")


def _row(cells, header=False):
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        content = cell if isinstance(cell, nodes.Node) else nodes.Text(str(cell))
        paragraph = nodes.paragraph()
        paragraph += nodes.strong(text=str(cell)) if header else content
        entry += paragraph
        row += entry
    return row


def _table(header, rows, widths):
    table = nodes.table(classes=["eoslib-scorecard"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(header, header=True)
    group += head
    body = nodes.tbody()
    for cells in rows:
        body += _row(cells)
    group += body
    return table


def fill_scorecards(app, doctree, docname):
    placeholders = list(doctree.findall(scorecard_node))
    if not placeholders:
        return
    folder = records_folder(app)
    by_chapter = {r["chapter"]: r for r in read_records(folder)}
    chapters = sorted(d for d in app.env.found_docs if d.startswith(CHAPTER_PREFIX))
    rows, counts = [], dict.fromkeys(VERDICTS, 0)
    for doc in chapters:
        name = doc[len(CHAPTER_PREFIX):]
        record = by_chapter.get(name)
        if record is None:
            logger.warning(f"scorecard: no results record for chapter {name!r} in {folder} — did the "
                           "chapter run to its last cell? (`make clean` forces re-execution)",
                           location=docname)
            continue
        title = app.env.titles[doc].astext() if doc in app.env.titles else name
        for claim in record["claims"]:
            link = nodes.reference("", "", nodes.Text(title), internal=True,
                                   refuri=app.builder.get_relative_uri(docname, doc))
            counts[claim["verdict"]] += 1
            rows.append([link, claim["id"], claim["claim"], claim["paper"], claim["ours"],
                         claim["verdict"], record["scale"]])
    summary = nodes.paragraph(text=(
        f"{sum(counts.values())} claims in {len(chapters)} chapter(s): "
        + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
        + f". Records read from {folder.name}/ at build time."))
    table = _table(["chapter", "id", "claim", "paper", "ours", "verdict", "scale"], rows,
                   [14, 8, 26, 18, 22, 9, 6])
    for placeholder in placeholders:
        placeholder.replace_self([summary.deepcopy(), table.deepcopy()])


def always_outdated(app, env, added, changed, removed):
    """Re-write the scorecard pages on every build: the records change without their source."""
    return sorted(getattr(env, "eoslib_scorecard_docs", set()) - set(removed))


def setup(app):
    app.add_node(scorecard_node)
    app.add_directive("scorecard", ScorecardDirective)
    app.connect("doctree-resolved", fill_scorecards)
    app.connect("env-get-outdated", always_outdated)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
