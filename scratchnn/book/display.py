"""Helpers for the book: show the package's own source code in a notebook (no second copy
to drift), and read the stored records of long runs (``results/``, ``benchmarks/results/``)."""
import importlib.metadata
import inspect
import json
import tempfile
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
    """A JSON file of the book's repository, e.g. ``"results/course/n2n/history.json"``, read
    where ``stored_file`` finds it."""
    return json.loads(stored_file(relative_path).read_text())


def stored_file(relative_path):
    """The local path of a file of the book's repository (a stored result: JSON, ``.npz``).

    Inside the repository (the book's build, CI) it is found on disk, looking upwards from the
    current folder. Elsewhere (Colab, where only the package was installed) it is downloaded
    once into a temporary folder from the commit of the repository that pip installed scratchnn
    from, so the numbers always belong to the code that runs.
    """
    for folder in (Path.cwd(), *Path.cwd().parents):
        path = folder / relative_path
        if path.exists():
            return path
    origin = json.loads(importlib.metadata.distribution("scratchnn").read_text("direct_url.json")
                        or "{}")
    if "vcs_info" not in origin:
        raise FileNotFoundError(f"{relative_path} is a stored result of the book's repository: "
                                f"run this notebook inside a clone of it, or install scratchnn "
                                f"with pip from the repository (the first cell does)")
    url = f"{origin['url']}/raw/{origin['vcs_info']['commit_id']}/{relative_path}"
    local = Path(tempfile.gettempdir()) / "scratchnn-stored" / relative_path
    if not local.exists():   # written whole, then renamed: an interrupted download leaves none
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".part")
        with urllib.request.urlopen(url) as response:
            partial.write_bytes(response.read())
        partial.replace(local)
    return local
