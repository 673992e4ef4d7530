"""Shared helpers of the trainer's tests (``parquet_helpers.py``), importable by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
