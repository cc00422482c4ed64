"""Student workbooks: every chapter without its solutions, to work the exercises in.

``workbooks/NN_name.ipynb`` is generated from ``book/NN_name.ipynb``:

* every solution dropdown is removed: a colon-fenced ``{admonition} Solution`` block with
  ``:class: dropdown`` (``:::`` or ``::::`` fences, alone in its cell or after the exercise
  statement); a markdown cell left empty is dropped, the exercise statements stay;
* every output and execution count is cleared, so the reader runs the workbook top to bottom; the
  "your turn" skeleton cells stay as they are and print "not implemented yet" (from
  ``scratchnn.book.exercises``) until the reader fills them in;
* a first markdown cell says which chapter it is the workbook of, with links back to the chapter;
  the chapter's own "Open the workbook in Colab" cell is left out;
* the MyST that only the book's build understands becomes Markdown and LaTeX that Colab renders
  (``colab_markdown``): a numbered equation ``$$ ... $$ (label)`` carries its number as text,
  ``\\qquad \\text{(7.2)}``, and ``{eq}`label` `` becomes "(7.2)", the number the book prints; a
  colon-fenced admonition (``:::{admonition} Title``, ``:::{note}``) becomes its title in bold
  followed by its text; ``{doc}`` becomes a link to that chapter in Colab, ``{ref}`` the title
  of the section it names, ``{cite:p}`` / ``{cite:t}`` "(Author et al., year)" / "Author et al.
  (year)" from ``book/references.bib``; a target line ``(label)=`` is dropped. Code blocks are
  left as they are.

The output is deterministic (the chapter's cell ids, no execution metadata, sorted keys,
``indent=1``, a trailing newline), so ``--check`` and ``tests/test_workbooks.py`` can compare the
committed workbooks with what would be generated. The repository URL and branch of the links are
read from ``_config.yml`` (``repository.url``, ``repository.branch``), the one place they are kept.

Usage (from the repository root)::

    python tools/make_workbooks.py                  # write workbooks/ for every book/*.ipynb
    python tools/make_workbooks.py --check          # exit 1, listing what is stale or missing
    python tools/make_workbooks.py --link           # add or update each chapter's link cell
                                                    # to its workbook, then write the workbooks
    python tools/make_workbooks.py --link book/02_modules_backprop.ipynb   # only these chapters

``--link`` puts one markdown cell right after the chapter's first markdown cell (its title):
"[Open the workbook in Colab](...): this chapter without its solutions, ...". It does not change
any code cell or output, so the chapter needs no re-execution.

From Python (``sys.path`` must contain ``tools/``, as in ``tests/``)::

    from make_workbooks import colab_markdown, make_workbook, render, stale, strip_solutions
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from install_cell import CONFIG, repository

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
WORKBOOKS = ROOT / "workbooks"
BIBLIOGRAPHY = BOOK / "references.bib"

COLAB = "https://colab.research.google.com/github"
LINK_ID = "workbook-link"          # the id of the link cell in a chapter
HEADER_ID = "workbook-header"      # the id of the first cell of a workbook
LINK_TEXT = "Open the workbook in Colab"
KEPT_CELL_METADATA = ("tags",)     # everything else (execution timings...) is left out

SOLUTION_OPENING = re.compile(r"^(?P<colons>:{3,})\{admonition\}\s*Solution\b")
OPTION = re.compile(r"^:[\w-]+:")
COLON_CLOSING = re.compile(r"^(?P<colons>:{3,})\s*$")
CODE_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")

# MyST that Colab does not know (see colab_markdown)
EQUATION_CLOSING = re.compile(r"^\$\$\s*\((?P<label>[\w-]+)\)\s*$")
TARGET_LINE = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")
DIRECTIVE_OPENING = re.compile(r"^(?P<colons>:{3,})\{(?P<name>[\w-]+)\}\s*(?P<title>.*?)\s*$")
ROLE = re.compile(r"\{(?P<role>eq|doc|ref|cite:p|cite:t)\}`(?P<target>[^`]+)`")
EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


# --- URLs --------------------------------------------------------------------------------------

def github_repository(config: Path = CONFIG) -> tuple[str, str, str]:
    """``(url, "owner/name", branch)`` of the GitHub repository named in ``_config.yml``."""
    url, branch = repository(config)
    prefix = "https://github.com/"
    if not url.startswith(prefix) or url.count("/") != 4:
        raise ValueError(f"{config}: repository.url must be https://github.com/<owner>/<name> "
                         f"for Colab links, got {url!r}")
    return url, url.removeprefix(prefix), branch


def colab_url(path: str, config: Path = CONFIG) -> str:
    """Colab's address of a notebook of the repository, ``path`` relative to its root."""
    _, org_repo, branch = github_repository(config)
    return f"{COLAB}/{org_repo}/blob/{branch}/{path}"


