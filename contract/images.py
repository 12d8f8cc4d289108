"""Where image inputs live inside a task's content: one place for the contract and the agent.

Besides the fields AUTOMATIC1111 defines (``init_images``, ``mask``, ``image``, ``imageList``), images hide
in extension arguments (ControlNet units, positional ``script_args``) at any depth and in any shape, and in
ComfyUI ``LoadImage`` nodes. Runtimes fetch URLs they find there themselves, so every string that looks
like a URL, wherever it sits (free text aside), is yielded here too: the contract vets it (``https://``
to a public host or ``s3://`` only) and the agent resolves it, so a runtime never sees an address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from contract.tasks import TaskType

Path = tuple[str | int, ...]

# Keys holding images inside AUTOMATIC1111 extension arguments (ControlNet and friends), at any depth.
_SCRIPT_IMAGE_KEYS = frozenset({"image", "input_image", "mask", "mask_image", "init_image", "control_image"})
# Free text a runtime reads as words, never fetches: a prompt may be a URL and still be a prompt.
TEXT_KEYS = frozenset(
    {"prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt", "text", "text_g", "text_l", "styles"}
)
# Top-level A1111 fields read by the loop below, in this order.
_TOP_LEVEL_IMAGES = ("init_images", "mask", "image", "imageList")
_URL_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]{0,31}:(//|\\\\)")
LOAD_IMAGE_NODES = ("LoadImage", "LoadImageMask")


def looks_like_url(value: Any) -> bool:
    """``scheme://…`` (any scheme, also ``scheme:\\\\``): something a runtime might try to open."""
    return isinstance(value, str) and _URL_RE.match(value[:48]) is not None


def iter_image_fields(tasktype: TaskType, content: Any) -> Iterator[tuple[Path, Any]]:
    """Yield (path, value) for every field of ``content`` that carries an image input or an address."""
    if not isinstance(content, dict):
        return
    if tasktype is TaskType.PIPELINE:
        yield from _workflow_fields(content)
        return
    values = content.get("init_images")
    if isinstance(values, list):
        for i, v in enumerate(values):
            yield ("init_images", i), v
    for key in ("mask", "image"):
        if key in content and content[key] is not None:
            yield (key,), content[key]
    image_list = content.get("imageList")
    if isinstance(image_list, list):
        for i, item in enumerate(image_list):
            if isinstance(item, dict) and "data" in item:
                yield ("imageList", i, "data"), item["data"]
            if isinstance(item, dict):
                yield from _nested(item, ("imageList", i), skip={"data"}, image_keys=False)
    for key, value in content.items():
        if key in _TOP_LEVEL_IMAGES or key in TEXT_KEYS:
            continue
        # Extension arguments hold images under well-known keys; anywhere else only addresses matter.
        in_scripts = key in ("alwayson_scripts", "script_args")
        yield from _nested(value, (key,), image_keys=in_scripts)


def _workflow_fields(content: dict[Any, Any]) -> Iterator[tuple[Path, Any]]:
    for node_id, node in content.items():
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            continue
        # A tuple, not a set: class_type is client data and may be unhashable (a list, an object).
        load = node.get("class_type") in LOAD_IMAGE_NODES
        for name, value in inputs.items():
            if load and name == "image" and _looks_like_ref(value):
                yield (node_id, "inputs", "image"), value
            elif name not in TEXT_KEYS:
                yield from _nested(value, (node_id, "inputs", name), image_keys=False)


def _nested(
    value: Any, path: Path, *, image_keys: bool, skip: frozenset[str] | set[str] = frozenset()
) -> Iterator[tuple[Path, Any]]:
    """Image fields below ``value``, iteratively (client JSON may nest deeper than Python's recursion)."""
    stack: list[tuple[Path, Any, bool]] = [(path, value, False)]
    while stack:
        here, item, under_image_key = stack.pop()
        if isinstance(item, str):
            if looks_like_url(item) or (under_image_key and item):
                yield here, item
        elif isinstance(item, dict):
            children = [
                ((*here, k), v, image_keys and k in _SCRIPT_IMAGE_KEYS)
                for k, v in item.items()
                if not (here == path and k in skip) and k not in TEXT_KEYS
            ]
            stack.extend(reversed(children))
        elif isinstance(item, list):
            # A list under an image key is a list of images (or of {image, mask} dicts).
            stack.extend(reversed([((*here, i), v, under_image_key) for i, v in enumerate(item)]))


def _looks_like_ref(value: Any) -> bool:
    # A ComfyUI LoadImage normally names a file already on the server; only URIs need resolving.
    return isinstance(value, str) and value.lower().startswith(("s3://", "https://", "http://", "file://"))


def count_image_inputs(tasktype: TaskType, content: Any) -> int:
    """Every image the task hands the runtime: the fields above plus ComfyUI LoadImage nodes naming a file."""
    count = sum(1 for _ in iter_image_fields(tasktype, content))
    if tasktype is TaskType.PIPELINE and isinstance(content, dict):
        for node in content.values():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if (
                isinstance(node, dict)
                and node.get("class_type") in LOAD_IMAGE_NODES
                and isinstance(inputs, dict)
                and not _looks_like_ref(inputs.get("image"))
            ):
                count += 1
    return count


def set_at(content: Any, path: Path, value: Any) -> None:
    """Replace the value at ``path`` in place (used by the agent to inline resolved references)."""
    target = content
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
