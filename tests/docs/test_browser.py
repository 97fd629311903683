"""The built documentation, opened in headless Chromium at 1280 px: nothing wider than the window,
every picture loads, no internal link is broken.

Needs Debian's ``chromium`` and ``chromium-driver`` (and ``graphviz`` for the build); under ``CI``
the test fails when they are missing, elsewhere it skips.  A screenshot of every page's first
screen goes to the test's temporary folder; with ``LIBE_GC_SCREENSHOTS=<folder>`` whole-page
screenshots go there too, to look at.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import pathlib
import threading
import typing as t
import urllib.parse

import pytest

from tests.docs.helpers import require_tool

WIDTH = 1280
HEIGHT = 900
MAIN_PAGES = ("index", "quickstart", "concepts", "executor", "gconly", "templates", "troubleshooting", "doctor")
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}


class _Ids(html.parser.HTMLParser):
    """Collect every ``id`` (and legacy ``name``) a page defines, for fragment links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def _ids(path: pathlib.Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: t.Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(docs_html: pathlib.Path) -> t.Iterator[str]:
    """Serve the HTML build on a loopback port (pictures load as they would from a web server)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(docs_html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[t.Any]:
    """Headless Chromium through chromedriver, offline, with a fresh profile."""
    chromium = require_tool("chromium", "chromium-browser", "google-chrome", package="chromium")
    driver_path = require_tool("chromedriver", package="chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    # Both paths are given, so Selenium Manager has nothing to download; SE_OFFLINE makes sure.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _pages(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in root.glob("*.html") if p.name not in SKIP_PAGES)


_PICTURES_LOADED = """
const imgs = Array.from(document.images);
const objs = Array.from(document.querySelectorAll('object[data]'));
return imgs.every(i => i.complete) && objs.every(o => o.contentDocument && o.contentDocument.readyState === 'complete');
"""

_MEASURE = """
const vw = window.innerWidth;
const boxes = Array.from(document.querySelectorAll('article .table-wrapper, article div.highlight, article .graphviz'))
  .filter(e => e.getBoundingClientRect().width > 0)
  .map(e => ({kind: e.className, right: Math.round(e.getBoundingClientRect().right)}))
  .filter(b => b.right > vw + 1);
const badImgs = Array.from(document.images)
  .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
const badObjs = Array.from(document.querySelectorAll('object[data]')).filter(o => {
  const d = o.contentDocument;
  return !(d && d.documentElement && d.documentElement.nodeName.toLowerCase() === 'svg'
           && o.getBoundingClientRect().width > 0);
}).map(o => o.data);
const optionTables = Array.from(document.querySelectorAll('table.option-table')).map(t => {
  const box = t.parentElement;
  return {overflow: box.scrollWidth - box.clientWidth, id: (t.closest('section') || {}).id || ''};
});
const flagged = Array.from(document.querySelectorAll(
  '.system-message, .problematic, .contents:not(.this-will-duplicate-information-and-it-is-still-useful-here)'
)).map(e => e.className + ': ' + e.textContent.trim().slice(0, 80));
return {
  innerWidth: vw,
  flagged: flagged,
  pageWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
  boxes: boxes,
  badImgs: badImgs,
  badObjs: badObjs,
  pictures: document.images.length + document.querySelectorAll('object[data]').length,
  optionTables: optionTables,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  height: document.documentElement.scrollHeight,
};
"""


def _broken_links(links: list[str], site: str, root: pathlib.Path) -> list[str]:
    broken = []
    for link in links:
        if not link.startswith(site):
            continue  # another site, mailto:, javascript:
        parts = urllib.parse.urlsplit(link)
        rel = urllib.parse.unquote(parts.path).lstrip("/") or "index.html"
        target = root / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(link)
        elif parts.fragment and target.suffix == ".html" and urllib.parse.unquote(parts.fragment) not in _ids(target):
            broken.append(link)
    return broken


def _screenshot(driver: t.Any, name: str, height: int, folder: pathlib.Path, full: bool) -> None:
    driver.save_screenshot(str(folder / f"{name}.png"))
    if not full:
        return
    driver.set_window_size(WIDTH, min(max(height, HEIGHT), 8000))
    try:
        driver.save_screenshot(str(folder / f"{name}-full.png"))
    finally:
        driver.set_window_size(WIDTH, HEIGHT)


def _check(driver: t.Any, site: str, root: pathlib.Path, page: str) -> tuple[dict[str, t.Any], list[str]]:
    """Open one page and return its measurements and what is wrong with it."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(site + page)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(_PICTURES_LOADED))
    m: dict[str, t.Any] = driver.execute_script(_MEASURE)
    assert m["innerWidth"] == WIDTH, f"the window is {m['innerWidth']} px wide, not {WIDTH}"
    problems = []
    if m["pageWidth"] > WIDTH:
        problems.append(f"{page}: the page is {m['pageWidth']} px wide in a {WIDTH} px window")
    problems += [f"{page}: a {b['kind']!r} box ends at {b['right']} px, past the window" for b in m["boxes"]]
    problems += [f"{page}: image does not load: {src}" for src in m["badImgs"] + m["badObjs"]]
    problems += [f"{page}: shown as a build or theme error: {text}" for text in m["flagged"]]
    problems += [
        f"{page}: option table in section {tab['id']!r} needs {tab['overflow']} px of sideways scrolling"
        for tab in m["optionTables"]
        if tab["overflow"] > 1
    ]
    problems += [f"{page}: broken link {link}" for link in _broken_links(m["links"], site, root)]
    return m, problems


BAD_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><article>
<div class="table-wrapper"><table class="option-table"><tr><td style="white-space:nowrap">{wide}</td></tr></table></div>
<img src="missing.png" alt="x"><a href="../nowhere.html">x</a><a href="../index.html#no-such-anchor">y</a>
<div class="contents">an untagged table of contents</div>
<div style="width:1600px">wide</div></article></body></html>"""


def test_the_checks_catch_a_wide_page_a_missing_image_and_broken_links(
    browser: t.Any, site: str, docs_html: pathlib.Path
) -> None:
    folder = docs_html / "_selftest"
    folder.mkdir(exist_ok=True)
    (folder / "bad.html").write_text(BAD_PAGE.format(wide="x" * 400))
    _, problems = _check(browser, site, docs_html, "_selftest/bad.html")
    text = "\n".join(problems)
    assert "the page is" in text and "image does not load" in text, text
    assert "nowhere.html" in text and "no-such-anchor" in text and "sideways scrolling" in text, text
    assert "build or theme error" in text, text


def test_pages_fit_1280px_pictures_load_and_links_resolve(
    browser: t.Any, site: str, docs_html: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    shots = pathlib.Path(os.environ.get("LIBE_GC_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    pages = _pages(docs_html)
    assert {f"{name}.html" for name in MAIN_PAGES} <= set(pages), pages
    problems: list[str] = []
    seen: dict[str, dict[str, t.Any]] = {}
    for page in pages:
        seen[page], found = _check(browser, site, docs_html, page)
        problems += found
        _screenshot(browser, page.removesuffix(".html"), seen[page]["height"], shots, full=shots != tmp_path)
    assert not problems, "\n".join(problems)
    # The pictures are there: the architecture on the concepts page, the option tables on the reference.
    assert seen["concepts.html"]["pictures"] >= 2
    assert len(seen["templates.html"]["optionTables"]) >= 7
    print(f"screenshots of {len(pages)} pages in {shots}")
