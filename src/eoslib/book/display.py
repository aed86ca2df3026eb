"""What chapters show: the paper-vs-ours table and the book's figure style."""

from __future__ import annotations

from typing import Sequence

from eoslib.book.results import Claim


def claims_table(claims: Sequence[Claim]):
    """The paper-vs-ours table of a chapter as a Markdown display object (one row per claim)."""
    from IPython.display import Markdown

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | paper | ours | verdict | why |", "|---|---|---|---|---|"]
    for c in claims:
        lines.append(
            f"| **{cell(c.id)}**: {cell(c.claim)} | {cell(c.paper)} | {cell(c.ours)} "
            f"| **{cell(c.verdict)}** | {cell(c.note)} |"
        )
    return Markdown("\n".join(lines))


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
