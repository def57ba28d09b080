"""Bundled data: UCI Bank Marketing (see README.md beside this file)."""

from pathlib import Path

__all__ = ["DEFAULT_DATA"]

DEFAULT_DATA = Path(__file__).resolve().parent / "bank-full.csv.gz"
