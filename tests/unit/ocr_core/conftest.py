"""Shared fixtures for the ocr_core tests."""
from __future__ import annotations

import pytest

from ocr_core import Predictor


@pytest.fixture(scope="session")
def predictor() -> Predictor:
    """The shipped weights as the product loads them (on a CPU with VNNI: crnn-int8.pt, its first
    reading in int8), loaded once for every test that reads with them; the predictor keeps no
    state between reads."""
    return Predictor.load()


@pytest.fixture(scope="session")
def fp32_predictor() -> Predictor:
    """The shipped fp32 weights (crnn.pt) read in fp32: what the tests of the pipeline's
    mechanisms compare with the eager torch module, or were built on."""
    return Predictor.load(precision="fp32")


@pytest.fixture(scope="session")
def int8_predictor() -> Predictor:
    """The shipped int8 weights (crnn-int8.pt) read in int8, whatever the CPU (what `auto` loads on
    a CPU with VNNI)."""
    from ocr_core.predictor import DEFAULT_INT8_WEIGHTS

    return Predictor.load(DEFAULT_INT8_WEIGHTS, precision="int8")
