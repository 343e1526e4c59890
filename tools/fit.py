"""Train S2AC (or SAC, SQL): ``python tools/fit.py --config conf/walker.yaml [key=value ...]``.

See ``python tools/fit.py --help`` and the README for configs, outputs, resume and GPUs.
"""

from __future__ import annotations

import sys

from s2ac_lit.trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
