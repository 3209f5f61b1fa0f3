"""Shared result writer for every benchmark: NAME.json, NAME.md, NAME.png and the README summary.

A benchmark builds one `BenchResult` and calls `write_result(result, results_dir)`. The README in
the results directory is regenerated from every NAME.json there, so it always lists each
benchmark once, with its latest numbers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = "README.md"
SCHEMA = 1


@dataclass
class Series:
    """One line on a plot."""

    label: str
    x: list[float]
    y: list[float | None]
    style: str = "o-"
    color: str | None = None
    # Optional text next to each point (e.g. the offered load).
    annotations: list[str] | None = None


@dataclass
class Plot:
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    x_log: bool = False
    y_log: bool = False
    # Reference lines, e.g. a latency target: (value, label).
    hlines: list[tuple[float, str]] = field(default_factory=list)
    vlines: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class BenchResult:
    """Everything one benchmark reports; `data` holds its full machine-readable results."""

    name: str
    title: str
    target: str
    measured: str
    passed: bool | None  # None: no target, or not measurable on this machine
    machine: dict[str, Any]
    params: dict[str, Any]
    table: Table
    plot: Plot | None = None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def machine_info() -> dict[str, Any]:
    """Where and when the benchmark ran: CPU count, Python, OS, load, date (UTC), git commit."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
    }
    with contextlib.suppress(AttributeError, OSError):
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    info["load_at_start"] = load_now()
    info["git_commit"] = _git_commit()
    return info


def load_now() -> dict[str, Any]:
    """Other work on the machine: load average and CPU pressure (PSI: % of time tasks waited)."""
    load: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        load["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        values = dict(part.split("=") for part in first[1:])
        load["cpu_pressure_some_avg10"] = float(values["avg10"])
        load["cpu_pressure_some_avg60"] = float(values["avg60"])
    return load


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    """The short HEAD commit, with "+dirty" when the working tree has changes (read-only git)."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if status else commit


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in table.rows]
    return "\n".join(lines)


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def to_json(result: BenchResult) -> dict[str, Any]:
    return {"schema": SCHEMA, **asdict(result)}


def write_json(result: BenchResult, path: Path) -> None:
    text = json.dumps(to_json(result), indent=2, sort_keys=False, allow_nan=False)
    _atomic_write(path, text + "\n")


def write_markdown(result: BenchResult, path: Path, image: str | None) -> None:
    m = result.machine
    parts = [
        f"# {result.title}",
        "",
        f"- **Target:** {result.target}",
        f"- **Measured:** {result.measured}",
        f"- **Verdict:** {verdict(result.passed)}",
        f"- **Machine:** {m.get('nproc')} CPUs ({m.get('cpu_model') or 'unknown CPU'}), "
        f"Python {m.get('python')}, {m.get('platform')}",
        f"- **Date:** {m.get('date')} (commit {m.get('git_commit') or 'unknown'})",
        "",
        markdown_table(result.table),
        "",
    ]
    if image:
        parts += [f"![{result.title}]({image})", ""]
    if result.notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    if result.params:
        parts += ["## Parameters", "", "```json", json.dumps(result.params, indent=2), "```", ""]
    _atomic_write(path, "\n".join(parts))


def write_plot(plot: Plot, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        for series in plot.series:
            notes = series.annotations or [""] * len(series.x)
            points = [(x, y, n) for x, y, n in zip(series.x, series.y, notes, strict=True) if y is not None]
            if not points:
                continue
            xs, ys, texts = zip(*points, strict=True)
            ax.plot(xs, ys, series.style, label=series.label, color=series.color)
            for x, y, text in zip(xs, ys, texts, strict=True):
                if text:
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
        for value, label in plot.hlines:
            ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=label)
        for value, label in plot.vlines:
            ax.axvline(value, color="grey", linestyle=":", linewidth=1, label=label)
        if plot.x_log:
            ax.set_xscale("log")
        if plot.y_log:
            ax.set_yscale("log")
        ax.set_title(plot.title)
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)


def write_readme(results_dir: Path) -> Path:
    """Regenerate README.md: one summary row and one short section per NAME.json present."""
    results = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("schema") == SCHEMA and "name" in data:
            results.append(data)
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run`); each benchmark also has NAME.json (full data),",
        "NAME.md and NAME.png here. Numbers depend on the machine and on what else ran at the time.",
        "",
        "| benchmark | target | measured | verdict | date | machine |",
        "|---|---|---|---|---|---|",
    ]
    for data in results:
        m = data.get("machine", {})
        lines.append(
            f"| [{data['name']}]({data['name']}.md) | {data.get('target', '')} | {data.get('measured', '')} | "
            f"{verdict(data.get('passed'))} | {str(m.get('date', ''))[:10]} | "
            f"{m.get('nproc')} CPUs, Python {m.get('python')} |"
        )
    for data in results:
        lines += ["", f"## {data.get('title', data['name'])}", ""]
        lines += [f"- Target: {data.get('target', '')}", f"- Measured: {data.get('measured', '')}"]
        lines += [f"- Verdict: {verdict(data.get('passed'))}"]
        if (results_dir / f"{data['name']}.png").exists():
            lines += ["", f"![{data['name']}]({data['name']}.png)"]
    path = results_dir / README
    _atomic_write(path, "\n".join(lines) + "\n")
    return path


def write_result(result: BenchResult, results_dir: Path = RESULTS_DIR) -> dict[str, Path]:
    """Write NAME.json, NAME.md, NAME.png (when there is a plot) and refresh README.md."""
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": results_dir / f"{result.name}.json", "md": results_dir / f"{result.name}.md"}
    image = None
    if result.plot is not None:
        paths["png"] = results_dir / f"{result.name}.png"
        write_plot(result.plot, paths["png"])
        image = paths["png"].name
    write_json(result, paths["json"])
    write_markdown(result, paths["md"], image)
    paths["readme"] = write_readme(results_dir)
    return paths


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None; None when there are none."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    return present[mid] if len(present) % 2 else (present[mid - 1] + present[mid]) / 2


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":  # `python -m bench.report` refreshes the README from the JSON files
    print(write_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR))
