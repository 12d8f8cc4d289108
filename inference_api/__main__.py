"""``python -m inference_api``."""

from __future__ import annotations

import sys

from inference_api.cli import main

sys.exit(main())
