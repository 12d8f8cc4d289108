"""Export the contract's JSON Schemas: ``python -m contract.schema docs/api``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from contract.messages import QueueMessage
from contract.notification import Notification
from contract.request import TaskRequest
from contract.status import StatusRecord

SCHEMAS: dict[str, type[Any]] = {
    "request.schema.json": TaskRequest,
    "queue-message.schema.json": QueueMessage,
    "status.schema.json": StatusRecord,
    "notification.schema.json": Notification,
}


def render_all() -> dict[str, str]:
    return {
        name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n" for name, model in SCHEMAS.items()
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/api")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
