"""``python -m local_stack demo`` (what ``make demo`` runs) and ``python -m local_stack up``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from infra.config import ConfigError
from local_stack.models import GENERATED_MODELS
from local_stack.processes import StartError
from local_stack.signals import sigterm_as_interrupt
from local_stack.stack import LocalStack, StackOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("demo", "run a few tasks end to end, then stop"), ("up", "run until Ctrl-C")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, help="config.yaml (default: $CDK_CONFIG_PATH or ./config.yaml)")
        cmd.add_argument(
            "--models", type=Path, help="model directory (default: $MODEL_DIR, else the generated --model)"
        )
        cmd.add_argument(
            "--model",
            choices=GENERATED_MODELS,
            default="toy",
            help="without --models/$MODEL_DIR: toy (default; trained on first use, draws coloured shapes as asked) "
            "or tiny (random weights, built in seconds, draws noise)",
        )
        cmd.add_argument("--verbose", action="store_true", help="echo every component's log on the console")
    demo = sub.choices["demo"]
    demo.add_argument("--outputs", type=Path, default=Path("outputs"), help="where images go (default ./outputs)")
    demo.add_argument("--size", type=int, help="image side in pixels (default: the served model's own)")
    demo.add_argument("--steps", type=int, help="sampling steps (default: the served model's own)")
    sub.choices["up"].add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from local_stack.demo import print_table, run_tasks

    started = time.monotonic()
    print("starting the local stack (moto, API gateway, runtime, queue agent)...", flush=True)
    options = StackOptions(
        config_path=args.config, model_dir=args.models, generated_model=args.model, console=args.verbose
    )
    with LocalStack(options) as stack:
        print(f"up in {time.monotonic() - started:.1f}s; API {stack.api_url}; logs in {stack.log_path}", flush=True)
        for name in stack.skipped:
            print(f"note: runtime {name!r} (comfyui) is not run locally; its queue exists but nothing drains it")
        print("submitting 4 tasks through the HTTP API and waiting for their notifications...", flush=True)
        outcomes = run_tasks(stack, args.outputs, side=args.size, steps=args.steps)
        print()
        print_table(outcomes, sys.stdout)
        print()
        if stack.tiny_model:
            print(
                "(the tiny test model has random weights, so the generated images are coloured noise; "
                "set MODEL_DIR to a folder of real models for real pictures)"
            )
        print("stopping...", flush=True)
    failed = [o for o in outcomes if o.status != "completed"]
    print(
        f"done in {time.monotonic() - started:.1f}s: {len(outcomes) - len(failed)}/{len(outcomes)} completed; "
        f"images in {args.outputs.resolve()}"
    )
    return 1 if failed else 0


def _up(args: argparse.Namespace) -> int:
    from local_stack.local_up import local_up

    return local_up(
        config=args.config,
        models=args.models,
        generated=args.model,
        port=args.port,
        quiet=not args.verbose,
        out=sys.stdout,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return _demo(args) if args.command == "demo" else _up(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"the local stack did not start: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"timed out: {exc}; see {Path('.local-stack/logs/stack.log').resolve()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
