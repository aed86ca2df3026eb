"""The scorecard's "verdicts that change with scale" table, from book-scale records and a synthetic
results store (issue 19 part 2's table, generated, never written by hand)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from eoslib.book import store
from eoslib.book.results import Claim, make_record, source_digest, write_record

EXT = Path(__file__).resolve().parents[1] / "book" / "_ext"
sys.path.insert(0, str(EXT))
import scorecard as sc  # noqa: E402  (the extension lives beside the book, not in eoslib)


def _record(name, scale, verdicts, prov=None):
    claims = [Claim(cid, f"claim {cid}", "p", "o", v) for cid, v in verdicts.items()]
    claims.append(Claim("check", "an identity", "exact", "0", "holds", kind="consistency"))
    prov = prov or {"eoslib_version": "0", "git_hash": "abc", "jax_version": "0",
                    "device": "cpu", "wall_time_s": 75.0}
    return make_record(name, scale, {"n": 1}, claims, {}, prov)


def _chapter(name, scale, verdicts):
    return sc.Chapter(name, f"The {name} chapter", f"../notebooks/{name}.html",
                      _record(name, scale, verdicts))


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_changed_and_unchanged_claims_and_chapters_without_a_stored_run():
    chapters = [_chapter("alpha", "book", {"a1": "reproduced", "a2": "not tested"}),
                _chapter("beta", "book", {"b1": "partly reproduced"})]
    paper = {"alpha": _record("alpha", "paper", {"a1": "reproduced", "a2": "not reproduced"},
                              {"eoslib_version": "0", "git_hash": "f" * 40, "jax_version": "0",
                               "device": "gpu:NVIDIA H200", "wall_time_s": 420.0})}
    html = sc.scales_html(chapters, paper)
    assert "1 chapter of 2</strong> with a stored paper-scale run" in html
    assert "1 paper claim of 2 compared changed verdict" in html
    a1 = html[html.index("<code>a1</code>"):html.index("</tr>", html.index("<code>a1</code>"))]
    a2 = html[html.index("<code>a2</code>"):html.index("</tr>", html.index("<code>a2</code>"))]
    assert "same" in a1 and "changed" not in a1
    assert "<strong>changed</strong>" in a2 and "not reproduced" in a2 and "not tested" in a2
    assert "gpu:NVIDIA H200" in html and "7.0 min" in html and "ffffffffff" in html
    assert "<code>check</code>" not in html  # consistency checks are not compared
    beta = html[html.index("The beta chapter"):]
    assert "no paper-scale run stored" in beta and "not tested" in beta


def test_no_store_at_all_says_so_for_every_chapter():
    chapters = [_chapter("alpha", "book", {"a1": "reproduced"})]
    html = sc.scales_html(chapters, {})
    assert "0 chapters of 1</strong>" in html and "no paper-scale run stored" in html
    paper_build = sc.scales_html([_chapter("alpha", "paper", {"a1": "reproduced"})], {})
    assert "ran it at paper scale" in paper_build


def test_stored_paper_records_reads_a_synthetic_store_and_reports_tampering(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src" / "eoslib").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    (repo / "src" / "eoslib" / "core.py").write_text("X = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    prov = {"eoslib_version": "0", "git_hash": _git(repo, "rev-parse", "HEAD"),
            "source_digest": source_digest(repo), "jax_version": "0", "device": "gpu:NVIDIA H200",
            "wall_time_s": 60.0}
    source = tmp_path / "run"
    write_record(_record("alpha", "paper", {"a1": "not reproduced"}, prov), source)
    root = tmp_path / "store"
    store.add("alpha", source, root=root, repo=repo)
    records, problems = sc.stored_paper_records(root)
    assert problems == [] and list(records) == ["alpha"]
    html = sc.scales_html([_chapter("alpha", "book", {"a1": "reproduced"})], records)
    assert "<strong>changed</strong>" in html
    (root / "alpha-paper" / "alpha.json").write_text("{}")
    records, problems = sc.stored_paper_records(root)
    assert records == {} and any("sha256" in p for p in problems)
    assert sc.stored_paper_records(tmp_path / "none") == ({}, [])


def _stored(name, scale, verdicts, device="cpu", wall=5400.0):
    return _record(name, scale, verdicts, {"eoslib_version": "0", "git_hash": "e" * 40,
                                           "jax_version": "0", "device": device,
                                           "wall_time_s": wall})


def test_the_long_column_beside_book_and_paper():
    """Issue 35: a stored long run is a column of its own, and changes against it are counted."""
    chapters = [_chapter("alpha", "book", {"a1": "not tested", "a2": "reproduced"}),
                _chapter("beta", "book", {"b1": "partly reproduced"}),
                _chapter("gamma", "book", {"g1": "reproduced"})]
    long = {"alpha": _stored("alpha", "long", {"a1": "reproduced", "a2": "reproduced"}),
            "beta": _stored("beta", "long", {"b1": "not reproduced"})}
    paper = {"alpha": _stored("alpha", "paper", {"a1": "reproduced", "a2": "partly reproduced"},
                              "gpu:NVIDIA H200", 420.0)}
    html = sc.scales_html(chapters, paper, long)
    assert "1 chapter of 3</strong> with a stored paper-scale run, <strong>2</strong> with a stored long run" in html
    assert "3 paper claims of 3 compared changed verdict" in html
    alpha = html[html.index("The alpha chapter"):html.index("The beta chapter")]
    assert "<th>long run</th><th>paper-scale run</th>" in alpha
    assert "stored long run (cpu, 1.5 h" in alpha and "stored paper run (gpu:NVIDIA H200, 7.0 min" in alpha
    a1 = alpha[alpha.index("<code>a1</code>"):alpha.index("</tr>", alpha.index("<code>a1</code>"))]
    assert "<strong>changed</strong> (long, paper)" in a1
    a2 = alpha[alpha.index("<code>a2</code>"):alpha.index("</tr>", alpha.index("<code>a2</code>"))]
    assert "<strong>changed</strong> (paper)" in a2
    beta = html[html.index("The beta chapter"):html.index("The gamma chapter")]
    assert "<th>long run</th><th>paper-scale run</th>" in beta and "no paper-scale run stored" in beta
    b1 = beta[beta.index("<code>b1</code>"):beta.index("</tr>", beta.index("<code>b1</code>"))]
    assert "not reproduced" in b1 and "not tested" in b1 and "(long)" in b1
    gamma = html[html.index("The gamma chapter"):]
    assert "no paper-scale run stored, nor a long run" in gamma
    # a paper-scale build compares with the stored long run only
    at_paper = sc.scales_html([_chapter("alpha", "paper", {"a1": "reproduced"})], {},
                              {"alpha": _stored("alpha", "long", {"a1": "not reproduced"})})
    assert "<th>long run</th>" in at_paper and "paper-scale run</th>" not in at_paper
    assert "<strong>changed</strong> (long)" in at_paper


def test_stored_records_reads_long_and_paper_runs(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src" / "eoslib").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    (repo / "src" / "eoslib" / "core.py").write_text("X = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "demo")
    prov = {"eoslib_version": "0", "git_hash": _git(repo, "rev-parse", "HEAD"),
            "source_digest": source_digest(repo), "jax_version": "0", "device": "cpu",
            "wall_time_s": 60.0}
    root = tmp_path / "store"
    for scale, verdict in (("long", "reproduced"), ("paper", "not reproduced")):
        write_record(_record("alpha", scale, {"a1": verdict}, prov), tmp_path / scale)
        store.add("alpha", tmp_path / scale, root=root, repo=repo)
    records, problems = sc.stored_records(root)
    assert problems == [] and sorted(records) == ["long", "paper"]
    assert records["long"]["alpha"]["claims"][0]["verdict"] == "reproduced"
    assert sc.stored_paper_records(root)[0]["alpha"]["scale"] == "paper"
    html = sc.scales_html([_chapter("alpha", "book", {"a1": "reproduced"})], records["paper"],
                          records["long"])
    assert "<strong>changed</strong> (paper)" in html


def test_a_stored_run_graded_by_an_earlier_rule_is_marked():
    """A stored record whose claim carries a different ``rule`` text than this build's was graded
    before the rule changed: its verdict is marked, in the scorecard and the chapter's table; a
    stored record with this build's rule is not."""
    def with_rules(record, rules):
        return {**record, "claims": [{**c, "rule": rules.get(c["id"], c.get("rule", ""))}
                                     for c in record["claims"]]}

    here = with_rules(_record("alpha", "book", {"a1": "not tested", "a2": "reproduced"}),
                      {"a1": "x ≤ 0.9, tested when rising ≤ 1 % per 1,000 steps", "a2": "y ≥ 1"})
    chapter = sc.Chapter("alpha", "The alpha chapter", "../notebooks/alpha.html", here)
    long = with_rules(_stored("alpha", "long", {"a1": "not tested", "a2": "reproduced"}),
                      {"a1": "x ≤ 0.9, tested when |drift| ≤ 1 %", "a2": "y ≥ 1"})
    rows = store.verdicts_across_scales(here["claims"], {"long": long})
    assert [r.earlier_rule for r in rows] == [("long",), ()]
    html = sc.scales_html([chapter], {}, {"alpha": long})
    a1 = html[html.index("<code>a1</code>"):html.index("</tr>", html.index("<code>a1</code>"))]
    a2 = html[html.index("<code>a2</code>"):html.index("</tr>", html.index("<code>a2</code>"))]
    assert "graded by an earlier rule" in a1 and "graded by an earlier rule" not in a2
    evidence = SimpleNamespace(scale="book", own=False, records=lambda: {"long": long})
    md = store.verdicts_by_scale_markdown(here["claims"], evidence)
    assert "not tested†" in md and md.count("†") == 2 and "graded by an earlier rule" in md
