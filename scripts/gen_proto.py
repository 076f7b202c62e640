"""Regenerate exporter/sources/_pb/ from proto/podresources_v1.proto with grpcio-tools.

Why a script and committed stubs: the runtime image then needs no compiler, and the stubs are
reviewable. `--check` regenerates into a temporary directory and fails if the committed files
differ, which is what the test suite and CI run (tests/sources/test_podresources_stubs.py).

Usage: python scripts/gen_proto.py [--check]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO = "podresources_v1.proto"
OUT_DIR = ROOT / "exporter" / "sources" / "_pb"
GENERATED = ("podresources_v1_pb2.py", "podresources_v1_pb2_grpc.py")
INIT_TEXT = '"""Generated protobuf/gRPC stubs (scripts/gen_proto.py); do not edit."""\n'


def generate(out_dir: Path) -> None:
    """Run protoc from grpcio-tools and make the grpc stub import its sibling relatively."""
    from grpc_tools import protoc  # only needed by developers, not at runtime

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / PROTO),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    grpc_file = out_dir / "podresources_v1_pb2_grpc.py"
    text = grpc_file.read_text()
    # protoc writes an absolute `import podresources_v1_pb2`; the stubs live inside a package.
    text = text.replace("import podresources_v1_pb2 as", "from . import podresources_v1_pb2 as")
    grpc_file.write_text(text)
    (out_dir / "__init__.py").write_text(INIT_TEXT)


def main(argv: list[str] | None = None) -> int:
    """Generate in place, or with --check compare a fresh generation with the committed one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if regeneration changes files")
    args = parser.parse_args(argv)
    if not args.check:
        generate(OUT_DIR)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = [
            name
            for name in ("__init__.py", *GENERATED)
            if not (OUT_DIR / name).is_file()
            or (OUT_DIR / name).read_bytes() != (fresh / name).read_bytes()
        ]
    if stale:
        print(f"stale generated stubs: {', '.join(stale)}; run python scripts/gen_proto.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
