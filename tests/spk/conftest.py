# Fixtures for the package tests: the real granary binary (ASan build unless
# told otherwise), a private HOME so the default keyring is the test's own.
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import spk_helpers  # noqa: E402


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    e = dict(os.environ)
    e["HOME"] = str(home)
    e["GRANARY_SCHEMA_DIR"] = spk_helpers.SCHEMA_DIR
    return e


@pytest.fixture
def granary(env):
    return spk_helpers.Granary(env)
