"""``python -m local_stack demo``: placeholder until the local stack lands."""

from __future__ import annotations

import sys


def main() -> int:
    print("make demo: not yet - the local stack is being built (see README 'What works today').", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
