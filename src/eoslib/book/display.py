"""What chapters show: the declared claims, the paper-vs-ours table, the generated Verdict
section, and the book's figure style."""

from __future__ import annotations

from typing import Sequence

from eoslib.book.results import Claim
from eoslib.book.script import Markdown as PlainMarkdown
from eoslib.book.store import verdicts_by_scale_markdown
from eoslib.book.verdicts import ClaimSpec, departure_line, verdict_markdown


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_table_markdown(claims: Sequence[Claim]) -> str:
    """The paper-vs-ours table as Markdown text: one row per paper claim (claim, paper, ours,
    verdict, evidence, rule and why), then the consistency checks in a table of their own. Beside
    a verdict that is not ``reproduced`` the verdict cell says how the experiment differs from the
    paper's (:func:`eoslib.book.verdicts.departure_line`), from the record."""

    def row(c: Claim) -> str:
        why = f"{c.rule}. Measured: {c.note}" if c.rule else c.note
        if c.control:
            why += f". Control: {c.control}"
        departures = departure_line(c)
        verdict = f"**{_cell(c.verdict)}**" + (f" ({_cell(departures)})" if departures else "")
        return (f"| **{_cell(c.id)}**: {_cell(c.claim)} | {_cell(c.paper)} | {_cell(c.ours)} "
                f"| {verdict} | {_cell(c.evidence or '—')} | {_cell(why)} |")

    header = ["| claim | paper | ours | verdict | evidence | rule and why |",
              "|---|---|---|---|---|---|"]
    paper = [c for c in claims if c.kind == "claim"]
    checks = [c for c in claims if c.kind == "consistency"]
    lines = header + [row(c) for c in paper]
    if checks:
        lines += ["", "Consistency checks (hold by construction; recorded, not scored):", ""]
        lines += [h.replace("| paper |", "| expected |") for h in header] + [row(c) for c in checks]
    return "\n".join(lines)


def _markdown(text: str):
    """A Markdown display object: IPython's, else :class:`eoslib.book.script.Markdown` (a chapter
    run as a plain program on a machine without IPython)."""
    try:
        from IPython.display import Markdown
    except ImportError:
        Markdown = PlainMarkdown
    return Markdown(text)


def claims_table(claims: Sequence[Claim]):
    """The paper-vs-ours table of a chapter as a Markdown display object (see
    :func:`claims_table_markdown`)."""
    return _markdown(claims_table_markdown(claims))


def verdicts_by_scale(claims: Sequence[Claim], evidence):
    """Per paper claim its verdict in this run beside the chapter's stored runs, ``long`` (when
    one is stored) and ``paper`` (:func:`eoslib.book.store.verdicts_by_scale_markdown`;
    ``evidence`` from :func:`eoslib.book.store.paper_evidence`), as a Markdown display object."""
    return _markdown(verdicts_by_scale_markdown(claims, evidence))


def declared_claims_markdown(specs: Sequence[ClaimSpec]) -> str:
    """The claims as declared before the run, as Markdown: id, statement, the paper's number,
    the rule, the control and where the evidence will come from."""
    lines = ["| claim | paper | rule | control | evidence | kind |", "|---|---|---|---|---|---|"]
    for s in specs:
        evidence = "this run" if s.evidence == "run" else "stored paper-scale run"
        lines.append(f"| **{_cell(s.id)}**: {_cell(s.claim)} | {_cell(s.paper)} "
                     f"| {_cell(s.rule_text())} | {_cell(s.control or '—')} | {evidence} "
                     f"| {'paper claim' if s.kind == 'claim' else 'consistency check'} |")
    return "\n".join(lines)


def declared_claims(specs: Sequence[ClaimSpec]):
    """:func:`declared_claims_markdown` as a Markdown display object (for the cell before Run)."""
    return _markdown(declared_claims_markdown(specs))


def verdict_section(claims: Sequence[Claim], *, scale: str):
    """The chapter's Verdict section, generated from its graded claims
    (:func:`eoslib.book.verdicts.verdict_markdown`), as a Markdown display object; show it in a
    ``remove-input`` cell."""
    return _markdown(verdict_markdown(claims, scale=scale))


def use_book_style() -> None:
    """Matplotlib defaults for every figure in the book (sizes, grid, colour-blind-safe cycle)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.figsize": (10, 3.6),
        "figure.dpi": 110,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "axes.prop_cycle": mpl.cycler(color=[
            "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
        ]),
    })