def github_url(path: str, config: Path = CONFIG) -> str:
    """GitHub's address of a file of the repository, ``path`` relative to its root."""
    url, _, branch = github_repository(config)
    return f"{url}/blob/{branch}/{path}"


def has_exercises(chapter: Path) -> bool:
    """Whether a chapter poses exercises (an "Exercise" admonition in a markdown cell)."""
    return any(cell.get("cell_type") == "markdown" and "{admonition} Exercise" in source_of(cell)
               for cell in read(chapter)["cells"])


def link_cell_source(chapter: Path, config: Path = CONFIG) -> str:
    """The one-line markdown of a chapter's link cell to its workbook (a page without exercises,
    such as chapter 8's appendix, is offered to run and change instead)."""
    what = ("this chapter without its solutions, to work the exercises yourself"
            if has_exercises(chapter) else "this page, to run and change it yourself")
    return f"[{LINK_TEXT}]({colab_url(f'workbooks/{chapter.name}', config)}): {what}."


# --- notebooks as JSON -------------------------------------------------------------------------

def source_of(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def lines_of(text: str) -> list[str]:
    """A cell source as stored on disk by Jupyter: a list of lines, each with its newline."""
    return text.splitlines(keepends=True)


def read(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def render(nb: dict) -> str:
    """The file text of a notebook, as Jupyter and nbformat write it, with a trailing newline."""
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def is_link_cell(cell: dict) -> bool:
    return cell.get("cell_type") == "markdown" and (
        cell.get("id") == LINK_ID or source_of(cell).startswith(f"[{LINK_TEXT}]("))


def title_of(nb: dict, path: Path) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in source_of(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError(f"{path}: no '# Title' line in a markdown cell")


def chapter_number(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    if not match:
        raise ValueError(f"{path}: a chapter is named NN_name.ipynb")
    return int(match.group(1))


# --- removing the solutions --------------------------------------------------------------------

def _is_dropdown(lines: list[str], opening: int) -> bool:
    """Whether the option lines just after an admonition's opening fence include a dropdown."""
    for line in lines[opening + 1:]:
        if not OPTION.match(line):
            return False
        if line.startswith(":class:") and "dropdown" in line.split()[1:]:
            return True
    return False


def _closing_fence(lines: list[str], opening: int, colons: int) -> int:
    """Index of the line that closes the colon fence opened at ``opening`` with ``colons``.

    A line of at least as many colons closes it; lines inside a code block (``` or ~~~) do not,
    nor do the shorter fences of admonitions nested inside it.
    """
    code = None
    for index in range(opening + 1, len(lines)):
        line = lines[index]
        fence = CODE_FENCE.match(line)
        if code is None:
            if fence:
                code = fence.group("fence")
                continue
            closing = COLON_CLOSING.match(line)
            if closing and len(closing.group("colons")) >= colons:
                return index
        elif fence and fence.group("fence")[0] == code[0] and len(fence.group("fence")) >= len(
                code) and not line.strip(code[0]).strip():
            code = None
    raise ValueError(f"the solution opened by {lines[opening]!r} is never closed "
                     f"(expected a line of {colons} colons)")


def strip_solutions(text: str) -> tuple[str, int]:
    """The markdown ``text`` without its solution dropdowns, and how many were removed."""
    lines = text.split("\n")
    kept: list[str] = []
    removed = 0
    index = 0
    while index < len(lines):
        opening = SOLUTION_OPENING.match(lines[index])
        if opening and _is_dropdown(lines, index):
            index = _closing_fence(lines, index, len(opening.group("colons"))) + 1
            removed += 1
            # One blank line separated the solution from what follows; keep only one.
            if (not kept or not kept[-1].strip()) and index < len(lines) \
                    and not lines[index].strip():
                index += 1
            continue
        kept.append(lines[index])
        index += 1
    if not removed:
        return text, 0
    return "\n".join(kept).strip("\n"), removed


# --- MyST to what Colab renders ---------------------------------------------------------------

@dataclass(frozen=True)
class BookIndex:
    """What the book's build knows and a workbook must spell out: equation numbers, chapter
    titles, section titles of targets, and the bibliography."""
    equations: dict          # label -> "7.2"
    chapters: dict           # "07_training" -> its title
    sections: dict           # target label -> the title of the heading after it
    references: dict         # citation key -> (authors as cited, year)


def _markdown_lines(nb: dict):
    """The lines of a notebook's markdown cells that are not inside a code block."""
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        code = None
        for line in source_of(cell).split("\n"):
            fence = CODE_FENCE.match(line)
            if code is None and fence:
                code = fence.group("fence")
            elif code is not None and fence and line.strip() == code[0] * len(line.strip()) \
                    and len(line.strip()) >= len(code):
                code = None
            elif code is None:
                yield line


def _bib_field(entry: str, name: str) -> str:
    match = re.search(r"\b" + name + r"\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", entry)
    return match.group(1) if match else ""


def _plain(text: str) -> str:
    """A BibTeX value without braces and accents commands: Doll{\\'a}r -> Dollar."""
    return re.sub(r"\\.", "", text).replace("{", "").replace("}", "").strip()


def read_bibliography(path: Path = BIBLIOGRAPHY) -> dict:
    """``{key: (authors as cited, year)}``: "Mery", "Dabov and Foi", "Lehtinen et al."."""
    references = {}
    for match in re.finditer(r"@\w+\{(?P<key>[^,\s]+),(?P<body>.*?)\n\}", path.read_text(
            encoding="utf-8"), re.S):
        body = match.group("body")
        last_names = [_plain(author.split(",")[0]) for author in
                      re.split(r"\s+and\s+", _bib_field(body, "author")) if author.strip()]
        if len(last_names) > 2:
            authors = f"{last_names[0]} et al."
        else:
            authors = " and ".join(last_names) or match.group("key")
        references[match.group("key")] = (authors, _plain(_bib_field(body, "year")))
    return references


def _fingerprint(book: Path, bibliography: Path) -> tuple:
    return tuple((str(path), path.stat().st_mtime_ns)
                 for path in sorted(book.glob("*.ipynb")) + [bibliography] if path.exists())


@functools.lru_cache(maxsize=4)
def _index(fingerprint: tuple, book: Path, bibliography: Path) -> BookIndex:
    equations, chapters, sections = {}, {}, {}
    for path in sorted(book.glob("*.ipynb")):
        nb, number, count, target = read(path), chapter_number(path), 0, None
        chapters[path.stem] = title_of(nb, path)
        for line in _markdown_lines(nb):
            closing = EQUATION_CLOSING.match(line)
            if closing:
                count += 1
                equations[closing.group("label")] = f"{number}.{count}"
            if TARGET_LINE.match(line):
                target = TARGET_LINE.match(line).group("label")
            elif target and HEADING.match(line):
                sections[target] = HEADING.match(line).group("title")
                target = None
    references = read_bibliography(bibliography) if bibliography.exists() else {}
    return BookIndex(equations, chapters, sections, references)


def book_index(book: Path = BOOK, bibliography: Path = BIBLIOGRAPHY) -> BookIndex:
    """The index of the whole book (every chapter's labels and titles), cached until a chapter
    or the bibliography changes."""
    return _index(_fingerprint(book, bibliography), book, bibliography)


def _role(match: re.Match, index: BookIndex, config: Path) -> str:
    role, target = match.group("role"), match.group("target").strip()
    explicit = EXPLICIT_TITLE.match(target)
    title, target = (explicit.group("title"), explicit.group("target")) if explicit else (
        None, target)
    if role == "eq":
        if target not in index.equations:
            raise ValueError(f"{{eq}}`{target}`: no equation of the book has that label")
        return f"({index.equations[target]})"
    if role == "doc":
        name = Path(target).name
        if name in index.chapters:
            return f"[{title or index.chapters[name]}]({colab_url(f'book/{name}.ipynb', config)})"
        if (BOOK / f"{name}.md").exists():
            return f"[{title or name}]({github_url(f'book/{name}.md', config)})"
        raise ValueError(f"{{doc}}`{target}`: no chapter or page book/{name}")
    if role == "ref":
        if title:
            return title
        if target not in index.sections:
            raise ValueError(f"{{ref}}`{target}`: no target ({target})= before a heading")
        return f"*{index.sections[target]}*"
    cited = []
    for key in (key.strip() for key in target.split(",")):
        if key not in index.references:
            raise ValueError(f"{{{role}}}`{key}`: no such key in {BIBLIOGRAPHY.name}")
        cited.append(index.references[key])
    if role == "cite:t":
        return ", ".join(f"{authors} ({year})" for authors, year in cited)
    return "(" + "; ".join(f"{authors}, {year}" for authors, year in cited) + ")"


def colab_markdown(text: str, index: BookIndex | None = None, config: Path = CONFIG) -> str:
    """A markdown cell of the book as Markdown and LaTeX that Colab renders (see the module's
    docstring); code blocks are copied unchanged."""
    index = index or book_index()
    out: list[str] = []
    fences: list[int] = []          # the colon counts of the admonitions still open
    code = None
    options = False                 # just after an opening fence: its :option: lines
    for line in text.split("\n"):
        fence = CODE_FENCE.match(line)
        if code is not None:
            out.append(line)
            if fence and line.strip() == code[0] * len(line.strip()) and len(
                    line.strip()) >= len(code):
                code = None
            continue
        if options and OPTION.match(line):
            continue
        options = False
        if fence:
            code = fence.group("fence")
            out.append(line)
            continue
        opening = DIRECTIVE_OPENING.match(line)
        if opening:
            name, title = opening.group("name"), opening.group("title")
            heading = title if name == "admonition" and title else (
                f"{name.capitalize()}{': ' + title if title else ''}")
            out += [f"**{heading}**", ""]
            fences.append(len(opening.group("colons")))
            options = True
            continue
        closing = COLON_CLOSING.match(line)
        if closing and fences and len(closing.group("colons")) >= fences[-1]:
            fences.pop()
            out.append("")
            continue
        if TARGET_LINE.match(line):
            continue
        equation = EQUATION_CLOSING.match(line)
        if equation:
            number = index.equations.get(equation.group("label"))
            if number is None:
                raise ValueError(f"equation label {equation.group('label')!r} not indexed")
            out += [f"\\qquad \\text{{({number})}}", "$$"]
            continue
        out.append(ROLE.sub(lambda match: _role(match, index, config), line))
    # one blank line at most between blocks, none at the ends
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


# --- a workbook --------------------------------------------------------------------------------

def header_source(chapter: Path, title: str, config: Path = CONFIG) -> str:
    relative = f"book/{chapter.name}"
    return "\n".join([
        f"**Workbook of chapter {chapter_number(chapter)}, *{title}*:** the chapter without its "
        "solutions.",
        "",
        "Run it from top to bottom, then work the exercises. Each \"your turn\" cell checks "
        "your function against PyTorch and prints \"not implemented yet\" until you fill it in; "
        "for the other exercises, add cells of your own below the statement. The chapter itself, "
        "with every solution: "
        f"[open it in Colab]({colab_url(relative, config)}) or "
        f"[read it on GitHub]({github_url(relative, config)}).",
    ])


def _clean_cell(cell: dict, text: str) -> dict:
    clean = {"cell_type": cell["cell_type"], "id": cell["id"],
             "metadata": {key: cell["metadata"][key] for key in KEPT_CELL_METADATA
                          if key in cell.get("metadata", {})},
             "source": lines_of(text)}
    if cell["cell_type"] == "code":
        clean["execution_count"] = None
        clean["outputs"] = []
    if "attachments" in cell:
        clean["attachments"] = cell["attachments"]
    return clean


def make_workbook(chapter: Path, config: Path = CONFIG) -> dict:
    """The workbook of ``chapter`` (a notebook as a JSON dict)."""
    nb = read(chapter)
    if nb.get("nbformat") != 4 or nb.get("nbformat_minor", 0) < 5:
        raise ValueError(f"{chapter}: expected nbformat 4.5 or later (cells with ids)")
    cells = [{"cell_type": "markdown", "id": HEADER_ID, "metadata": {},
              "source": lines_of(header_source(chapter, title_of(nb, chapter), config))}]
    index = book_index(chapter.parent, chapter.parent / BIBLIOGRAPHY.name)
    for cell in nb["cells"]:
        if is_link_cell(cell):
            continue
        text = source_of(cell)
        if cell["cell_type"] == "markdown":
            text, removed = strip_solutions(text)
            if removed and not text.strip():
                continue
            text = colab_markdown(text, index, config)
        cells.append(_clean_cell(cell, text))
    metadata = dict(nb.get("metadata", {}))
    # The Python version of the last run is no business of the workbook: keep what Colab needs.
    metadata["language_info"] = {"name": "python"}
    metadata["workbook"] = {"chapter": f"book/{chapter.name}",
                            "generated_by": "tools/make_workbooks.py"}
    return {"cells": cells, "metadata": metadata, "nbformat": 4,
            "nbformat_minor": nb["nbformat_minor"]}


def workbook_path(chapter: Path, workbooks: Path = WORKBOOKS) -> Path:
    return workbooks / chapter.name


def write_workbooks(chapters: list[Path], workbooks: Path = WORKBOOKS) -> list[Path]:
    """Write the workbook of each chapter; return the paths that changed."""
    workbooks.mkdir(exist_ok=True)
    changed = []
    for chapter in chapters:
        path, text = workbook_path(chapter, workbooks), render(make_workbook(chapter))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def stale(chapters: list[Path] | None = None, workbooks: Path = WORKBOOKS) -> list[str]:
    """What ``--check`` reports: stale or missing workbooks, workbooks without a chapter, and
    chapters whose link cell points somewhere else than their workbook."""
    all_chapters = chapters is None
    chapters = sorted(BOOK.glob("*.ipynb")) if chapters is None else chapters
    problems = []
    for chapter in chapters:
        path = workbook_path(chapter, workbooks)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if not path.exists():
            problems.append(f"{shown}: missing (the workbook of book/{chapter.name})")
        elif path.read_text(encoding="utf-8") != render(make_workbook(chapter)):
            problems.append(f"{shown}: differs from what book/{chapter.name} gives")
        links = [cell for cell in read(chapter)["cells"] if is_link_cell(cell)]
        if any(source_of(cell) != link_cell_source(chapter) for cell in links):
            problems.append(f"book/{chapter.name}: its workbook link cell is outdated")
    if all_chapters and workbooks.exists():
        names = {chapter.name for chapter in chapters}
        problems += [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                     "no chapter of that name in book/ (delete it)"
                     for path in sorted(workbooks.glob("*.ipynb")) if path.name not in names]
    return problems


# --- the link cell in a chapter ----------------------------------------------------------------

def link(chapter: Path, config: Path = CONFIG) -> bool:
    """Insert or update the chapter's link cell, right after its first markdown cell.

    Return True when the chapter file changed. Nothing else in the chapter changes.
    """
    text = chapter.read_text(encoding="utf-8")
    nb = json.loads(text)
    source = link_cell_source(chapter, config)
    existing = [cell for cell in nb["cells"] if is_link_cell(cell)]
    cell = existing[0] if existing else {"cell_type": "markdown", "id": LINK_ID, "metadata": {}}
    cell["source"] = lines_of(source)
    cells = [c for c in nb["cells"] if not is_link_cell(c)]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), None)
    if first is None:
        raise ValueError(f"{chapter}: no markdown cell (the title) to put the link after")
    cells.insert(first + 1, cell)
    nb["cells"] = cells
    new_text = render(nb)
    if new_text == text:
        return False
    chapter.write_text(new_text, encoding="utf-8")
    return True


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="exit 1 and list the stale or missing workbooks")
    group.add_argument("--link", action="store_true",
                       help="add or update each chapter's link cell to its workbook")
    parser.add_argument("chapters", nargs="*", type=Path,
                        help="chapters (default: every book/*.ipynb)")
    args = parser.parse_args(argv)
    chapters = [path.resolve() for path in args.chapters] or None

    if args.check:
        problems = stale(chapters)
        for problem in problems:
            print(problem)
        if problems:
            print("run `python tools/make_workbooks.py` (and `--link` for a link cell), "
                  "then commit workbooks/")
        return 1 if problems else 0

    chapters = chapters or sorted(BOOK.glob("*.ipynb"))
    if args.link:
        for chapter in chapters:
            if link(chapter):
                print(f"book/{chapter.name}: workbook link cell written")
    for path in write_workbooks(chapters):
        print(f"wrote workbooks/{path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
