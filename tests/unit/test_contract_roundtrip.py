"""Property: request -> queue message -> (SNS envelope) -> notification keeps id, runtime and context."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contract import Notification, TaskType, parse_queue_body, parse_request, to_queue_message

ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
runtimes = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40)
contexts: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(task_id=ids, runtime=runtimes, context=contexts, enveloped=st.booleans(), prompt=st.text(max_size=200))
def test_roundtrip_keeps_identity(task_id: str, runtime: str, context: Any, enveloped: bool, prompt: str) -> None:
    body = {
        "task": {
            "metadata": {"id": task_id, "runtime": runtime, "tasktype": "text-to-image", "context": context},
            "content": {"prompt": prompt, "steps": 4},
        }
    }
    request = parse_request(json.dumps(body), runtimes={runtime})
    message = to_queue_message(request)
    wire = message.model_dump_json()
    if enveloped:
        wire = json.dumps({"Type": "Notification", "Message": wire})
    received = parse_queue_body(wire)
    assert (received.id, received.runtime, received.context) == (task_id, runtime, context)
    assert received.tasktype is TaskType.TEXT_TO_IMAGE
    assert received.fingerprint == message.fingerprint

    note = Notification(
        id=received.id, runtime=received.runtime, status="completed", result=True, context=received.context
    )
    back = Notification.model_validate_json(note.model_dump_json())
    assert (back.id, back.runtime, back.context) == (task_id, runtime, context)
    assert back.message_attributes()["runtime"]["StringValue"] == runtime


@settings(max_examples=100, deadline=None)
@given(context=contexts)
def test_fingerprint_tells_bodies_apart(context: Any) -> None:
    def req(prompt: str) -> Any:
        return parse_request(
            {
                "task": {
                    "metadata": {"id": "x", "runtime": "r", "tasktype": "text-to-image", "context": context},
                    "content": {"prompt": prompt},
                }
            }
        )

    a, b, a2 = req("one"), req("two"), req("one")
    assert to_queue_message(a).fingerprint == to_queue_message(a2).fingerprint
    assert to_queue_message(a).fingerprint != to_queue_message(b).fingerprint
