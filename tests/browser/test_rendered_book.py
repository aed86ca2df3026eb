"""The rendered book as a reader sees it offline: Debian's Chromium loads every page of a built book
with the network cut off and checks, from the rendered DOM, that MathJax typeset every formula, that no
``$…$`` is left untypeset in the text (generated Markdown whose math was never parsed as math), that every
figure image loaded, and that nothing is wider than the content column at 1280 and 800 pixels (tables,
code blocks, the scorecard's elements, or the page itself scrolling sideways) — on every page,
chapters included (their code cells wrap inside the column). The status page must list
every chapter with download links that resolve to files in the build. Screenshots of the scorecard,
the status page and one chapter, at both widths, are kept beside the build (``<html>/../screenshots``).

Run by ``make browser`` (part of ``make test``) on the smoke build; skipped unless ``EOSLIB_BOOK_HTML``
names a built book's ``html`` folder. Needs ``chromium`` and ``chromium-driver`` (Debian packages).
"""

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

HTML = os.environ.get("EOSLIB_BOOK_HTML")
pytestmark = pytest.mark.skipif(not HTML, reason="EOSLIB_BOOK_HTML is not set (run `make browser`)")

#: Pages to check: every chapter and the book's own pages (generated index/search pages excluded).
SKIP = {"genindex.html", "search.html", "py-modindex.html"}
#: Window widths a reader commonly has: a laptop, and a half screen (the theme's narrow layout).
WIDTHS = (1280, 800)
#: The folder of the chapter pages (the status page must list each of them).
CHAPTERS = "notebooks"


