#!/usr/bin/env python3
"""CDK entry point: reads config.yaml (or $CDK_CONFIG_PATH), validates it, synthesises the stack."""

from __future__ import annotations

import sys

from infra.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
