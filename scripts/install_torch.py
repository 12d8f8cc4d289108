"""Install the pinned torch into the running interpreter's environment.

On Linux without an NVIDIA GPU the CPU build comes from PyTorch's CPU wheel index: the plain PyPI Linux
wheel pulls gigabytes of CUDA libraries that such a machine never uses. When that index cannot be reached
(machines that see only PyPI and its mirrors), pip falls back to the default index, with a notice.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


def wants_cpu_build(system: str, nvidia: bool) -> bool:
    return system == "Linux" and not nvidia


def install_commands(system: str, nvidia: bool) -> list[list[str]]:
    """The pip commands to try in order; the first that succeeds wins."""
    pip = [sys.executable, "-m", "pip", "install", "-q", TORCH]
    if not wants_cpu_build(system, nvidia):
        return [pip]
    # Short timeout, one retry: an unreachable index must not stall the set-up for minutes.
    return [[*pip, "--index-url", CPU_INDEX, "--timeout", "10", "--retries", "1"], pip]


def main() -> int:
    commands = install_commands(platform.system(), has_nvidia_gpu())
    for attempt, command in enumerate(commands):
        if subprocess.run(command, check=False).returncode == 0:
            return 0
        if attempt + 1 < len(commands):
            print(f"{CPU_INDEX} not reachable: installing {TORCH} from the default index", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
