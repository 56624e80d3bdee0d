"""Freshness: zero stale reads after a commit (issue 15). The harness lives in
``benchmarks/race/``; see :mod:`benchmarks.race.harness` for the options::

    python benchmarks/race.py            # every scenario, 10,000 reads each
    python benchmarks/race.py --short    # CI's form, 1,500 reads each
    python benchmarks/race.py --scenario replica --scenario eviction
    python benchmarks/race.py --self-test
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This file's folder is sys.path[0] when run as a script: the package must come from ROOT.
sys.path[:1] = [str(ROOT)]

from benchmarks.race.harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
