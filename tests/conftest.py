"""Shared pytest configuration: the ``slow`` marker and fixtures used by several test files."""
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: builds the whole book or runs a browser; deselect with -m 'not slow'")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread hand-offs that dominate on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_autograd():
    """Our framework must work with autograd off; a reference switches it back on locally."""
    with torch.set_grad_enabled(False):
        yield
