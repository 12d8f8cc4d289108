"""Draw the README's toy-world picture: one seed per prompt, side by side, each picture enlarged 4x.

    python scripts/toy_world_picture.py .local-stack/toy-model/toy-world docs/toy-world.png

The model folder is the one ``build-toy-model`` writes (``make demo`` caches it in ``.local-stack/toy-model``);
pictures are sampled as the runtime samples them by default (A1111's "Euler", the model's own size, steps
and guidance), with the captions' words only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PROMPTS = (
    "a red circle on the left, on a white background",
    "a blue square on the right, on a white background",
    "a yellow star in the centre, on a black background",
    "a green triangle on the top, on a white background",
    "a red circle on the left, a blue square on the right, on a white background",
    "a purple square in the centre, on a yellow background",
    "an orange circle on the bottom, on a blue background",
    "a white star on the left, a red triangle on the right, on a blue background",
)
ENLARGE = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the toy-world model's diffusers folder")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args()

    from PIL import Image

    from inference_api.toy import ToySampler

    try:
        sampler = ToySampler.load(args.model)
    except ValueError as exc:
        parser.error(str(exc))
    side = sampler.defaults.width * ENLARGE
    sheet = Image.new("RGB", (side * len(PROMPTS) + 4 * (len(PROMPTS) - 1), side), "white")
    for n, prompt in enumerate(PROMPTS):
        image = sampler.draw(prompt, n)
        sheet.paste(image.resize((side, side), Image.Resampling.NEAREST), (n * (side + 4), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
