"""Shared pytest configuration: the ``slow`` marker, fixtures used by several test files, and the
report of the largest gradient errors. Shared networks live in ``helpers.py``."""
import pytest
import torch

from helpers import LARGEST_ERRORS


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: builds the whole book, runs a browser or executes a notebook; deselect "
        "with -m 'not slow'")


def pytest_terminal_summary(terminalreporter):
    """After the run: the largest gradient errors seen by test_nn_gradients.py, if it ran."""
    if any(LARGEST_ERRORS.values()):
        terminalreporter.write_line(
            f"[scratchnn] largest gradient error vs autograd: "
            f"float64 {LARGEST_ERRORS['float64']:.1e} (abs), "
            f"float32 {LARGEST_ERRORS['float32']:.1e} (abs / max(1, |ref|max)); "
            f"vs finite differences: {LARGEST_ERRORS['numerical']:.1e}")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids hand-offs that dominate on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_autograd():
    """Our framework must work with autograd off; a reference switches it back on locally."""
    with torch.set_grad_enabled(False):
        yield
