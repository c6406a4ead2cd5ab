"""Helpers shared by the tests. Test modules import these (and conftest fixtures), never each other
(tests/test_layout.py checks it)."""
