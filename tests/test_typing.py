"""The typed public API: mypy sees the original signature through @cached (PEP 612)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def test_decorated_functions_keep_their_signature_for_mypy():
    if shutil.which("mypy") is None and not os.environ.get("CI"):
        pytest.skip("mypy is not installed (pip install -e .[dev])")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-incremental",
            # Judge the sample only; cachedcall itself is checked with its own config in CI.
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--config-file",
            "/dev/null",
            "tests/typing_sample.py",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
