"""The book's scorecard extension (book/_ext/scorecard.py): the dashboard's and the status page's
HTML from records, and a small Sphinx build that runs the directives end to end."""

import io
import json
import sys
from pathlib import Path

import pytest

from eoslib.book.results import Claim, make_record, write_record

EXT = Path(__file__).resolve().parents[1] / "book" / "_ext"
sys.path.insert(0, str(EXT))
import scorecard as sc  # noqa: E402  (the extension lives beside the book, not in eoslib)

PROVENANCE = {"eoslib_version": "0", "git_hash": "abc", "jax_version": "0", "device": "cpu",
              "wall_time_s": 75.0, "timestamp_utc": "2026-11-24T22:50:43Z"}


def _record(name="toy", scale="smoke"):
    claims = [
        Claim("a", "sharpness <rises> to 2/η", "S → 2/η", "S = 99", "reproduced", "ok",
              rule="S ≥ 0.9·2/η", evidence=f"{scale} run"),
        Claim("b", "it hovers", "at 2/η", "n/a", "not tested", "no edge phase"),
        Claim("c", "at paper size", "5,000 images", "S = 40", "partly reproduced",
              evidence="stored paper-scale run"),
        Claim("d", "an identity", "exact", "1e-12", "holds", kind="consistency"),
    ]
    return make_record(name, scale, {"scale": scale}, claims, {}, PROVENANCE)


def _chapter(name="toy", **kw):
    return sc.Chapter(name, f"The {name} chapter", f"../notebooks/{name}.html", _record(name, **kw))


def test_every_badge_says_its_verdict_in_words():
    for verdict in (*sc.VERDICTS, "holds", "fails"):
        html = sc.badge(verdict, 3)
        assert f"3 {verdict}" in html and sc.BADGES[verdict][1] in html


def test_overview_counts_each_chapter_and_sets_checks_apart():
    html = sc.overview_html([_chapter("one"), _chapter("two", scale="book")])
    assert "6 paper claims</strong> in 2 chapters (book/smoke runs)" in html
    assert html.count("1 reproduced") == 2 and "2 reproduced" in html  # per chapter, and in total
    assert "0 not reproduced" in html  # the totals keep zeros ...
    assert html.count("not reproduced") == 1  # ... a chapter's line does not
    assert "2 consistency checks, not counted" in html
    assert "smoke run; 1 claim from a stored paper-scale run · 1.2 min" in html
    assert 'href="#claims-two"' in html


def test_claim_rows_open_to_the_details_and_escape_text():
    html = sc.claims_html([_chapter()])
    assert html.count("<details") == 4 and 'id="claims-toy"' in html
    assert "sharpness &lt;rises&gt; to 2/η" in html and "<rises>" not in html
    assert "<dt>paper</dt><dd>S → 2/η</dd><dt>ours</dt><dd>S = 99</dd>" in html
    assert "<dt>rule</dt><dd>S ≥ 0.9·2/η</dd>" in html
    assert "<dt>evidence</dt><dd>smoke run</dd>" in html  # a hand-written claim: the chapter's run
    assert "<dt>expected</dt><dd>exact</dd>" in html  # a consistency check's "paper" column
    assert "control" not in html  # empty fields are left out


def test_summary_links_to_the_scorecard():
    html = sc.summary_html([_chapter()], "scorecard.html")
    assert "3 paper claims" in html and 'href="scorecard.html"' in html


def test_run_time_reads_the_provenance():
    record = _record()
    assert sc.run_time(record) == "1.2 min"
    record["provenance"]["wall_time_s"] = 12.34
    assert sc.run_time(record) == "12.3 s"
    del record["provenance"]["wall_time_s"]
    assert sc.run_time(record) == "—"


def test_status_rows_say_how_each_chapter_ran():
    runs = {"one": sc.Execution(12.0, 0.0, fresh=False, succeeded=True),
            "two": sc.Execution(3.0, 86400.0, fresh=True, succeeded=True)}
    html = sc.status_html([_chapter("one"), _chapter("two"), _chapter("three")], runs,
                          lambda name, suffix: f"../downloads/{name}{suffix}")
    assert html.count("<tr>") == 4
    assert "from the execution cache" in html and "in this build" in html and "not executed" in html
    assert "1970-01-02 00:00" in html
    for name in ("one", "two", "three"):
        assert f'href="../downloads/{name}.ipynb"' in html and f'href="../downloads/{name}.py"' in html


def _build(tmp_path):
    """Build a two-page book (an index with both directives, one chapter) with Sphinx."""
    from sphinx.application import Sphinx

    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True)
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(EXT)!r})\n"
                                 "extensions = ['myst_parser', 'scorecard']\n")
    (src / "index.md").write_text("# Book\n\n```{toctree}\nnotebooks/toy\n```\n\n"
                                  "```{scorecard}\n:part: summary\n```\n\n```{scorecard}\n```\n\n"
                                  "```{chapter-status}\n```\n")
    (src / "notebooks" / "toy.md").write_text("# Toy chapter\n\nText.\n")
    out = tmp_path / "html"
    warnings = io.StringIO()
    app = Sphinx(str(src), str(src), str(out), str(tmp_path / "doctrees"), "html",
                 status=None, warning=warnings, freshenv=True)
    app.build()
    return warnings.getvalue(), out


def test_sphinx_build_fills_the_pages_and_copies_downloads(tmp_path, monkeypatch):
    write_record(_record(), tmp_path / "records")
    monkeypatch.setenv("EOSLIB_RECORDS", str(tmp_path / "records"))
    warnings, out = _build(tmp_path)
    assert not warnings
    page = (out / "index.html").read_text()
    assert "Toy chapter" in page and "eoslib-badge--ok" in page and "<details" in page
    assert 'href="downloads/toy.ipynb"' in page and 'href="downloads/toy.py"' in page
    assert (out / "_static" / "eoslib.css").is_file()
    assert "# # Toy chapter" in (out / "downloads" / "toy.py").read_text()  # jupytext percent
    assert json.loads((out / "downloads" / "toy.ipynb").read_text())["cells"]


def test_sphinx_build_warns_of_a_chapter_without_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("EOSLIB_RECORDS", str(tmp_path / "none"))
    warnings, _ = _build(tmp_path)
    assert "no results record for chapter 'toy'" in warnings
