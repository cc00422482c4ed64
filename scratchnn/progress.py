"""Progress bars for long loops (training epochs, the tiles of a large image), one switch off.

``TQDM_DISABLE=1`` in the environment turns every bar off (CI, logs, ``nohup``); so does
``progress=False``.
"""
import os


def progress_disabled(progress):
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


def progress_bar(iterable, description, progress):
    """A tqdm bar: a widget in a notebook, text in a terminal, and a silent pass-through when off.

    ``tqdm.auto`` is imported only when the bar is shown: without ipywidgets it warns on stderr.
    """
    if progress_disabled(progress):
        from tqdm import tqdm
        return tqdm(iterable, disable=True)
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=description, leave=False)
