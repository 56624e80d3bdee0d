"""The typed public API: mypy sees the original signature through @cached (PEP 612)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys


def test_decorated_functions_keep_their_signature_for_mypy():
    # mypy is in the test extra: a missing one is a broken install, not a reason to skip.
    assert importlib.util.find_spec("mypy") is not None, "mypy is not installed: pip install -e '.[test]'"
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
