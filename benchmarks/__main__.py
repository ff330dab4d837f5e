"""``python -m benchmarks [--quick] [--only SECTION,...] [--json FILE]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.report import Row, render
from benchmarks.suites import FULL, QUICK, SECTIONS, Sizes


def machine() -> str:
    """One line describing the machine and the versions that matter."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    versions = []
    for package in ("opentelemetry-sdk", "grpcio", "protobuf"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} ?")
    return (
        f"{os.cpu_count()} CPU ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, " + ", ".join(versions)
    )


def load_average() -> str:
    """The 1-minute load average and the CPU count: how busy the machine was."""
    try:
        with open("/proc/loadavg") as loadavg:
            one_minute = loadavg.read().split()[0]
    except OSError:
        return "unknown"
    return f"{one_minute} on {os.cpu_count()} CPUs"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def revision() -> str:
    """The commit measured, marked ``+changes`` when the library has uncommitted edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--", "otel_stigmer")
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+changes" if dirty else "")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the otel-stigmer pipeline against the standard OTel pipeline.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    return parser


def run(sizes: Sizes, sections: list[str]) -> tuple[list[Row], dict[str, Any]]:
    """Run ``sections`` with ``sizes``; return the rows and the raw results."""
    rows: list[Row] = []
    raw: dict[str, Any] = {"sizes": sizes.__dict__, "machine": machine(), "revision": revision()}
    for name in sections:
        began = time.monotonic()
        rows.extend(SECTIONS[name](sizes, raw))
        print(f"[{name} done in {time.monotonic() - began:.0f} s]", file=sys.stderr, flush=True)
    return rows, raw


def main(argv: list[str] | None = None, sizes: Sizes | None = None) -> int:
    """Run the benchmarks and print the table; ``sizes`` overrides ``--quick``."""
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    chosen = sizes or (QUICK if args.quick else FULL)
    began = time.monotonic()
    load_before = load_average()
    rows, raw = run(replace(chosen), sections)
    elapsed = time.monotonic() - began
    raw["elapsed_s"] = elapsed
    raw["load_average"] = [load_before, load_average()]
    print(f"Machine: {raw['machine']}")
    print(f"Revision: {raw['revision']}")
    print(f"Load average (1 min) before / after: {load_before} / {load_average()}")
    print(f"Mode: {'quick' if args.quick else 'full'}; took {elapsed:.0f} s\n")
    print(render(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
