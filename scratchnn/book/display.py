"""Helpers for the book: show the package's own source code in a notebook (no second copy
to drift), and read the stored records of long runs (``results/``, ``benchmarks/results/``)."""
import importlib.metadata
import inspect
import json
import textwrap
import urllib.request
from pathlib import Path


def show_source(obj):
    """Display ``obj``'s source, as it is in the installed package, as a highlighted code block.

    The chapters call this instead of pasting code, so the book always shows the code that runs.
    It returns Markdown, which both the rendered book (myst-nb) and Jupyter/Colab highlight.
    """
    from IPython.display import Markdown

    source = textwrap.dedent(inspect.getsource(obj)).rstrip()
    return Markdown(f"```python\n{source}\n```")


def stored_json(relative_path):
    """A JSON file of the book's repository, e.g. ``"results/course/n2n/history.json"``.

    Inside the repository (the book's build, CI) it is read from disk, looking upwards from the
    current folder. Elsewhere (Colab, where only the package was installed) it is downloaded
    from the commit of the repository that pip installed scratchnn from, so the numbers always
    belong to the code that runs.
    """
    for folder in (Path.cwd(), *Path.cwd().parents):
        path = folder / relative_path
        if path.exists():
            return json.loads(path.read_text())
    origin = json.loads(importlib.metadata.distribution("scratchnn").read_text("direct_url.json"))
    url = f"{origin['url']}/raw/{origin['vcs_info']['commit_id']}/{relative_path}"
    with urllib.request.urlopen(url) as response:
        return json.load(response)
