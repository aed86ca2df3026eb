"""Sphinx extension: the book's scorecard dashboard and its status page, built from the records.

The chapters execute while Sphinx *reads* the book, and each writes its results record (see
:mod:`eoslib.book.results`). The directives below leave placeholders; once every document has been
read (``doctree-resolved``, in the writing phase) each placeholder becomes HTML built from the
records. A chapter in the book without a record is a warning — an error under ``-W`` — so a chapter
that silently stopped writing its record fails the build.

``{scorecard}``
    The dashboard: the book's totals as verdict badges; per chapter one line with the counts of its
    paper claims by verdict (``reproduced``, ``partly reproduced``, ``not reproduced``,
    ``not tested``; consistency checks counted apart as ``holds`` / ``fails``), the scale of its
    evidence and its run time; then per claim a compact row (verdict badge, id, claim and, beside
    a verdict that is not ``reproduced``, how its experiment differs from the paper's, from the
    record) that opens on a click (HTML ``<details>``) to the paper's number and ours, the rule,
    control, note and evidence. ``:part:`` shows one piece: ``summary`` (the one-line totals with a link to the
    scorecard, for the intro page), ``overview`` (totals and the per-chapter lines), ``claims`` or
    ``scales`` (:func:`scales_html`: per chapter and claim the verdict of this build's run beside
    the stored long run's and paper-scale run's, and which changed; a line for each chapter with
    none stored).
``{chapter-status}``
    One row per chapter: how long its notebook ran, when, at which scale, whether it ran in this
    build or came from the execution cache, and links to download it as ``.ipynb`` (the executed
    notebook) and ``.py`` (the jupytext source, what ``python -m eoslib run`` executes). The files
    are copied into ``<html>/downloads/`` when the build finishes.

Every badge carries its verdict as text (and a symbol), never colour alone. Records are read from
``$EOSLIB_RECORDS``, else ``<book>/_build/records``; stored long and paper-scale records from the
results store ``<book>/book/results`` (:mod:`eoslib.book.store`, each file's sha256 checked: a store that
fails its check is a warning, an error under ``-W``). The HTML is produced by plain functions of the
records (:func:`dashboard_html`, :func:`summary_html`, :func:`status_html`), tested without Sphinx.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jupytext
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from eoslib.book import store
from eoslib.book.results import CHECK_OUTCOMES, VERDICTS, claim_from_dict, read_records, tally
from eoslib.book.verdicts import departure_line

logger = logging.getLogger(__name__)
CHAPTER_PREFIX = "notebooks/"
SCORECARD_DOC = "book/scorecard"  # where a summary's "See the scorecard" link points
DOWNLOADS = "downloads"  # folder of the html output holding the chapters' .ipynb and .py files
STATIC = Path(__file__).parent / "static"

#: Per verdict or outcome: the CSS modifier and a symbol shown beside the word (not colour alone).
BADGES = {
    "reproduced": ("ok", "✓"),
    "partly reproduced": ("partly", "◐"),
    "not reproduced": ("no", "✗"),
    "not tested": ("untested", "○"),
    "holds": ("ok", "✓"),
    "fails": ("no", "✗"),
}


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book as the dashboard shows it."""

    name: str  # the notebook's stem, e.g. "dln-rpe"
    title: str
    href: str  # the chapter's page, relative to the page being written
    record: Mapping[str, Any]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def badge(verdict: str, count: int | None = None) -> str:
    """A verdict badge: its symbol and word (and ``count`` before the word when given)."""
    modifier, symbol = BADGES[verdict]
    label = verdict if count is None else f"{count} {verdict}"
    return (f'<span class="eoslib-badge eoslib-badge--{modifier}">'
            f'<span aria-hidden="true">{symbol}</span> {_e(label)}</span>')


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _count_badges(counts: Mapping[str, int], keep_zeros: bool = False) -> str:
    shown = [badge(v, n) for v, n in counts.items() if n or keep_zeros]
    return " ".join(shown) if shown else '<span class="eoslib-none">none</span>'


