def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: builds the whole book or runs a browser; deselect with -m 'not slow'")
