"""The package's Powertools Logger and Tracer: one of each, shared by every handler module.

The Tracer is a no-op outside Lambda and whenever POWERTOOLS_TRACE_DISABLED is true (tests, local stack).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer

SERVICE = "task-api"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
