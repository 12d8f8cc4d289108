"""One handler serving every route (``task_api.app.handler``): the local gateway and single-function deploys.

Per-route functions (least privilege per function) use ``task_api.submit/status/cancel.handler``.
"""

from __future__ import annotations

from task_api import cancel, status, submit
from task_api.http import build_handler

handler = build_handler(submit.router, status.router, cancel.router)
