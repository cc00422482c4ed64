"""The code the book shows never scrolls sideways, and the lint rules in pyproject.toml hold."""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE_LENGTH = 99  # [tool.ruff] line-length in pyproject.toml


def test_the_line_length_is_configured_once_in_pyproject():
    assert re.search(rf"^line-length = {LINE_LENGTH}$", (ROOT / "pyproject.toml").read_text(),
                     re.MULTILINE)


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "scratchnn", "benchmarks",
                             "tools", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def shown_sources():
    """(chapter, cell index, code) of every ``show_source`` output stored in the chapters."""
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code" or "show_source(" not in "".join(cell["source"]):
                continue
            for output in cell.get("outputs", []):
                markdown = "".join(output.get("data", {}).get("text/markdown", []))
                if markdown.startswith("```python"):
                    yield notebook.name, index, markdown


def test_every_listing_the_book_shows_fits_in_99_columns():
    listings = list(shown_sources())
    assert len(listings) > 20  # the chapters show the package's code in many places
    too_wide = [(name, index, line) for name, index, code in listings
                for line in code.splitlines() if len(line) > LINE_LENGTH]
    assert not too_wide, too_wide[:5]