def run_time(record: Mapping[str, Any]) -> str:
    """The chapter's run time from its record's provenance (``wall_time_s``), e.g. ``"18.6 s"``."""
    seconds = record["provenance"].get("wall_time_s")
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def evidence(record: Mapping[str, Any], claim) -> str:
    """Where a claim's evidence comes from (a hand-written claim: the chapter's own run)."""
    return claim.evidence or f"{record['scale']} run"


def evidence_summary(record: Mapping[str, Any]) -> str:
    """The scales a chapter's paper claims rest on, e.g. ``"smoke run; 1 claim from a stored
    paper-scale run"`` (the chapter's own run first, then every other source with its claims)."""
    own = f"{record['scale']} run"
    others: dict[str, int] = {}
    for entry in record["claims"]:
        claim = claim_from_dict(entry)
        source = evidence(record, claim)
        if claim.kind == "claim" and source != own:
            others[source] = others.get(source, 0) + 1
    return "; ".join([own] + [f"{_plural(n, 'claim')} from a {source}"
                              for source, n in others.items()])


def totals(chapters: Sequence[Chapter]) -> tuple[dict[str, int], dict[str, int]]:
    """The verdict counts of every paper claim and the outcomes of every consistency check."""
    verdicts, checks = dict.fromkeys(VERDICTS, 0), dict.fromkeys(CHECK_OUTCOMES, 0)
    for chapter in chapters:
        v, c = tally(chapter.record["claims"])
        for key, n in v.items():
            verdicts[key] += n
        for key, n in c.items():
            checks[key] += n
    return verdicts, checks


def summary_html(chapters: Sequence[Chapter], scorecard_href: str | None = None) -> str:
    """One paragraph: the number of paper claims and chapters, the verdict counts as badges, the
    consistency checks apart, and (given ``scorecard_href``) a link to the full scorecard."""
    verdicts, checks = totals(chapters)
    n_checks = sum(checks.values())
    scales = sorted({c.record["scale"] for c in chapters})
    parts = [f'<p class="eoslib-summary"><strong>{_plural(sum(verdicts.values()), "paper claim")}'
             f'</strong> in {_plural(len(chapters), "chapter")} '
             f'({"/".join(scales) or "no"} runs): ',
             _count_badges(verdicts, keep_zeros=True)]
    if n_checks:
        parts.append(f' <span class="eoslib-apart">and {_plural(n_checks, "consistency check")}, '
                     f'not counted: {_count_badges(checks)}</span>')
    if scorecard_href is not None:
        parts.append(f' <a href="{_e(scorecard_href)}">See the scorecard →</a>')
    parts.append("</p>")
    return "".join(parts)


def _claim_row(record: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    claim = claim_from_dict(entry)
    is_check = claim.kind != "claim"
    details = [("paper" if not is_check else "expected", claim.paper), ("ours", claim.ours),
               ("rule", claim.rule), ("control", claim.control), ("why", claim.note),
               ("evidence", evidence(record, claim))]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in details if v)
    kind = ' <span class="eoslib-kind">consistency check</span>' if is_check else ""
    return (f'<details class="eoslib-claim"><summary>{badge(claim.verdict)}'
            f'<span class="eoslib-claim-text"><code>{_e(claim.id)}</code>{kind} {_e(claim.claim)}'
            f'{departures_html(claim)}</span></summary><dl>{rows}</dl></details>')


def departures_html(claim) -> str:
    """The line shown beside a verdict that is not ``reproduced``: how the claim's experiment
    differs from the paper's, or that it follows the paper's setup
    (:func:`eoslib.book.verdicts.departure_line`, from the record); ``""`` where none is shown."""
    line = departure_line(claim)
    return f'<span class="eoslib-departures">{_e(line)}</span>' if line else ""


