"""Benchmark honesty in ``simulate``'s summary (issue 16 item 20), on hand-made result rows:
a target the shared initial set already meets, an under-trained full-supervision reference,
and one seed (no "± 0.000")."""

from __future__ import annotations

import csv
from pathlib import Path

from napari_al.simulation.config import FULL_NAME
from napari_al.simulation.report import per_seed_table, summarize, summary_table, write_report
from napari_al.simulation.results import CSV_COLUMNS, RESULTS_CSV


def curve(name: str, seed: int, points: list[tuple[float, float]]) -> list[dict]:
    """Rows of one (strategy, seed) run: ``points`` are (cumulative seconds, mAP@0.5)."""
    return [
        {
            "strategy": name,
            "unit": "image",
            "oracle": "draw" if name == "random-draw" else "verify",
            "seed": seed,
            "round": r,
            "cost_seconds": c,
            "map50": m,
            "boxes_drawn": 10 * r,
            "verifications": 0,
            "class_changes": 0,
            "images": r,
        }
        for r, (c, m) in enumerate(points)
    ]


def full(map50: float, cost: float = 10_000.0) -> list[dict]:
    return [{**curve(FULL_NAME, 0, [(cost, map50)])[0], "oracle": "draw"}]


def table_rows(summary: dict) -> dict[str, list[str]]:
    lines = summary_table(summary).splitlines()[2:]
    return {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in lines}


def test_initial_set_meeting_the_target_is_said_not_printed_as_1x() -> None:
    """The initial set (round 0, shared) already has 0.75 >= 0.9 x 0.8: no 1.00x ratios."""
    rows = [
        *full(0.8),
        *curve("random-draw", 0, [(500.0, 0.75), (1_000.0, 0.78)]),
        *curve("random-draw", 1, [(500.0, 0.76), (1_000.0, 0.77)]),
        *curve("entropy", 0, [(500.0, 0.75), (900.0, 0.79)]),
        *curve("entropy", 1, [(500.0, 0.76), (900.0, 0.78)]),
    ]
    summary = summarize(rows)
    assert sorted(summary["initial_meets_target"]) == [0, 1]
    assert summary["reference_below"] is None
    (note,) = summary["caveats"]
    assert "initial set already reaches the target (0.720) on every seed" in note
    table = table_rows(summary)
    for name in ("random-draw", "entropy"):
        assert table[name][3] == "met by the initial set (500)"
        assert table[name][4] == "n/a (initial set meets the target)"
    assert "1.00x" not in summary_table(summary)
    per_seed = per_seed_table(rows, summary["target"])
    assert "| entropy | initial set (500) | initial set (500) |" in per_seed.splitlines()
    assert "1.00x" not in per_seed


def test_initial_set_meeting_the_target_on_one_seed_only_is_named() -> None:
    rows = [
        *full(0.8),
        *curve("random-draw", 0, [(500.0, 0.75), (1_000.0, 0.78)]),
        *curve("random-draw", 1, [(500.0, 0.5), (1_000.0, 0.75)]),
        *curve("entropy", 0, [(500.0, 0.75), (900.0, 0.79)]),
        *curve("entropy", 1, [(500.0, 0.5), (900.0, 0.74)]),
    ]
    summary = summarize(rows)
    assert list(summary["initial_meets_target"]) == [0]
    assert "on seeds [0]" in summary["caveats"][0]
    assert table_rows(summary)["entropy"][4] != "n/a (initial set meets the target)"


def test_an_under_trained_reference_is_named() -> None:
    """Full supervision at 0.55, below an active-learning run at 0.70: the target is not
    meaningful, and the summary says which run beat it."""
    rows = [
        *full(0.55),
        *curve("random-draw", 0, [(500.0, 0.3), (1_000.0, 0.6)]),
        *curve("entropy", 0, [(500.0, 0.3), (900.0, 0.70)]),
    ]
    summary = summarize(rows)
    assert summary["reference_below"] == {
        "strategy": "entropy",
        "seed": 0,
        "round": 1,
        "map50": 0.70,
    }
    (note,) = summary["caveats"]
    assert "reference (mAP@0.5 0.550) scores below an active-learning run (entropy" in note
    assert "under-trained" in note and "--full-steps" in note


def test_one_seed_prints_no_spread() -> None:
    rows = [
        *full(0.9),
        *curve("random-draw", 0, [(500.0, 0.3), (2_000.0, 0.85)]),
        *curve("entropy", 0, [(500.0, 0.3), (1_000.0, 0.85)]),
    ]
    summary = summarize(rows)
    assert summary["caveats"] == []
    text = summary_table(summary)
    assert "±" not in text
    table = table_rows(summary)
    assert table["entropy"][3] == "964" and table["entropy"][6] == "0.850"
    assert table["entropy"][4] == "0.51x"  # a real comparison keeps its ratio
    # over two seeds the spread is shown
    rows += curve("random-draw", 1, [(500.0, 0.3), (2_000.0, 0.85)])
    rows += curve("entropy", 1, [(500.0, 0.3), (1_000.0, 0.85)])
    assert "± 0" in summary_table(summarize(rows))


def test_the_written_summary_carries_the_notes(tmp_path: Path) -> None:
    rows = [
        *full(0.55),
        *curve("random-draw", 0, [(500.0, 0.6), (1_000.0, 0.62)]),
        *curve("entropy", 0, [(500.0, 0.6), (900.0, 0.64)]),
    ]
    with open(tmp_path / RESULTS_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, 0) for k in CSV_COLUMNS})
    _plot, md = write_report(tmp_path)
    text = md.read_text()
    assert text.count("**Note:**") == 2
    assert "initial set already reaches the target" in text and "under-trained" in text
    assert "1.00x" not in text and "± 0.000" not in text
