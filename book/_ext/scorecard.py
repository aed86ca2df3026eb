"""Sphinx extension: the ``{scorecard}`` directive, one table of every claim of every chapter.

The chapters execute while Sphinx *reads* the book, and each writes its results record (see
:mod:`eoslib.book.results`). The directive leaves a placeholder; once every document has been read
(``doctree-resolved``, in the writing phase) the placeholder becomes a table built from the
records. A chapter in the book without a record is a warning — an error under ``-W`` — so a
chapter that silently stopped writing its record fails the build.

Per chapter the table shows the four verdict counts of its paper claims (``reproduced``,
``partly reproduced``, ``not reproduced``, ``not tested``) and, per claim, the scale its evidence
comes from (this run at the record's scale, or a stored paper-scale run). Consistency checks
(which hold by construction) are listed in a table of their own and not counted.

Records are read from ``$EOSLIB_RECORDS``, else ``<book>/_build/records``.
"""

from __future__ import annotations

import os
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from eoslib.book.results import CHECK_OUTCOMES, VERDICTS, claim_from_dict, read_records, tally

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


def _counts_text(counts) -> str:
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())


def fill_scorecards(app, doctree, docname):
    placeholders = list(doctree.findall(scorecard_node))
    if not placeholders:
        return
    folder = records_folder(app)
    by_chapter = {r["chapter"]: r for r in read_records(folder)}
    chapters = sorted(d for d in app.env.found_docs if d.startswith(CHAPTER_PREFIX))
    rows, check_rows, chapter_rows = [], [], []
    counts, check_counts = dict.fromkeys(VERDICTS, 0), dict.fromkeys(CHECK_OUTCOMES, 0)
    for doc in chapters:
        name = doc[len(CHAPTER_PREFIX):]
        record = by_chapter.get(name)
        if record is None:
            logger.warning(f"scorecard: no results record for chapter {name!r} in {folder} — did the "
                           "chapter run to its last cell? (`make clean` forces re-execution)",
                           location=docname)
            continue
        title = app.env.titles[doc].astext() if doc in app.env.titles else name

        def link():
            return nodes.reference("", "", nodes.Text(title), internal=True,
                                   refuri=app.builder.get_relative_uri(docname, doc))

        verdicts, checks = tally(record["claims"])
        for verdict, n in verdicts.items():
            counts[verdict] += n
        for outcome, n in checks.items():
            check_counts[outcome] += n
        chapter_rows.append([link(), record["scale"], *verdicts.values(), sum(checks.values())])
        for entry in record["claims"]:
            claim = claim_from_dict(entry)
            evidence = claim.evidence or f"{record['scale']} run"
            cells = [link(), claim.id, claim.claim, claim.paper, claim.ours, claim.verdict, evidence]
            (rows if claim.kind == "claim" else check_rows).append(cells)
    summary = nodes.paragraph(text=(
        f"{sum(counts.values())} paper claim{'' if sum(counts.values()) == 1 else 's'} in "
        f"{len(chapters)} chapter(s): "
        + _counts_text(counts)
        + f" ('not tested': no evidence at the scale run, neither a failure nor a success); "
        + f"{sum(check_counts.values())} consistency check"
        + ("" if sum(check_counts.values()) == 1 else "s") + ", not counted ("
        + _counts_text({k: v for k, v in check_counts.items() if v} or check_counts)
        + f"). Records read from {folder.name}/ at build time."))
    per_chapter = _table(["chapter", "scale", *VERDICTS, "consistency checks"], chapter_rows,
                         [16, 6, 9, 9, 9, 9, 9])
    table = _table(["chapter", "id", "claim", "paper", "ours", "verdict", "evidence"], rows,
                   [14, 8, 26, 18, 22, 9, 9])
    content = [summary, per_chapter, nodes.paragraph(text="Every paper claim:"), table]
    if check_rows:
        content += [nodes.paragraph(text="Consistency checks (hold by construction; shown and "
                                         "recorded, not scored as reproduced):"),
                    _table(["chapter", "id", "check", "expected", "ours", "outcome", "evidence"],
                           check_rows, [14, 8, 26, 18, 22, 9, 9])]
    for placeholder in placeholders:
        placeholder.replace_self([node.deepcopy() for node in content])


def always_outdated(app, env, added, changed, removed):
    """Re-write the scorecard pages on every build: the records change without their source."""
    return sorted(getattr(env, "eoslib_scorecard_docs", set()) - set(removed))


def setup(app):
    app.add_node(scorecard_node)
    app.add_directive("scorecard", ScorecardDirective)
    app.connect("doctree-resolved", fill_scorecards)
    app.connect("env-get-outdated", always_outdated)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True}
