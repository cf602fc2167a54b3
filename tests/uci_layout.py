"""Test helper (moved to ``tests/helpers.py``; kept importable)."""
from tests.helpers import write_uci_folder

__all__ = ["write_uci_folder"]
