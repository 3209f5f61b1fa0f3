"""The benchmark harness must not rot: its writers work on tiny synthetic results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import loadgen, report, write_api

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_result(name: str = "tiny", passed: bool | None = True) -> report.BenchResult:
    return report.BenchResult(
        name=name,
        title=f"Tiny {name}",
        target="≥ 10 things/s",
        measured="12 things/s",
        passed=passed,
        machine=report.machine_info(),
        params={"runs": 1},
        table=report.Table(["step", "achieved/s", "p99 ms"], [["a", 12.0, 1.5], ["b", 20.25, None]]),
        plot=report.Plot(
            title="tiny",
            x_label="x",
            y_label="ms",
            series=[report.Series("p99", [1.0, 2.0], [1.5, None])],
            y_log=True,
            hlines=[(10.0, "target")],
            vlines=[(1.5, "target")],
        ),
        notes=["a note"],
        data={"points": [1, 2, 3]},
    )


def test_write_result_writes_json_markdown_png_and_readme(tmp_path: Path) -> None:
    paths = report.write_result(tiny_result(), tmp_path)

    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["schema"] == report.SCHEMA
    assert data["name"] == "tiny" and data["passed"] is True
    assert data["table"]["rows"][1] == ["b", 20.25, None]
    assert {"date", "nproc", "python"} <= data["machine"].keys()

    md = paths["md"].read_text(encoding="utf-8")
    assert md.startswith("# Tiny tiny")
    assert "| step | achieved/s | p99 ms |" in md
    assert "| b | 20.2 | — |" in md or "| b | 20.3 | — |" in md
    assert "![Tiny tiny](tiny.png)" in md
    assert "**Verdict:** PASS" in md

    png = paths["png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000

    readme = paths["readme"].read_text(encoding="utf-8")
    assert "| [tiny](tiny.md) | ≥ 10 things/s | 12 things/s | PASS |" in readme
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_readme_lists_every_benchmark_once(tmp_path: Path) -> None:
    report.write_result(tiny_result("alpha", passed=False), tmp_path)
    report.write_result(tiny_result("beta", passed=None), tmp_path)
    report.write_result(tiny_result("alpha", passed=True), tmp_path)
    (tmp_path / "not-a-result.json").write_text("[1, 2]")

    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert readme.count("| [alpha](alpha.md)") == 1
    assert "| [alpha](alpha.md) | ≥ 10 things/s | 12 things/s | PASS |" in readme
    assert "| [beta](beta.md) | ≥ 10 things/s | 12 things/s | n/a |" in readme


def test_result_without_plot_has_no_png(tmp_path: Path) -> None:
    result = tiny_result("noplot")
    result.plot = None
    paths = report.write_result(result, tmp_path)
    assert "png" not in paths and not (tmp_path / "noplot.png").exists()
    assert "![" not in paths["md"].read_text(encoding="utf-8")


def test_median_and_percentile() -> None:
    assert report.median([3.0, None, 1.0, 2.0]) == 2.0
    assert report.median([4.0, 1.0]) == 2.5
    assert report.median([None]) is None
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile([], 99) is None


def _fake_step(achieved: float, p99: float, errors: int = 0) -> dict[str, object]:
    return {
        "achieved_rps": achieved,
        "p50_ms": p99 / 3,
        "p90_ms": p99 / 2,
        "p99_ms": p99,
        "errors": errors,
        "service_p50_ms": p99 / 4,
        "service_p99_ms": p99,
        "loadgen_cpu": 0.2,
        "server_cpu": 0.9,
        "server_cpu_ms_per_write": 0.7,
    }


def test_write_api_result_from_synthetic_runs(tmp_path: Path) -> None:
    steps = (write_api.Step("open 100/s", "open", 100.0), write_api.Step("closed 32 conns", "closed"))
    plan = write_api.Plan(runs=3, warmup_s=0.1, duration_s=0.1, engines={"raw": steps})
    raw = {
        "raw": {
            "open 100/s": [_fake_step(100.0, 4.0), _fake_step(99.0, 30.0), _fake_step(100.0, 5.0)],
            "closed 32 conns": [{**_fake_step(1800.0, 40.0), "error_kinds": {"http_500": 2}}] * 3,
        }
    }
    result = write_api.build_result(plan, report.machine_info(), raw, elapsed=1.0, quick=True, server_log="boom")

    assert result.passed is False  # 100/s within the SLO is below the 1,500/s target
    assert result.data["verdicts"]["raw"]["max_rps_within_slo"] == 100.0
    open_step = result.data["steps"]["raw"][0]
    assert open_step["p99_ms"] == 5.0 and open_step["p99_ms_max"] == 30.0  # median of 3 runs, and spread
    assert any("6 requests with 5xx" in note for note in result.notes)
    paths = report.write_result(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["name"] == "write_api" and data["data"]["server_log_tail"] == "boom"
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(("achieved", "credited", "passed"), [(1499.8, 1500.0, True), (1450.0, 1450.0, False)])
def test_write_api_credits_an_offer_carried_in_full(achieved: float, credited: float, passed: bool) -> None:
    steps = (write_api.Step("open 1500/s", "open", 1500.0), write_api.Step("closed 32 conns", "closed"))
    plan = write_api.Plan(runs=1, warmup_s=0.1, duration_s=0.1, engines={"raw": steps})
    raw = {"raw": {"open 1500/s": [_fake_step(achieved, 6.0)], "closed 32 conns": [_fake_step(3000.0, 15.0)]}}
    result = write_api.build_result(plan, report.machine_info(), raw, elapsed=1.0, quick=True, server_log="")
    assert result.data["verdicts"]["raw"]["max_rps_within_slo"] == credited
    assert result.passed is passed


def test_loadgen_rejects_unbounded_arguments() -> None:
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--url", "http://127.0.0.1:1", "--token", "t", "--duration", "1000"])
    with pytest.raises(SystemExit):
        loadgen.parse_args(["--url", "http://127.0.0.1:1", "--token", "t", "--rate", "0"])
    args = loadgen.parse_args(["--url", "http://127.0.0.1:1", "--token", "t", "--mode", "closed"])
    assert args.mode == "closed" and args.connections == 32
