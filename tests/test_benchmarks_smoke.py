"""Smoke test of the benchmark harness at tiny sizes, so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.receiver_load import main as receiver_load_main
from benchmarks.suites import Sizes

TINY = Sizes(
    reps=1,
    hot_calls=200,
    burst_events=400,
    slow_burst_events=200,
    liveness_rates=(400,),
    liveness_s=0.25,
    otlp_liveness=False,
    memory_chunk_events=2_000,
    memory_chunks=1,
    scaling_events=400,
    scaling_executions=(1, 10),
    scaling_threads=(1, 2),
    scaling_rate=400,
    scaling_liveness_s=0.25,
)


@pytest.mark.slow
def test_every_section_runs_against_real_receivers_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m benchmarks` runs all sections end to end and prints one table of results."""
    raw_path = tmp_path / "raw.json"

    assert main(["--json", str(raw_path)], sizes=TINY) == 0

    table = capsys.readouterr().out
    for heading in ("1. hot path, plain", "1. hot path, attrs", "2. delivery throughput"):
        assert heading in table
    for heading in ("3. liveness", "4. memory", "5. scaling"):
        assert heading in table
    assert "never arrived" not in table  # every probed span's started event was stored
    raw = json.loads(raw_path.read_text())
    sections = {"hot_path_plain", "hot_path_attrs", "throughput", "liveness", "memory", "scaling"}
    assert sections <= raw.keys()
    burst = raw["throughput"]["stigmer"][0]
    assert burst["received"] == burst["produced"] == 402  # 200 tasks + 1 workflow, 2 events each
    naive = raw["throughput"]["naive"][0]
    assert naive["received"] == naive["produced"] == 200
    raw_client = raw["throughput"]["raw"][0]
    assert raw_client["received"] == raw_client["produced"] == 200
    assert "until the last is stored" in table  # the drain is charged to the hot path
    assert "per task call" in table
    process = raw["throughput"]["process"][0]  # the process sender delivers the same burst
    assert process["received"] == process["produced"] == 402
    assert process["child_cpu_ns"] > 0
    assert "process sender against the in-process sender" in table
    assert "process sender task_started at 400 events/s" in table
    for pending in raw["pending_memory"].values():  # records waiting for a sender process
        assert pending["records"] >= 2 * pending["spans"]
        assert pending["dropped"] == 0
    for held in raw["span_memory"].values():  # records waiting behind a stuck sender
        assert held["spans"] == TINY.memory_chunk_events // 4
        assert held["events"] >= 2 * held["spans"]
        assert held["dropped"] == 0


def test_unknown_section_is_refused_with_the_valid_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown --only section exits 2 and lists the valid ones."""
    assert main(["--only", "nope"], sizes=TINY) == 2
    assert "hotpath" in capsys.readouterr().err


@pytest.mark.slow
def test_receiver_load_measures_both_sides_against_real_receivers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m benchmarks.receiver_load` stores every event of each run; both tables print."""
    argv = ["--events", "200", "--reps", "1", "--ceiling-events", "2000", "--feeders", "1"]

    assert receiver_load_main(argv) == 0

    out = capsys.readouterr().out
    assert "Unary-only receiver" in out
    assert "batch ceiling" in out
    starts = ("| stigmer@", "| naive -> ", "| raw -> ", "| receiver@")
    rows = [line for line in out.splitlines() if line.startswith(starts)]
    assert len(rows) == 4  # ours, naive, raw; the ceiling's receiver
    for row in rows:
        assert row.rstrip(" |").endswith("| 0")  # nothing lost
