"""The code base stays ruff-clean and strictly typed, and the public API stays explicit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import qxt_pandas

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--quiet", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean():
    """``mypy --strict`` over qxt_pandas/ (the config is in pyproject.toml: pandas-stubs; pyarrow as Any)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_api_is_exported_and_typed():
    for name in qxt_pandas.__all__:
        assert hasattr(qxt_pandas, name), name
    assert (ROOT / "qxt_pandas" / "py.typed").exists()
