"""Browser tests (``pytest -m browser`` or ``pytest tests/browser`` runs them alone)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: loads a page in headless Chromium (skips where none is installed)")
