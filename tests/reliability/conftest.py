"""The reliability suite reuses the serving tests' real GOOG book rows and server helpers."""

from tests.serving.conftest import goog_book  # noqa: F401 - a fixture, shared with tests/serving
