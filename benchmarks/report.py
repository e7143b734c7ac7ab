"""Print a results file as a Markdown table (for README.md).

    python benchmarks/report.py [benchmarks/results/<date>-<commit>.json]

Without an argument, the newest file in benchmarks/results/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _fmt(value: float) -> str:
    if value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(result: dict) -> str:
    pg = result["postgres"]
    machine = result["machine"]
    lines = [
        f"Commit `{result['commit']}`{' (tree modified)' if result['chancy_tree_dirty'] else ''}"
        f", {result['date']}; {machine['cpus']} CPUs, {machine['platform']}, Python "
        f"{machine['python']}; PostgreSQL {pg['server_version'].split()[0]} ({pg['origin']});"
        f" `{result['command']}`; median of {result['runs']} runs (min–max).",
        "",
        "| workload | figure | median | min–max | target |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for f in result["figures"]:
        lines.append(
            f"| {f['workload']} | {f['name']} | {_fmt(f['median'])} {f['unit']} "
            f"| {_fmt(f['min'])}–{_fmt(f['max'])} | {f['target']} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        path = max(RESULTS.glob("*.json"), key=lambda p: p.stat().st_mtime)
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
