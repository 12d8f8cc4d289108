"""The toy-world model: build time (at its fixed thread count, as the stack builds it), per-image time at its
defaults with the runtime's default sampler, how often a picture shows the prompt's colour and side (24 seeded
one-shape prompts), and ``make demo``'s entry with the model already cached."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = 24


def _semantics(folder: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from inference_api.toy import ToySampler
    from inference_api.toy_scenes import evaluation_scenes, read_picture

    sampler = ToySampler.load(folder)
    defaults = sampler.defaults
    colour_ok = side_ok = 0
    started = time.perf_counter()
    for n, scene in enumerate(evaluation_scenes(PROMPTS)):
        image = sampler.draw(scene.caption(), n)
        reading = read_picture(torch.from_numpy(np.asarray(image).copy()), scene.background)
        colour_ok += reading.colour == scene.shapes[0].colour
        side_ok += reading.side == scene.shapes[0].position
    per_image = (time.perf_counter() - started) / PROMPTS
    return {
        "seconds_per_image": round(per_image, 3),
        "size": f"{defaults.width}x{defaults.height}",
        "steps": defaults.steps,
        "colour_match": round(colour_ok / PROMPTS, 3),
        "side_match": round(side_ok / PROMPTS, 3),
    }


def _demo_seconds(outputs: Path) -> float:
    """``python -m local_stack demo`` as ``make demo`` runs it, the toy model cached by a first run."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "local_stack", "demo", "--outputs", str(outputs)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'lambda'}"},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"demo failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def run() -> dict[str, Any]:
    from inference_api.toy import ToyRecipe, build_toy_model

    recipe = ToyRecipe()
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu_started = time.perf_counter(), time.process_time()
        folder = build_toy_model(Path(tmp), recipe)
        build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        metrics = {"build_seconds": round(build_seconds, 1), "build_cpu_seconds": round(build_cpu, 1)}
        metrics |= _semantics(folder)
        _demo_seconds(Path(tmp) / "first")  # builds the stack's cached copy when it is missing
        metrics["demo_cached_seconds"] = round(_demo_seconds(Path(tmp) / "second"), 1)
    note = (
        f"default ToyRecipe ({recipe.vae_steps} VAE + {recipe.unet_steps} UNet steps, batch {recipe.batch}, "
        f"{recipe.threads} threads); {PROMPTS} seeded one-shape prompts on white at the model's defaults with the "
        "runtime's default sampler, read by toy_scenes.read_picture; demo: python -m local_stack demo, toy model cached"
    )
    return {"metrics": metrics, "threads": recipe.threads, "cpus": os.cpu_count(), "note": note}
