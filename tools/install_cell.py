"""The first code cell of every chapter notebook, written from one place.

Every chapter in ``book/`` starts (first code cell) with the same cell: it installs
``scratchnn`` from the book's repository when the package is missing, as in a fresh Colab
runtime, and prints nothing otherwise. The repository URL and branch are read from
``_config.yml`` (``repository.url``, ``repository.branch``), the one place they are kept.

Usage (from the repository root)::

    python tools/install_cell.py                 # print the cell
    python tools/install_cell.py --check         # check every book/*.ipynb (exit 1 on a problem)
    python tools/install_cell.py --fix           # rewrite the install cell where it differs
    python tools/install_cell.py --new book/03_conv_forward.ipynb --title "Convolution forward"

From Python (``sys.path`` must contain ``tools/``, as in ``tests/``)::

    from install_cell import install_cell_source, new_chapter_notebook, problems
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "_config.yml"
BOOK = ROOT / "book"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
FIRST_LINE = "# Install scratchnn when it is missing (e.g. in Colab); silent otherwise."


def repository(config: Path = CONFIG) -> tuple[str, str]:
    """Return ``(url, branch)`` from the ``repository`` section of ``_config.yml``."""
    with open(config, encoding="utf-8") as f:
        section = (yaml.safe_load(f) or {}).get("repository") or {}
    url = str(section.get("url") or "").rstrip("/")
    if not url.startswith("https://"):
        raise ValueError(f"{config}: repository.url must be an https:// URL, got {url!r}")
    return url, str(section.get("branch") or "main")


def install_cell_source(config: Path = CONFIG) -> str:
    """The exact source of the install cell, for the repository named in ``config``."""
    url, branch = repository(config)
    return "\n".join([
        FIRST_LINE,
        "import importlib.util, subprocess, sys",
        'if importlib.util.find_spec("scratchnn") is None:',
        f'    repository = "{url}"',
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",',
        f'                    f"git+{{repository}}@{branch}"], check=True)',
    ])


def _first_code_cell(nb) -> int | None:
    return next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"), None)


def _looks_like_install_cell(source: str) -> bool:
    return source.startswith("# Install scratchnn") or 'find_spec("scratchnn")' in source


def problems(nb, config: Path = CONFIG) -> list[str]:
    """What is wrong with the notebook's install cell, as messages for the chapter author."""
    expected = install_cell_source(config)
    fix = "run `python tools/install_cell.py --fix`, then re-execute the notebook top to bottom"
    i = _first_code_cell(nb)
    if i is None:
        return [f"the notebook has no code cell; its first code cell must be the install cell "
                f"({fix})"]
    cell = nb.cells[i]
    if cell.source != expected:
        if _looks_like_install_cell(cell.source):
            return [f"code cell {i} (the first code cell) is an outdated or edited install cell; "
                    f"{fix}"]
        return [f"the first code cell (cell {i}) must be the install cell, but it is:\n"
                f"{cell.source[:200]}\n({fix})"]
    if cell.get("outputs"):
        return [f"the install cell (cell {i}) has outputs; it must be silent. "
                "Make sure scratchnn is installed (`python -m pip install -e .`) "
                "and re-execute the notebook"]
    return []


def fix(nb, config: Path = CONFIG) -> bool:
    """Make the first code cell the install cell. Return True when the notebook changed.

    An existing (outdated) install cell is rewritten in place; otherwise a new one is inserted
    before the first code cell, and the notebook then needs re-executing.
    """
    expected = install_cell_source(config)
    i = _first_code_cell(nb)
    if i is not None and _looks_like_install_cell(nb.cells[i].source):
        cell = nb.cells[i]
        if cell.source == expected and not cell.get("outputs"):
            return False
        cell.source, cell.outputs = expected, []
        return True
    cell = nbformat.v4.new_code_cell(expected)
    nb.cells.insert(len(nb.cells) if i is None else i, cell)
    return True


def new_chapter_notebook(title: str, intro: str = "", gpu: bool = False,
                         config: Path = CONFIG) -> nbformat.NotebookNode:
    """A new chapter: the ``# title`` markdown cell (plus ``intro``) and the install cell.

    ``gpu=True`` adds ``"accelerator": "GPU"`` to the metadata, which asks Colab for a GPU runtime.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if gpu:
        nb.metadata["accelerator"] = "GPU"
    text = f"# {title}" + (f"\n\n{intro.strip()}" if intro.strip() else "")
    nb.cells = [nbformat.v4.new_markdown_cell(text),
                nbformat.v4.new_code_cell(install_cell_source(config))]
    return nb


def _notebooks(paths: list[str]) -> list[Path]:
    return [Path(p) for p in paths] if paths else sorted(BOOK.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="check notebooks; exit 1 on a problem")
    group.add_argument("--fix", action="store_true",
                       help="rewrite the install cell where it differs")
    group.add_argument("--new", metavar="NOTEBOOK", help="create a new chapter notebook")
    parser.add_argument("--title", help="title of the new chapter (with --new)")
    parser.add_argument("--gpu", action="store_true", help="mark the new chapter as a GPU chapter")
    parser.add_argument("notebooks", nargs="*",
                        help="notebooks to check or fix (default: book/*.ipynb)")
    args = parser.parse_args(argv)

    if args.new:
        path = Path(args.new)
        if path.exists():
            parser.error(f"{path} exists already")
        if not args.title:
            parser.error("--new needs --title")
        nbformat.write(new_chapter_notebook(args.title, gpu=args.gpu), path)
        print(f"wrote {path}; add it to _toc.yml")
        return 0
    if not (args.check or args.fix):
        print(install_cell_source())
        return 0

    status = 0
    for path in _notebooks(args.notebooks):
        nb = nbformat.read(path, as_version=4)
        if args.fix:
            if fix(nb):
                nbformat.write(nb, path)
                print(f"{path}: install cell rewritten; re-execute the notebook top to bottom")
        else:
            for message in problems(nb):
                print(f"{path}: {message}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