def _pages():
    root = Path(HTML)
    return sorted(p for p in root.rglob("*.html")
                  if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(driver_path).exists() or not Path(binary).exists():
        pytest.fail("Chromium is not installed: `apt-get install chromium chromium-driver` (Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND",  # no DNS: offline
                 "--allow-file-access-from-files"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def _load(browser, page: Path):
    """Open ``page`` and wait until MathJax has finished (or the page has no MathJax)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    typeset = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (window.MathJax && MathJax.startup && MathJax.startup.promise)"
        "  MathJax.startup.promise.then(() => done(true), () => done(false));"
        "else done(!document.querySelector('span.math, div.math'));")
    assert typeset, f"{page}: MathJax did not load or failed"


DOM_REPORT = r"""
const math = [...document.querySelectorAll('span.math, div.math')];
const raw = math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 60));
const imgs = [...document.querySelectorAll('article img, main img')];
const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
const column = document.querySelector('article.bd-article') || document.querySelector('main');
const right = column.getBoundingClientRect().right + 1;
const wide = [...column.querySelectorAll('table, pre, [class*="eoslib"]')].filter(el => {
  const box = el.getBoundingClientRect();
  return box.right > right || el.scrollWidth > el.clientWidth + 1;
}).map(el => el.tagName.toLowerCase() + ': ' + el.textContent.trim().slice(0, 50));
// Untypeset math: $…$ or $$…$$ left as text (outside code, inputs and typeset formulas), as a
// Markdown output shows it when it was rendered without dollarmath. Text is joined per block, so a
// span broken up by inline markup (an underscore in TeX read as emphasis) still counts once.
const NOT_TEXT = 'pre, code, kbd, samp, script, style, textarea, .cell_input, .highlight, mjx-container, .math';
const blocks = new Map();
const walk = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
for (let node = walk.nextNode(); node; node = walk.nextNode()) {
  const parent = node.parentElement;
  if (!parent || parent.closest(NOT_TEXT)) continue;
  const block = parent.closest('p, li, td, th, dt, dd, h1, h2, h3, h4, h5, h6, caption, figcaption, summary') || parent;
  blocks.set(block, (blocks.get(block) || '') + node.textContent);
}
const dollars = /\$\$[^$]+\$\$|\$(?![\s$])[^$]*?[^\s$\\]\$(?!\d)|\$[^\s$]\$(?!\d)/g;
const untypeset = [...blocks.values()].flatMap(text => text.match(dollars) || []).map(m => m.slice(0, 60));
if (document.documentElement.scrollWidth > window.innerWidth + 1)
  wide.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px > ${window.innerWidth} px`);
return {raw_math: raw, untypeset_dollars: untypeset, n_math: math.length, broken_images: broken, n_images: imgs.length, overflowing: wide};
"""


@pytest.mark.parametrize("page", _pages() if HTML else [], ids=lambda p: str(p.relative_to(HTML)))
def test_page_renders_offline(browser, page):
    _load(browser, page)
    report = browser.execute_script(DOM_REPORT)
    assert not report["raw_math"], f"{len(report['raw_math'])} formulas left as raw TeX: {report['raw_math'][:5]}"
    assert not report["untypeset_dollars"], (f"{len(report['untypeset_dollars'])} $…$ spans left untypeset "
                                              f"in the text: {report['untypeset_dollars'][:5]}")
    assert not report["broken_images"], f"images that did not load: {report['broken_images']}"


def _fit_cases():
    """(page, width) pairs: every page of the book, chapters included, at every width."""
    cases = []
    for page in _pages() if HTML else []:
        rel = page.relative_to(HTML)
        cases += [pytest.param(page, width, id=f"{rel}@{width}") for width in WIDTHS]
    return cases


@pytest.mark.parametrize(("page", "width"), _fit_cases())
def test_page_fits_the_column(browser, page, width):
    browser.set_window_size(width, 900)
    try:
        _load(browser, page)
        report = browser.execute_script(DOM_REPORT)
    finally:
        browser.set_window_size(1280, 900)
    assert not report["overflowing"], (f"at {width} px, wider than the content column: "
                                       f"{report['overflowing'][:5]}")


def test_status_page_lists_every_chapter_with_downloads(browser):
    root = Path(HTML)
    chapters = sorted(p.stem for p in (root / CHAPTERS).glob("*.html"))
    assert chapters, f"no chapter pages in {root / CHAPTERS}"
    _load(browser, root / "book" / "status.html")
    rows = browser.execute_script("""
      return [...document.querySelectorAll('table.eoslib-status tbody tr')].map(tr => ({
        page: tr.querySelector('td a').href,
        downloads: [...tr.querySelectorAll('a.eoslib-download')].map(a => a.href)}));""")
    listed = sorted(Path(unquote(urlparse(r["page"]).path)).stem for r in rows)
    assert listed == chapters, f"status page lists {listed}, the book has {chapters}"
    for row in rows:
        files = [Path(unquote(urlparse(href).path)) for href in row["downloads"]]
        assert sorted(f.suffix for f in files) == [".ipynb", ".py"], row
        for file in files:
            assert file.is_file() and file.stat().st_size > 0, f"download link to a missing file: {file}"
            assert root.resolve() in file.resolve().parents, f"download outside the build: {file}"
        notebook = next(f for f in files if f.suffix == ".ipynb")
        assert json.loads(notebook.read_text())["cells"], f"{notebook} has no cells"


def test_screenshots_of_the_scorecard_and_a_chapter(browser):
    root = Path(HTML)
    shots = root.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    try:
        for rel in ("book/scorecard.html", "book/status.html", "notebooks/eos-intro.html"):
            page = root / rel
            assert page.is_file(), page
            for width in WIDTHS:
                browser.set_window_size(width, 900)
                _load(browser, page)
                # open each chapter's first claim on the scorecard: the reader's one click
                browser.execute_script("document.querySelectorAll('.eoslib-chapter').forEach("
                                       "s => { const d = s.querySelector('details'); if (d) d.open = true; });")
                height = browser.execute_script("return document.body.scrollHeight")
                browser.set_window_size(width, min(max(900, height), 8000))
                assert browser.save_screenshot(str(shots / f"{Path(rel).stem}-{width}.png"))
    finally:
        browser.set_window_size(1280, 900)
