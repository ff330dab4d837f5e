"""Regenerate the committed protobuf and gRPC stubs under ``otel_stigmer/_proto``.

Run ``python scripts/gen_proto.py`` after changing anything under ``protos/``;
``python scripts/gen_proto.py --check`` exits non-zero when the committed stubs
are stale (CI runs it). protoc imports generated modules by their proto path
(``ai.stigmer...``); the script rewrites those imports so that they resolve
inside the installed package.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT / "otel_stigmer" / "_proto"
PACKAGE = "otel_stigmer._proto"
_IMPORT = re.compile(r"^(from|import) ai\.stigmer", re.MULTILINE)


def _generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    bin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)  # noqa: S603 - fixed argv, no shell
    for path in out.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(rf"\1 {PACKAGE}.ai.stigmer", text))
    for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (out / "__init__.py").write_text('"""Generated protobuf and gRPC stubs; do not edit."""\n')


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the stubs are stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        _generate(fresh)
        if args.check:
            want, have = _snapshot(fresh), _snapshot(OUT_ROOT)
            if want == have:
                print("generated stubs are current")
                return 0
            for name in sorted(set(want) | set(have)):
                diff = difflib.unified_diff(
                    have.get(name, "").splitlines(),
                    want.get(name, "").splitlines(),
                    f"committed/{name}",
                    f"generated/{name}",
                    lineterm="",
                )
                print("\n".join(diff))
            print("stale stubs: run `python scripts/gen_proto.py` and commit the result")
            return 1
        shutil.rmtree(OUT_ROOT, ignore_errors=True)
        shutil.copytree(fresh, OUT_ROOT)
    print(f"wrote stubs to {OUT_ROOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
