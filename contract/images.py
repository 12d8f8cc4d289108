"""Where image inputs live inside a task's content: one place for the contract and the agent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from contract.tasks import TaskType

Path = tuple[str | int, ...]

# Keys holding images inside AUTOMATIC1111 extension arguments (ControlNet and friends).
_SCRIPT_IMAGE_KEYS = frozenset({"image", "input_image", "mask", "mask_image"})


def iter_image_fields(tasktype: TaskType, content: Any) -> Iterator[tuple[Path, Any]]:
    """Yield (path, value) for every field of ``content`` that carries an image input."""
    if not isinstance(content, dict):
        return
    if tasktype is TaskType.PIPELINE:
        for node_id, node in content.items():
            # A tuple, not a set: class_type is client data and may be unhashable (a list, an object).
            if isinstance(node, dict) and node.get("class_type") in ("LoadImage", "LoadImageMask"):
                inputs = node.get("inputs")
                if isinstance(inputs, dict) and _looks_like_ref(inputs.get("image")):
                    yield (node_id, "inputs", "image"), inputs["image"]
        return
    for key in ("init_images",):
        values = content.get(key)
        if isinstance(values, list):
            for i, v in enumerate(values):
                yield (key, i), v
    for key in ("mask", "image"):
        if key in content and content[key] is not None:
            yield (key,), content[key]
    image_list = content.get("imageList")
    if isinstance(image_list, list):
        for i, item in enumerate(image_list):
            if isinstance(item, dict) and "data" in item:
                yield ("imageList", i, "data"), item["data"]
    scripts = content.get("alwayson_scripts")
    if isinstance(scripts, dict):
        for name, script in scripts.items():
            args = script.get("args") if isinstance(script, dict) else None
            if isinstance(args, list):
                for i, arg in enumerate(args):
                    if isinstance(arg, dict):
                        for k in sorted(_SCRIPT_IMAGE_KEYS & arg.keys()):
                            if isinstance(arg[k], str) and arg[k]:
                                yield ("alwayson_scripts", name, "args", i, k), arg[k]


def _looks_like_ref(value: Any) -> bool:
    # A ComfyUI LoadImage normally names a file already on the server; only URIs need resolving.
    return isinstance(value, str) and value.lower().startswith(("s3://", "https://", "http://", "file://"))


def set_at(content: Any, path: Path, value: Any) -> None:
    """Replace the value at ``path`` in place (used by the agent to inline resolved references)."""
    target = content
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
