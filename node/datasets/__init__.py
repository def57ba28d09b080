"""Bundled data: UCI Bank Marketing and UCI Adult (see README.md beside this file)."""

from pathlib import Path

__all__ = ["ADULT_DATA", "DEFAULT_DATA"]

DEFAULT_DATA = Path(__file__).resolve().parent / "bank-full.csv.gz"
ADULT_DATA = Path(__file__).resolve().parent / "adult.csv.gz"
