"""Static checks of the book's chapter notebooks: no kernel is started here.

Each check says what a chapter author has to do when it fails. Executing the notebooks and
comparing their outputs is nbval's job (see tests/nbval_sanitize.cfg).
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from markdown_it import MarkdownIt
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
RERUN = ("re-run it top to bottom in a fresh kernel (Kernel > Restart Kernel and Run All Cells) "
         "and save it")

sys.path.insert(0, str(ROOT / "tools"))
import install_cell  # noqa: E402  (tools/ is not a package)


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(nb):
    return [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]


def toc_files():
    """Every page named in _toc.yml (root and all entries), as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc.get("parts", toc.get("chapters", [])))
    return [Path(f).with_suffix("").as_posix() for f in files]


# --- the table of contents -------------------------------------------------------------------

def test_toc_lists_only_existing_pages():
    missing = [f for f in toc_files()
               if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not missing, (
        f"_toc.yml lists pages that do not exist (remove them or add the files): {missing}")


def test_every_book_page_is_in_the_toc():
    listed = set(toc_files())
    pages = sorted(p for p in BOOK.iterdir() if p.suffix in (".md", ".ipynb"))
    unlisted = [p.relative_to(ROOT).as_posix() for p in pages
                if p.relative_to(ROOT).with_suffix("").as_posix() not in listed]
    assert not unlisted, f"add these pages to _toc.yml (the book would leave them out): {unlisted}"


@pytest.mark.parametrize("installed", [False, True])
def test_install_cell_installs_from_the_configured_repository(installed, monkeypatch):
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed else None)
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    exec(install_cell.install_cell_source(), {})
    url, branch = install_cell.repository()
    expected = [sys.executable, "-m", "pip", "install", "--quiet", f"git+{url}@{branch}"]
    assert calls == ([] if installed else [((expected,), {"check": True})])


def test_nbval_sanitize_patterns_apply():
    patterns = get_sanitize_patterns(
        (ROOT / "tests" / "nbval_sanitize.cfg").read_text(encoding="utf-8"))
    assert patterns, "tests/nbval_sanitize.cfg has no 'regex: ...' / 'replace: ...' pairs"
    text = (" 50%|#####     | 5/10 [00:01<00:01,  5.0it/s]\n"
            "<scratchnn.nn.Conv2d object at 0x7f3a2b1c9d90>\n"
            "epoch 3 took 12.34 s, PSNR 23.42 dB\n"
            "conv weight  max error 3.1e-15  (tolerance 1e-09)  pass\n"
            "ConvTranspose2d bias gradient    largest error 8.9e-15  pass\n"
            "File /home/runner/work/repo/scratchnn/nn/conv.py, line 3\n")
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    assert text == ("PROGRESS-BAR\n<scratchnn.nn.Conv2d object at 0xADDRESS>\n"
                    "epoch 3 took DURATION, PSNR 23.42 dB\n"
                    "conv weight  max error ERROR  (tolerance 1e-09)  pass\n"
                    "ConvTranspose2d bias gradient    largest error ERROR  pass\n"
                    "File PATH/conv.py, line 3\n")


# --- every chapter notebook ------------------------------------------------------------------

chapter = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


@chapter
def test_kernelspec_is_python3(path):
    name = read(path).metadata.get("kernelspec", {}).get("name")
    assert name == "python3", (
        f"{path.name}: kernelspec is {name!r}; it must be 'python3' "
        "(Kernel > Change Kernel > Python 3, or set metadata.kernelspec.name) "
        "so that nbval and Colab start the right kernel")


@chapter
def test_exactly_one_title(path):
    md = MarkdownIt("commonmark")
    levels = []  # heading levels in document order, code fences excluded
    for cell in read(path).cells:
        if cell.cell_type == "markdown":
            levels += [int(t.tag[1]) for t in md.parse(cell.source) if t.type == "heading_open"]
    assert levels.count(1) == 1, (
        f"{path.name}: found {levels.count(1)} '#' titles; a chapter has exactly one '# Title' "
        "(use '##' and below for sections)")
    assert levels[0] == 1, f"{path.name}: the '# Title' must come before every other heading"


@chapter
def test_first_code_cell_is_the_install_cell(path):
    problems = install_cell.problems(read(path))
    assert not problems, f"{path.name}: " + "; ".join(problems)


@chapter
def test_executed_top_to_bottom(path):
    cells = code_cells(read(path))
    unexecuted = [i for i, c in cells if c.source.strip() and c.execution_count is None]
    assert not unexecuted, f"{path.name}: code cells {unexecuted} were never executed; {RERUN}"
    counts = [c.execution_count for _, c in cells if c.execution_count is not None]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts are {counts}, not 1, 2, 3, ... in document order, so the "
        f"outputs do not come from one top-to-bottom run; {RERUN}")


@chapter
def test_no_error_outputs(path):
    errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
              for i, c in code_cells(read(path)) for o in c.outputs if o.output_type == "error"]
    assert not errors, (f"{path.name}: outputs contain errors; fix the code and {RERUN}:\n"
                        + "\n".join(errors))


@chapter
def test_no_stderr_output(path):
    stderr = [f"cell {i}: {o.text.strip()[:300]}"
              for i, c in code_cells(read(path)) for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, (
        f"{path.name}: stray stderr output (warnings, progress bars, logging). Remove its cause, "
        "send progress to stdout or disable it, or silence a warning you have understood; then "
        f"{RERUN}:\n" + "\n".join(stderr))
