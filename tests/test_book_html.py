"""Build the book as CI does and look at every page in headless Chromium.

The build must pass ``jupyter-book build . -W -n --keep-going`` without a single warning. Then each
page's rendered DOM must show its title; each chapter also needs an equation, a figure and a Colab
launch link to its own notebook. A screenshot of every page is saved in ``_build/screenshots/``.

Chromium comes from Debian (``apt-get install -y chromium``); without it the browser checks are
skipped. MathJax is loaded from a CDN, which these checks block, so equations are found by Sphinx's
math markup (``class="math ..."``), not by MathJax's rendering.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from bs4 import BeautifulSoup
from markdown_it import MarkdownIt

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))
PAGES = [BOOK / "intro.md"] + CHAPTERS


def jupyter_book():
    script = Path(sys.executable).with_name("jupyter-book")
    return str(script) if script.exists() else shutil.which("jupyter-book") or "jupyter-book"


@pytest.fixture(scope="module")
def build():
    """A full rebuild (--all), so that warnings from unchanged pages are reported too."""
    result = subprocess.run(
        [jupyter_book(), "build", str(ROOT), "-W", "-n", "--keep-going", "--all"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return result.returncode, result.stdout + result.stderr


def chromium_executable():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); "
                "the rendered pages were not checked")


def chromium(args, profile):
    command = [
        chromium_executable(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the same result everywhere
        "--virtual-time-budget=10000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, (f"chromium failed ({result.returncode}):\n"
                                    f"{result.stderr[-2000:]}")
    return result.stdout


def page_title(path):
    """The text of the page's '#' title, from its source (markdown or notebook)."""
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        source = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    else:
        source = path.read_text(encoding="utf-8")
    tokens = MarkdownIt("commonmark").parse(source)
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open" and opening.tag == "h1":
            return "".join(child.content for child in inline.children)
    raise AssertionError(f"{path.name} has no '#' title")


def words(text):
    return re.sub(r"\W+", " ", text).strip().lower()


def test_build_has_no_warnings(build):
    returncode, output = build
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, (
        f"`jupyter-book build . -W -n --keep-going` failed (exit {returncode}); fix these:\n"
        + "\n".join(warnings or output.splitlines()[-40:]))


@pytest.mark.parametrize("source", PAGES, ids=[p.name for p in PAGES])
def test_page_renders(source, build, tmp_path):
    name = source.stem
    page = HTML / "book" / f"{name}.html"
    assert page.exists(), f"{page} was not built; is book/{source.name} listed in _toc.yml?"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    chromium([f"--screenshot={screenshot}", "--window-size=1280,1600", page.as_uri()], tmp_path)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, f"no screenshot of {name}"

    soup = BeautifulSoup(chromium(["--dump-dom", page.as_uri()], tmp_path), "html.parser")
    article = soup.select_one("article.bd-article")
    assert article is not None, f"{name}: the rendered page has no article body"

    h1 = article.find("h1")
    assert h1 is not None, f"{name}: the rendered page has no title (h1)"
    for link in h1.select("a.headerlink"):
        link.decompose()
    title = page_title(source)
    assert words(title) in words(h1.get_text()), (
        f"{name}: the page's h1 is {h1.get_text().strip()!r}, expected the title {title!r}")

    for img in article.find_all("img"):
        src = img.get("src", "")
        if src and not re.match(r"[a-z]+:", src):
            target = (page.parent / src.split("#")[0]).resolve()
            assert target.exists(), f"{name}: image {src} is missing from the built site"

    if source.suffix != ".ipynb":
        return
    assert article.select(".math"), (
        f"{name}: no equation on the page; a chapter derives its blocks with at least one "
        "equation ($...$ inline or $$...$$ (label) display) in a markdown cell")
    assert article.find("img"), (
        f"{name}: no figure on the page; a chapter needs at least one (a plot output or a "
        "{figure} directive)")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    org_repo = config["url"].removeprefix("https://github.com/")
    colab = (f"https://colab.research.google.com/github/{org_repo}/blob/"
             f"{config.get('branch', 'main')}/book/{source.name}")
    links = [a.get("href", "") for a in soup.find_all("a")]
    assert colab in links, f"{name}: no Colab launch link to {colab}"


# Chapters that must show at least one matplotlib animation (``scratchnn.book.animations``).
ANIMATED_CHAPTERS = ["03_conv_forward", "04_conv_backward", "05_upsampling", "08_making_it_fast"]

# Injected into a copy of a page: after load, press every animation's Play button (matplotlib's
# jshtml template, matplotlib/_animation_data.py: onclick="anim<id>.play_animation()"), then for
# three (virtual) seconds keep the largest frame each slider showed, and write them on <body>.
PLAY_ANIMATIONS = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    document.querySelectorAll("button[onclick$='.play_animation()']")
      .forEach(function (button) { button.click(); });
    var sliders = Array.from(document.querySelectorAll("input.anim-slider"));
    var largest = sliders.map(function () { return 0; });
    var watch = setInterval(function () {
      sliders.forEach(function (slider, k) {
        largest[k] = Math.max(largest[k], parseInt(slider.value));
      });
      document.body.setAttribute("data-animation-frames", largest.join(","));
    }, 50);
    setTimeout(function () { clearInterval(watch); }, 3000);
  }, 500);
});
</script>
"""


def test_animations_play(build, tmp_path):
    animated = {}
    for page in sorted((HTML / "book").glob("*.html")):
        text = page.read_text(encoding="utf-8")
        if "new Animation(frames" in text:
            animated[page] = text
    names = [page.stem for page in animated]
    missing = [name for name in ANIMATED_CHAPTERS if name not in names]
    assert not missing, (f"no animation (scratchnn.book.animations + as_html) on the pages of "
                         f"{missing}; found animations on {names}")

    for page, text in animated.items():
        sliders = text.count('class="anim-slider"')
        # A copy beside nothing: <base> makes its relative links point into the built site.
        copy = tmp_path / f"{page.stem}.html"
        text = re.sub(r"<head[^>]*>", lambda m: f'{m.group(0)}<base href="{page.as_uri()}">',
                      text, count=1)
        copy.write_text(text.replace("</body>", PLAY_ANIMATIONS + "</body>", 1), encoding="utf-8")
        soup = BeautifulSoup(chromium(["--dump-dom", copy.as_uri()], tmp_path / "profile"),
                             "html.parser")
        frames = soup.body.get("data-animation-frames") if soup.body else None
        assert frames is not None, f"{page.stem}: the animations' sliders could not be read"
        largest = [int(value) for value in frames.split(",")]
        assert len(largest) == sliders and all(value > 0 for value in largest), (
            f"{page.stem}: after pressing Play, the largest frame of each animation was "
            f"{largest}; every animation must move past its first frame")
