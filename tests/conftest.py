"""pytest's entry for the shared fixtures; the helpers themselves live in
granary_testing.py so that test files import them by a name no other
conftest.py shadows."""
from granary_testing import admin, daemon  # noqa: F401 - fixtures, found by name
