"""Algorithms × tasks × seeds on one machine or a Ray cluster, resumable, aggregated with rliable.

    python tools/benchmark.py --suite conf/suites/cpu_small.yaml --out bench/cpu_small --workers 2

See ``python tools/benchmark.py --help`` and the README's "Benchmarks" section.
"""

from __future__ import annotations

import sys

from s2ac_lit.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
