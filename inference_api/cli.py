"""``python -m inference_api serve|build-tiny-model|build-toy-model|build-tiny-lora|build-tiny-embedding|...``.

The ``build-*`` commands write models for tests and the local stack (``build-tiny-controlnet`` and
``build-tiny-motion-module`` too)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from inference_api.app import create_app
    from inference_api.settings import ServerSettings

    _quiet_libraries()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServerSettings(
        models_dir=Path(args.models),
        default_model=args.default_model,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        compile_mode=args.compile_mode,
        fuse_qkv=args.fuse_qkv,
        float8=args.float8,
        sdxl_vae=Path(args.sdxl_vae) if args.sdxl_vae else None,
        channels_last=args.channels_last,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        cache_size=args.cache_size,
        preload=not args.no_preload,
        warmup=args.warmup,
        warmup_sizes=tuple(args.warmup_size or ()),
        max_queue=args.max_queue,
        retry_after_s=args.retry_after,
        unhealthy_after_failures=args.unhealthy_after,
        png_compress_level=args.png_compress_level,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    if width % 8 or height % 8 or min(width, height) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: sides must be positive multiples of 8")
    return width, height


def _build_tiny(args: argparse.Namespace) -> int:
    from inference_api.tiny import build_tiny_model

    _quiet_libraries()
    if args.no_configs and not args.single_file:
        raise SystemExit("--no-configs needs --single-file")
    path = build_tiny_model(
        Path(args.dir),
        xl=args.xl,
        name=args.name,
        single_file=args.single_file,
        seed=args.seed,
        full_size=args.full_size,
        no_configs=args.no_configs,
    )
    print(path)
    return 0


def _build_toy(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from inference_api.toy import ToyRecipe, build_toy_model

    _quiet_libraries()
    recipe = ToyRecipe(seed=args.seed)
    overrides = {k: v for k in ("scenes", "vae_steps", "unet_steps") if (v := getattr(args, k)) is not None}
    print(build_toy_model(Path(args.dir), replace(recipe, **overrides), name=args.name))
    return 0


def _build_tiny_lora(args: argparse.Namespace) -> int:
    from inference_api.lora import build_tiny_lora

    _quiet_libraries()
    print(build_tiny_lora(Path(args.model_dir), Path(args.out), rank=args.rank, seed=args.seed))
    return 0


def _build_tiny_embedding(args: argparse.Namespace) -> int:
    from inference_api.embeddings import build_tiny_embedding

    print(build_tiny_embedding(Path(args.model_dir), Path(args.out), vectors=args.vectors, seed=args.seed))
    return 0


def _build_tiny_motion_module(args: argparse.Namespace) -> int:
    from inference_api.animatediff import build_tiny_motion_module

    _quiet_libraries()
    print(build_tiny_motion_module(Path(args.model_dir), Path(args.out), seed=args.seed))
    return 0


def _build_tiny_controlnet(args: argparse.Namespace) -> int:
    from inference_api.controlnet import build_tiny_controlnet

    _quiet_libraries()
    print(build_tiny_controlnet(Path(args.model_dir), Path(args.out), seed=args.seed))
    return 0


def _quiet_libraries() -> None:
    # Progress bars and per-load advice from diffusers/transformers would drown the server's own log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inference_api", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the AUTOMATIC1111-compatible API")
    s.add_argument("--models", required=True, help="model directory (diffusers folders, .safetensors files)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--default-model", help="model to load at start (title, file name or folder name)")
    s.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    s.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="default: fp16 on cuda, fp32 on cpu")
    s.add_argument("--compile", action="store_true", help="torch.compile the denoiser (slow first call)")
    s.add_argument("--compile-mode", help='torch.compile mode, e.g. "max-autotune" (with --warmup)')
    s.add_argument("--fuse-qkv", action="store_true", help="fuse attention QKV projections (off until measured)")
    s.add_argument("--float8", action="store_true", help="torchao float8 dynamic quantisation (Hopper+, opt-in)")
    s.add_argument("--sdxl-vae", help="fp16-safe VAE folder used for SDXL in fp16 instead of the fp32 upcast")
    cl = s.add_mutually_exclusive_group()
    cl.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    cl.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    s.add_argument("--max-batch", type=int, default=4, help="images per micro-batched pipeline call")
    s.add_argument(
        "--batch-window-ms",
        type=float,
        default=0.0,
        help="how long an idle server holds a request for companions (0: never; requests that queue while "
        "a batch runs still merge)",
    )
    s.add_argument("--cache-size", type=int, default=2, help="loaded pipelines kept (LRU)")
    s.add_argument(
        "--no-preload",
        action="store_true",
        help="load the default model on first use, not at start (/ready says yes at once: a request would run)",
    )
    s.add_argument(
        "--warmup", action="store_true", help="generate once per warm-up size and batch size before /ready (compile)"
    )
    s.add_argument(
        "--warmup-size",
        type=_size,
        action="append",
        metavar="WxH",
        help="a size bucket to warm up (repeatable; default: the model's native size)",
    )
    s.add_argument("--max-queue", type=int, default=32, help="requests waiting for the worker; past it 503")
    s.add_argument("--retry-after", type=int, default=5, help="seconds in Retry-After of 503 answers")
    s.add_argument("--unhealthy-after", type=int, default=5, help="consecutive failed generations before /health fails")
    s.add_argument("--png-compress-level", type=int, default=1, choices=range(10), help="1 fast (default), 9 small")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    s.add_argument("--log-level", default=os.environ.get("LOGLEVEL", "info").lower())
    s.set_defaults(func=_serve)

    b = sub.add_parser("build-tiny-model", help="write a tiny random pipeline (real architecture) for tests")
    b.add_argument("dir")
    b.add_argument("--xl", action="store_true", help="SDXL architecture (two text encoders)")
    b.add_argument("--name")
    b.add_argument("--single-file", action="store_true", help="one original-layout .safetensors + configs/NAME/")
    b.add_argument(
        "--full-size",
        action="store_true",
        help="the published SD 1.5 dimensions (with --xl: SDXL 1.0), random fp16 weights (about 2 GB; 7 GB for XL)",
    )
    b.add_argument("--no-configs", action="store_true", help="with --single-file: the checkpoint alone, as downloaded")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_build_tiny)

    toy = sub.add_parser(
        "build-toy-model",
        help="train the toy-world model (coloured shapes, 32x32, a few minutes of CPU) into DIR/toy-world",
    )
    toy.add_argument("dir")
    toy.add_argument("--name", default="toy-world")
    toy.add_argument("--seed", type=int, default=0)
    # Shorter training, for tests of the build itself (the default recipe is what the stack serves).
    for flag in ("--scenes", "--vae-steps", "--unet-steps"):
        toy.add_argument(flag, type=int, help=argparse.SUPPRESS)
    toy.set_defaults(func=_build_toy)

    lo = _addon_builder(
        sub,
        "build-tiny-lora",
        "write a random kohya-format LoRA for a (tiny) model folder",
        "the diffusers folder the LoRA is for",
        "the .safetensors file to write (e.g. MODELS/Lora/NAME.safetensors)",
        _build_tiny_lora,
    )
    lo.add_argument("--rank", type=int, default=4)

    em = _addon_builder(
        sub,
        "build-tiny-embedding",
        "write a random textual-inversion embedding for a model folder",
        "the diffusers folder the embedding is for",
        "the .safetensors file to write (e.g. MODELS/embeddings/NAME.safetensors)",
        _build_tiny_embedding,
    )
    em.add_argument("--vectors", type=int, default=2)

    _addon_builder(
        sub,
        "build-tiny-controlnet",
        "write a random ControlNet folder for a (tiny) model folder",
        "the diffusers folder the ControlNet is for",
        "the folder to write (e.g. MODELS/ControlNet/NAME)",
        _build_tiny_controlnet,
    )
    _addon_builder(
        sub,
        "build-tiny-motion-module",
        "write a random AnimateDiff motion module (MotionAdapter folder) for a model",
        "the SD 1.x diffusers folder the motion module is for",
        "the folder to write (e.g. MODELS/AnimateDiff/NAME)",
        _build_tiny_motion_module,
    )
    return p


def _addon_builder(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    model_help: str,
    out_help: str,
    func: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """A ``build-tiny-*`` command that writes a random add-on for a model folder: ``MODEL_DIR OUT [--seed N]``."""
    command = sub.add_parser(name, help=help)
    command.add_argument("model_dir", help=model_help)
    command.add_argument("out", help=out_help)
    command.add_argument("--seed", type=int, default=0)
    command.set_defaults(func=func)
    return command


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
