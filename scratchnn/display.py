"""Helpers for the book: show the package's own source code in a notebook (no second copy
to drift)."""
import inspect
import textwrap


def show_source(obj):
    """Display ``obj``'s source, as it is in the installed package, as a highlighted code block.

    The chapters call this instead of pasting code, so the book always shows the code that runs.
    It returns Markdown, which both the rendered book (myst-nb) and Jupyter/Colab highlight.
    """
    from IPython.display import Markdown

    source = textwrap.dedent(inspect.getsource(obj)).rstrip()
    return Markdown(f"```python\n{source}\n```")