def overview_html(chapters: Sequence[Chapter]) -> str:
    """The totals, then a table with one line per chapter: its title, the scale of its evidence
    and its run time, and the counts of its paper claims by verdict (checks apart)."""
    out = ['<div class="eoslib-scorecard">', summary_html(chapters),
           '<table class="eoslib-overview"><thead><tr><th>chapter · evidence · run time</th>'
           '<th>paper claims by verdict <span class="eoslib-apart">· consistency checks</span>'
           "</th></tr></thead><tbody>"]
    for chapter in chapters:
        verdicts, checks = tally(chapter.record["claims"])
        checks_html = (f' <span class="eoslib-apart">· {_count_badges(checks)}</span>'
                       if sum(checks.values()) else "")
        out.append(f'<tr><td><a href="#claims-{_e(chapter.name)}">{_e(chapter.title)}</a>'
                   f'<div class="eoslib-meta">{_e(evidence_summary(chapter.record))} · '
                   f'{_e(run_time(chapter.record))}</div></td>'
                   f'<td class="eoslib-badges">{_count_badges(verdicts)}{checks_html}</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def claims_html(chapters: Sequence[Chapter], records_from: str = "") -> str:
    """Per chapter a heading line (title, evidence, run time, verdict counts), then one row per
    claim — verdict badge, id, claim, and beside a verdict that is not ``reproduced`` its
    departures from the paper (:func:`departures_html`) — opening on a click to the paper's number
    and ours, the rule, control, note and evidence."""
    out = ['<div class="eoslib-scorecard">']
    for chapter in chapters:
        verdicts, _ = tally(chapter.record["claims"])
        out.append(f'<section class="eoslib-chapter" id="claims-{_e(chapter.name)}">'
                   f'<p class="eoslib-chapter-title"><a href="{_e(chapter.href)}">'
                   f'{_e(chapter.title)}</a></p>'
                   f'<p class="eoslib-meta">{_e(evidence_summary(chapter.record))} · '
                   f'{_e(run_time(chapter.record))} · {_count_badges(verdicts)}</p>')
        out.extend(_claim_row(chapter.record, entry) for entry in chapter.record["claims"])
        out.append("</section>")
    if records_from:
        out.append(f'<p class="eoslib-hint">Records read from <code>{_e(records_from)}</code> '
                   "when this page was built.</p>")
    out.append("</div>")
    return "".join(out)


def dashboard_html(chapters: Sequence[Chapter], records_from: str = "") -> str:
    """The whole scorecard: :func:`overview_html` then :func:`claims_html`."""
    return overview_html(chapters) + claims_html(chapters, records_from)


def scales_html(chapters: Sequence[Chapter], paper: Mapping[str, Mapping[str, Any]],
                long: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Verdicts that change with scale: per chapter, per paper claim, its verdict in this build's
    run (``book`` scale in the rendered book) beside its verdict in the chapter's stored ``long``
    run (``long[chapter name]``, a record; a column only for chapters that have one) and in the
    stored paper-scale run (``paper[chapter name]``), and which of them changed; beside each
    verdict that is not ``reproduced``, its run's departures from the paper
    (:func:`departures_html`). A chapter with no stored run gets one line saying so (its claims
    are ``not tested`` at paper scale); a chapter whose own run is at paper scale is compared with
    its stored long run only, and has nothing to compare without one."""
    long = long or {}
    stored_by_chapter: dict[str, dict[str, Mapping[str, Any]]] = {}
    for chapter in chapters:
        found = {"long": long.get(chapter.name), "paper": paper.get(chapter.name)}
        found = {s: r for s, r in found.items() if r is not None and s != chapter.record["scale"]}
        if found:
            stored_by_chapter[chapter.name] = found
    rows_by_chapter = {name: store.verdicts_across_scales(c.record["claims"], stored_by_chapter[name])
                       for c in chapters for name in [c.name] if name in stored_by_chapter}
    changed = sum(bool(r.changed) for rows in rows_by_chapter.values() for r in rows)
    compared = sum(len(rows) for rows in rows_by_chapter.values())
    with_paper = sum("paper" in found for found in stored_by_chapter.values())
    with_long = sum("long" in found for found in stored_by_chapter.values())
    out = ['<div class="eoslib-scorecard eoslib-scales">',
           f'<p class="eoslib-summary"><strong>{_plural(with_paper, "chapter")} of '
           f'{len(chapters)}</strong> with a stored paper-scale run, '
           f'<strong>{with_long}</strong> with a stored long run: '
           f'{_plural(changed, "paper claim")} of {compared} compared changed verdict between '
           "this build's run and a stored run.</p>"]
    for chapter in chapters:
        title = f'<a href="{_e(chapter.href)}">{_e(chapter.title)}</a>'
        found = stored_by_chapter.get(chapter.name, {})
        if chapter.record["scale"] == "paper" and not found:
            out.append(f'<p class="eoslib-meta">{title}: this build ran it at paper scale; its '
                       "verdicts above are the paper-scale verdicts.</p>")
            continue
        if not found:
            out.append(f'<p class="eoslib-meta">{title}: no paper-scale run stored, nor a long run; its '
                       f'paper claims are {badge("not tested")} at paper scale.</p>')
            continue
        columns = [s for s in ("long", "paper") if s in found or
                   (s == "paper" and chapter.record["scale"] != "paper")]
        sources = "; ".join(
            f'stored {s} run ({_e(r.get("provenance", {}).get("device", "?"))}, {_e(run_time(r))}, '
            f'commit {_e(str(r.get("provenance", {}).get("git_hash", "?"))[:10])})'
            for s, r in found.items())
        missing = "" if "paper" in found or "paper" not in columns else "; no paper-scale run stored"
        out.append(f'<p class="eoslib-chapter-title">{title} <span class="eoslib-meta">'
                   f'{_e(chapter.record["scale"])} run of this build vs the {sources}{missing}'
                   "</span></p>")
        heads = "".join(f"<th>{'paper-scale' if s == 'paper' else s} run</th>" for s in columns)
        out.append(f'<table class="eoslib-overview"><thead><tr><th>claim</th>'
                   f'<th>{_e(chapter.record["scale"])} run</th>{heads}'
                   "<th>changed</th></tr></thead><tbody>")
        here = {c["id"]: c for c in chapter.record["claims"]}
        there = {s: {c["id"]: c for c in r["claims"]} for s, r in found.items()}
        for row in rows_by_chapter[chapter.name]:
            if not row.changed:
                mark = "same"
            elif list(found) == ["paper"]:
                mark = "<strong>changed</strong>"
            else:
                mark = f"<strong>changed</strong> ({_e(', '.join(row.changed))})"
            here_departures = departures_html(here[row.id]) if row.id in here else ""
            cells = "".join(
                f"<td>{badge(row.stored.get(s, 'not tested'))}"
                + (f'<span class="eoslib-departures">{_e(store.EARLIER_RULE_MARK)} '
                   f"{_e(store.EARLIER_RULE_NOTE)}</span>" if s in row.earlier_rule else "")
                + f"{departures_html(there[s][row.id]) if s in there and row.id in there[s] else ''}</td>"
                for s in columns)
            out.append(f'<tr><td><code>{_e(row.id)}</code> {_e(row.claim)}</td>'
                       f"<td>{badge(row.here)}{here_departures}</td>{cells}<td>{mark}</td></tr>")
        out.append("</tbody></table>")
    out.append("</div>")
    return "".join(out)


def stored_records(root: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """The records in the results store at ``root``, by scale (``long``, ``paper``) then chapter
    (each file's sha256 checked against the manifest), and the problems found
    (:func:`eoslib.book.store.check`, and any record that could not be read)."""
    problems = store.check(root)
    records: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in store.STORED_SCALES}
    try:
        stored = store.runs(root)
    except (store.StoreError, KeyError, TypeError, ValueError) as err:
        return records, problems or [str(err)]
    for run in stored:
        if run.scale not in records:
            continue
        try:
            records[run.scale][run.chapter] = run.record()
        except (store.StoreError, ValueError) as err:
            problems.append(f"{run.chapter} ({run.scale}): {err}")
    return records, problems


def stored_paper_records(root: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The paper-scale records of :func:`stored_records`, by chapter, and the problems found."""
    records, problems = stored_records(root)
    return records["paper"], problems


@dataclass(frozen=True)
class Execution:
    """How a chapter's notebook was executed in the build (from myst-nb's execution data)."""

    runtime_s: float | None
    when: float | None  # POSIX time the notebook ran
    fresh: bool  # ran in this build (else: taken from the execution cache)
    succeeded: bool


def status_html(chapters: Sequence[Chapter], executions: Mapping[str, Execution | None],
                downloads: Callable[[str, str], str]) -> str:
    """The status table: per chapter its execution (run time, date, this build or the cache), the
    scale of its record and links to download it; ``downloads(name, suffix)`` gives a link's href."""
    out = ['<table class="eoslib-status"><thead><tr><th>chapter</th><th>scale</th>'
           '<th>executed (UTC)</th><th>notebook run time</th><th>download</th>'
           "</tr></thead><tbody>"]
    for chapter in chapters:
        run = executions.get(chapter.name)
        if run is None:
            seconds, when, how = "—", "—", "not executed"
        else:
            seconds = "—" if run.runtime_s is None else f"{run.runtime_s:.1f} s"
            when = ("—" if run.when is None
                    else time.strftime("%Y-%m-%d %H:%M", time.gmtime(run.when)))
            how = ("failed" if not run.succeeded
                   else "in this build" if run.fresh else "from the execution cache")
        links = " ".join(f'<a class="eoslib-download" href="{_e(downloads(chapter.name, s))}" '
                         f'download>{s}</a>' for s in (".ipynb", ".py"))
        out.append(f'<tr><td><a href="{_e(chapter.href)}">{_e(chapter.title)}</a></td>'
                   f'<td>{_e(chapter.record["scale"])}</td>'
                   f'<td><span class="eoslib-nowrap">{when}</span>'
                   f'<div class="eoslib-meta">{how}</div></td>'
                   f'<td class="eoslib-nowrap">{seconds}</td>'
                   f'<td class="eoslib-nowrap">{links}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


# --- Sphinx glue -------------------------------------------------------------------------------

class scorecard_node(nodes.General, nodes.Element):
    """Placeholder replaced by the dashboard (or its summary) once all chapters have run."""


class status_node(nodes.General, nodes.Element):
    """Placeholder replaced by the status table once all chapters have run."""


def _register(env, docname: str) -> None:
    docs = getattr(env, "eoslib_scorecard_docs", set())
    docs.add(docname)
    env.eoslib_scorecard_docs = docs


PARTS = ("all", "summary", "overview", "claims", "scales")


def _part(argument: str | None) -> str:
    return directives.choice(argument, PARTS)


class ScorecardDirective(SphinxDirective):
    """``{scorecard}``, with ``:part:`` one of :data:`PARTS` (default ``all``)."""

    has_content = False
    option_spec = {"part": _part}

    def run(self):
        _register(self.env, self.env.docname)
        return [scorecard_node(part=self.options.get("part", "all"))]


class StatusDirective(SphinxDirective):
    has_content = False

    def run(self):
        _register(self.env, self.env.docname)
        return [status_node()]


def records_folder(app) -> Path:
    return Path(os.environ.get("EOSLIB_RECORDS") or Path(app.srcdir) / "_build" / "records")


def store_folder(app) -> Path:
    """The results store of the book being built: ``$EOSLIB_STORE``, else ``<book>/book/results``."""
    return Path(os.environ.get("EOSLIB_STORE") or Path(app.srcdir) / "book" / "results")


def chapter_docs(env) -> list[str]:
    """The chapters' docnames in reading order (the toctree from the root document)."""
    order: list[str] = []

    def walk(doc: str) -> None:
        for child in env.toctree_includes.get(doc, []):
            if child not in order:
                order.append(child)
                walk(child)

    walk(env.config.root_doc)
    found = [d for d in env.found_docs if d.startswith(CHAPTER_PREFIX)]
    return [d for d in order if d in found] + sorted(set(found) - set(order))


def _chapters(app, docname: str) -> list[Chapter]:
    folder = records_folder(app)
    by_chapter = {r["chapter"]: r for r in read_records(folder)}
    chapters = []
    for doc in chapter_docs(app.env):
        name = doc[len(CHAPTER_PREFIX):]
        record = by_chapter.get(name)
        if record is None:
            logger.warning(f"scorecard: no results record for chapter {name!r} in {folder} — did "
                           "the chapter run to its last cell? (`make clean` forces re-execution)",
                           location=docname)
            continue
        title = app.env.titles[doc].astext() if doc in app.env.titles else name
        chapters.append(Chapter(name, title, app.builder.get_relative_uri(docname, doc), record))
    return chapters


def _executions(app) -> dict[str, Execution | None]:
    started = getattr(app, "eoslib_build_started", 0.0)
    data = getattr(app.env, "nb_metadata", {}) or {}
    out: dict[str, Execution | None] = {}
    for doc in chapter_docs(app.env):
        run = data.get(doc, {}).get("exec_data")
        out[doc[len(CHAPTER_PREFIX):]] = None if not run else Execution(
            runtime_s=run.get("runtime"), when=run.get("mtime"),
            fresh=bool(run.get("mtime")) and run["mtime"] >= started,
            succeeded=bool(run.get("succeeded")))
    return out


def _download_href(app, docname: str) -> Callable[[str, str], str]:
    up = "../" * docname.count("/")
    return lambda name, suffix: f"{up}{DOWNLOADS}/{name}{suffix}"


def fill_placeholders(app, doctree, docname):
    boards = list(doctree.findall(scorecard_node))
    statuses = list(doctree.findall(status_node))
    if not boards and not statuses:
        return
    chapters = _chapters(app, docname)
    for node in boards:
        part = node.get("part", "all")
        if part == "summary":
            href = (app.builder.get_relative_uri(docname, SCORECARD_DOC)
                    if SCORECARD_DOC in app.env.found_docs and docname != SCORECARD_DOC else None)
            text = summary_html(chapters, href)
        elif part == "overview":
            text = overview_html(chapters)
        elif part == "claims":
            text = claims_html(chapters, records_folder(app).name + "/")
        elif part == "scales":
            stored, problems = stored_records(store_folder(app))
            for problem in problems:
                logger.warning(f"scorecard: results store: {problem}", location=docname)
            text = scales_html(chapters, stored["paper"], stored["long"])
        else:
            text = dashboard_html(chapters, records_folder(app).name + "/")
        node.replace_self(nodes.raw("", text, format="html"))
    for node in statuses:
        node.replace_self(nodes.raw("", status_html(chapters, _executions(app),
                                                    _download_href(app, docname)),
                                    format="html"))


def copy_downloads(app, exception):
    """Copy each chapter's executed notebook and its source into ``<html>/downloads/``."""
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / DOWNLOADS
    target.mkdir(exist_ok=True)
    output_folder = Path(getattr(getattr(app.env, "mystnb_config", None), "output_folder", "")
                         or Path(app.outdir).parent / "jupyter_execute")
    for doc in chapter_docs(app.env):
        name = doc[len(CHAPTER_PREFIX):]
        source = Path(app.env.doc2path(doc))
        notebook = None
        if source.suffix == ".py":
            shutil.copyfile(source, target / f"{name}.py")
        else:  # a chapter written as .md or .ipynb: its jupytext percent-format twin
            notebook = jupytext.read(source)
            jupytext.write(notebook, target / f"{name}.py", fmt="py:percent")
        executed = output_folder / f"{doc}.ipynb"
        if executed.is_file():
            shutil.copyfile(executed, target / f"{name}.ipynb")
        else:  # not executed in any build: the notebook without outputs
            jupytext.write(notebook or jupytext.read(source), target / f"{name}.ipynb")


def always_outdated(app, env, added, changed, removed):
    """Re-write the dashboard pages on every build: the records change without their source."""
    return sorted(getattr(env, "eoslib_scorecard_docs", set()) - set(removed))


def builder_inited(app):
    app.eoslib_build_started = time.time()
    if app.builder.format == "html":
        app.config.html_static_path.append(str(STATIC))
        app.add_css_file("eoslib.css")


def setup(app):
    app.add_node(scorecard_node)
    app.add_node(status_node)
    app.add_directive("scorecard", ScorecardDirective)
    app.add_directive("chapter-status", StatusDirective)
    app.connect("builder-inited", builder_inited)
    app.connect("doctree-resolved", fill_placeholders)
    app.connect("env-get-outdated", always_outdated)
    app.connect("build-finished", copy_downloads)
    return {"version": "0.3", "parallel_read_safe": True, "parallel_write_safe": True}
