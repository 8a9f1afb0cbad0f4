"""Shared fixtures for the ocr_core tests."""
from __future__ import annotations

import pytest

from ocr_core import Predictor


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    """The shipped weights, loaded (and traced) once for every test that reads with them; the
    predictor keeps no state between reads."""
    return Predictor.load()
