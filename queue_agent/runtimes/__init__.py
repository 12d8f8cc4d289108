"""Runtime adapters, one module each behind one interface (``Runtime``)."""

from __future__ import annotations

from queue_agent.runtimes.a1111 import A1111Runtime
from queue_agent.runtimes.base import Runtime
from queue_agent.runtimes.comfyui import ComfyFiles, ComfyUIRuntime, node_allowlist
from queue_agent.settings import RuntimeType, Settings


def build_runtime(settings: Settings) -> Runtime:
    if settings.runtime_type is RuntimeType.COMFYUI:
        return ComfyUIRuntime(
            settings.api_base_url,
            allowed_nodes=node_allowlist(settings.comfyui_allowed_nodes),
            files=ComfyFiles.of(settings.comfyui_input_dir, settings.comfyui_output_dir),
        )
    return A1111Runtime(
        settings.api_base_url,
        dynamic_model=settings.dynamic_sd_model,
        ours=settings.runtime_type is RuntimeType.DIFFUSERS,
    )


__all__ = ["A1111Runtime", "ComfyUIRuntime", "Runtime", "build_runtime"]
