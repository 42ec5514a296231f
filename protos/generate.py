"""Regenerate the Python code for protos/edgefleet/v1/*.proto (messages, gRPC stubs, type stubs).

Run: python protos/generate.py            (writes next to the .proto files)
     python protos/generate.py --out DIR  (writes elsewhere: the staleness test compares the two)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = sorted((HERE / "edgefleet" / "v1").glob("*.proto"))
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{HERE}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(HERE)) for p in SOURCES],
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return sorted(p for p in (out / "edgefleet" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    ns = parser.parse_args(argv)
    files = generate(ns.out)
    print(f"generated {len(files)} files under {ns.out / 'edgefleet' / 'v1'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
