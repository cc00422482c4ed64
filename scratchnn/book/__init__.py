"""Helpers used only by the book's chapters, kept apart from the library.

* ``display``: show the package's real source in a chapter, read stored results (JSON);
* ``gradcheck``: compare our gradients with autograd's and with finite differences;
* ``exercises``: check a reader's "your turn" code against autograd, with hints;
* ``animations``: the chapters' animations (sliding windows, unfold, the backward flow).

Nothing in ``scratchnn`` outside this folder imports it.
"""
