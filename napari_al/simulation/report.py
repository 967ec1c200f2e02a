"""The report of a run: per-strategy statistics, Markdown tables, the mAP-vs-seconds plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_al.simulation.config import FULL_NAME
from napari_al.simulation.results import (
    CONFIG_JSON,
    PLOT_PNG,
    RESULTS_CSV,
    RUN_INFO_JSON,
    SUMMARY_MD,
    read_results,
)


def _interp_cost_to_reach(costs: np.ndarray, maps: np.ndarray, target: float) -> float | None:
    """First cost at which the (piecewise linear) curve reaches ``target``; None if never."""
    for i in range(len(costs)):
        if maps[i] >= target:
            if i == 0:
                return float(costs[0])
            c0, c1, m0, m1 = costs[i - 1], costs[i], maps[i - 1], maps[i]
            return float(c0 + (target - m0) / (m1 - m0) * (c1 - c0)) if m1 != m0 else float(c1)
    return None


def _mean_over(costs: np.ndarray, maps: np.ndarray, lo: float, hi: float) -> float:
    """Mean of the piecewise linear curve over ``[lo, hi]`` (normalised area under it)."""
    if not hi > lo:
        return math.nan
    grid = np.linspace(lo, hi, 512)
    return float(np.mean(np.interp(grid, costs, maps)))


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-strategy statistics: seconds to 90% of full-supervision mAP@0.5, mean mAP@0.5 over a
    common cost range (area under the curve / width), final numbers."""
    full = [r["map50"] for r in rows if r["strategy"] == FULL_NAME]
    full_cost = [r["cost_seconds"] for r in rows if r["strategy"] == FULL_NAME]
    full_map = float(np.mean(full)) if full else math.nan
    target = 0.9 * full_map
    curves: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for r in rows:
        if r["strategy"] == FULL_NAME:
            continue
        curves.setdefault(r["strategy"], {}).setdefault(r["seed"], []).append(r)
        meta[r["strategy"]] = (r["unit"], r["oracle"])
    for per_seed in curves.values():
        for rs in per_seed.values():
            rs.sort(key=lambda r: r["round"])
    seeds = sorted({s for per in curves.values() for s in per})
    # common range per seed: from the shared initial cost to the median final cost; a curve
    # that ends earlier is extended flat at its last mAP (np.interp), one that goes on is cut
    ranges: dict[int, tuple[float, float]] = {}
    for seed in seeds:
        finals = [per[seed][-1]["cost_seconds"] for per in curves.values() if seed in per]
        starts = [per[seed][0]["cost_seconds"] for per in curves.values() if seed in per]
        ranges[seed] = (max(starts), float(np.median(finals)))
    stats: dict[str, dict[str, Any]] = {}
    for name, per_seed in curves.items():
        reach, auc, final_map, final_cost = [], [], [], []
        counts = {k: [] for k in ("boxes_drawn", "verifications", "class_changes", "images")}
        for seed, rs in per_seed.items():
            c = np.asarray([r["cost_seconds"] for r in rs], float)
            m = np.asarray([r["map50"] for r in rs], float)
            reach.append(_interp_cost_to_reach(c, m, target) if math.isfinite(target) else None)
            auc.append(_mean_over(c, m, *ranges[seed]))
            final_map.append(m[-1])
            final_cost.append(c[-1])
            for k in counts:
                counts[k].append(rs[-1][k])
        reached = [x for x in reach if x is not None]
        # a seed that never reached the target is censored at its final cost: the mean over
        # seeds is then a lower bound on the strategy's cost to reach it
        bound = [x if x is not None else fc for x, fc in zip(reach, final_cost, strict=True)]
        stats[name] = {
            "unit": meta[name][0],
            "oracle": meta[name][1],
            "seeds": len(per_seed),
            "reached": len(reached),
            "cost_to_90": float(np.mean(reached)) if len(reached) == len(reach) else None,
            "cost_to_90_sd": float(np.std(reached)) if len(reached) == len(reach) else None,
            "cost_to_90_partial": float(np.mean(reached)) if reached else None,
            "cost_to_90_lower": float(np.mean(bound)) if bound else None,
            "auc": float(np.nanmean(auc)) if auc else math.nan,
            "final_map50": float(np.mean(final_map)),
            "final_map50_sd": float(np.std(final_map)),
            "final_cost": float(np.mean(final_cost)),
            **{k: float(np.mean(v)) for k, v in counts.items()},
        }
    lo = float(np.mean([a for a, _ in ranges.values()])) if ranges else math.nan
    hi = float(np.mean([b for _, b in ranges.values()])) if ranges else math.nan
    met = _initial_meets_target(curves, seeds, target)
    for name, per_seed in curves.items():
        stats[name]["met_at_start"] = sum(1 for seed in per_seed if seed in met)
    above = _runs_above_reference(rows, full_map)
    return {
        "full_map50": full_map,
        "full_cost": float(np.mean(full_cost)) if full_cost else math.nan,
        "target": target,
        "auc_range": (lo, hi),
        "strategies": stats,
        "seeds": seeds,
        "initial_meets_target": met,
        "reference_below": above,
        "caveats": _caveats(full_map, target, met, seeds, above),
    }


def _initial_meets_target(
    curves: Mapping[str, Mapping[int, Sequence[Mapping[str, Any]]]],
    seeds: Sequence[int],
    target: float,
) -> dict[int, dict[str, float]]:
    """Seeds whose shared initial set (round 0) already reaches ``target``:
    ``{seed: {"map50": its mAP, "cost": its seconds}}``. Every strategy then "reaches" the
    target at the same cost on that seed, so seconds-to-target cannot tell them apart."""
    if not math.isfinite(target):
        return {}
    met: dict[int, dict[str, float]] = {}
    for seed in seeds:
        first = [per[seed][0] for per in curves.values() if seed in per]
        first = [r for r in first if r["round"] == 0]
        if first and min(r["map50"] for r in first) >= target:
            met[seed] = {
                "map50": float(min(r["map50"] for r in first)),
                "cost": float(max(r["cost_seconds"] for r in first)),
            }
    return met


def _runs_above_reference(
    rows: Sequence[Mapping[str, Any]], full_map: float
) -> dict[str, Any] | None:
    """The best active-learning point when it scores above the full-supervision reference
    (``{"strategy", "seed", "round", "map50"}``), else None: the reference is under-trained."""
    if not math.isfinite(full_map):
        return None
    points = [r for r in rows if r["strategy"] != FULL_NAME]
    if not points:
        return None
    best = max(points, key=lambda r: r["map50"])
    if best["map50"] <= full_map:
        return None
    return {k: best[k] for k in ("strategy", "seed", "round", "map50")}


def _caveats(
    full_map: float,
    target: float,
    met: Mapping[int, Mapping[str, float]],
    seeds: Sequence[int],
    above: Mapping[str, Any] | None,
) -> list[str]:
    """Why the seconds-to-target comparison may say nothing, one sentence each."""
    out = []
    if met:
        which = "every seed" if len(met) == len(seeds) else f"seeds {sorted(met)}"
        maps = ", ".join(f"{m['map50']:.3f}" for m in met.values())
        out.append(
            f"The shared initial set already reaches the target ({target:.3f}) on {which} "
            f"(mAP@0.5 {maps} at round 0), so every strategy meets it at the same cost there "
            "and seconds-to-target cannot tell them apart: compare the AUC and final mAP@0.5 "
            "instead, or use a smaller initial set (--init-images)."
        )
    if above is not None:
        out.append(
            f"The full-supervision reference (mAP@0.5 {full_map:.3f}) scores below an "
            f"active-learning run ({above['strategy']}, seed {above['seed']}, round "
            f"{above['round']}: {above['map50']:.3f}): it is under-trained, so 90% of it is "
            "not a meaningful target; train it longer (--full-steps)."
        )
    return out


def _fmt_s(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}"


def cost_ratio(s: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """Seconds to the target relative to the reference (random drawing), honest under
    censoring: a run that never reached the target counts at its final cost, a lower bound,
    so the ratio is exact, an upper bound (``<``), a lower bound (``>``) or unknown."""
    if not ref or s.get("cost_to_90_lower") is None or ref.get("cost_to_90_lower") is None:
        return "n/a"
    exact_s, exact_r = s["cost_to_90"] is not None, ref["cost_to_90"] is not None
    r = s["cost_to_90_lower"] / ref["cost_to_90_lower"]
    if exact_s and exact_r:
        return f"{r:.2f}x"
    if exact_s:
        return f"< {r:.2f}x"
    if exact_r:
        return f"> {r:.2f}x"
    return "n/a"


def summary_table(summary: Mapping[str, Any]) -> str:
    """The Markdown table of :func:`summarize`.

    Spreads (``± sd``) are shown only over more than one seed. A strategy whose every seed
    met the target with the shared initial set shows ``met by the initial set``, and its ratio
    (and every ratio, when random-draw's did) ``n/a``: not a misleading ``1.00x``. The reasons
    are in ``summary["caveats"]``, which :func:`write_report` prints above the table.
    """
    st = summary["strategies"]
    ref = st.get("random-draw", {})
    lo, hi = summary["auc_range"]
    lines = [
        f"| strategy | unit | oracle | seconds to 90% of full mAP@0.5 | vs random-draw | "
        f"mean mAP@0.5 over {_fmt_s(lo)}-{_fmt_s(hi)} s (AUC) | final mAP@0.5 | final seconds | "
        "boxes drawn | verifications | images |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in st.items():
        spread = s["seeds"] > 1  # one seed has no spread to show
        at_start = s.get("met_at_start", 0) == s["seeds"]
        if not math.isfinite(summary["target"]):
            reach = "n/a (no full-supervision run)"
        elif at_start:
            reach = f"met by the initial set ({_fmt_s(s['cost_to_90'])})"
        elif s["cost_to_90"] is not None:
            reach = _fmt_s(s["cost_to_90"])
            if spread:
                reach += f" ± {_fmt_s(s['cost_to_90_sd'])}"
        elif s["reached"]:
            reach = (
                f">= {_fmt_s(s['cost_to_90_lower'])} ({s['reached']}/{s['seeds']} seeds "
                f"reached, at {_fmt_s(s['cost_to_90_partial'])})"
            )
        else:
            reach = f"not reached (> {_fmt_s(s['final_cost'])})"
        ratio = cost_ratio(s, ref) if math.isfinite(summary["target"]) else "n/a"
        if at_start or (ref and ref.get("met_at_start", 0) == ref.get("seeds")):
            ratio = "n/a (initial set meets the target)"
        final = f"{s['final_map50']:.3f}"
        if spread:
            final += f" ± {s['final_map50_sd']:.3f}"
        lines.append(
            f"| {name} | {s['unit']} | {s['oracle']} | {reach} | {ratio} | {s['auc']:.3f} | "
            f"{final} | {_fmt_s(s['final_cost'])} | "
            f"{s['boxes_drawn']:.0f} | {s['verifications']:.0f} | {s['images']:.0f} |"
        )
    return "\n".join(lines)


def per_seed_table(rows: Sequence[Mapping[str, Any]], target: float) -> str:
    """Seconds to ``target`` per (strategy, seed), with the ratio to random drawing on the same
    seed (same initial set); a seed that never got there shows its best mAP@0.5."""
    curves: dict[str, dict[int, list[Mapping[str, Any]]]] = {}
    for r in rows:
        if r["strategy"] != FULL_NAME:
            curves.setdefault(r["strategy"], {}).setdefault(int(r["seed"]), []).append(r)
    seeds = sorted({s for per in curves.values() for s in per})

    def reach(rs: list[Mapping[str, Any]]) -> float | None:
        rs = sorted(rs, key=lambda r: r["round"])
        c = np.asarray([r["cost_seconds"] for r in rs], float)
        m = np.asarray([r["map50"] for r in rs], float)
        return _interp_cost_to_reach(c, m, target)

    ref = {s: reach(rs) for s, rs in curves.get("random-draw", {}).items()}
    lines = [
        "| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for name, per in curves.items():
        cells = []
        for seed in seeds:
            rs = per.get(seed)
            if not rs:
                cells.append("")
                continue
            x = reach(rs)
            first = min(rs, key=lambda r: r["round"])
            if x is not None and first["round"] == 0 and first["map50"] >= target:
                cells.append(f"initial set ({_fmt_s(x)})")
            elif x is None:
                cells.append(f"not reached (best {max(r['map50'] for r in rs):.3f})")
            elif ref.get(seed):
                cells.append(f"{_fmt_s(x)} ({x / ref[seed]:.2f}x)")
            else:
                cells.append(_fmt_s(x))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path, full_map: float) -> Path:
    """mAP@0.5 against cumulative annotation seconds: mean over seeds per round, band = ±1 sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    names = list(dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != FULL_NAME))
    for name in names:
        rs = [r for r in rows if r["strategy"] == name]
        rounds = sorted({r["round"] for r in rs})
        x, y, sd = [], [], []
        for rd in rounds:
            at = [r for r in rs if r["round"] == rd]
            x.append(np.mean([r["cost_seconds"] for r in at]))
            y.append(np.mean([r["map50"] for r in at]))
            sd.append(np.std([r["map50"] for r in at]))
        x, y, sd = map(np.asarray, (x, y, sd))
        style = "--" if name.startswith("random") else "-"
        (line,) = ax.plot(x, y, style, marker="o", ms=3, label=name)
        ax.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.15, lw=0)
    if math.isfinite(full_map):
        ax.axhline(full_map, color="k", lw=1, label=f"full supervision ({full_map:.3f})")
        ax.axhline(0.9 * full_map, color="k", lw=1, ls=":", label="90% of full supervision")
    ax.set_xlabel("cumulative annotation seconds (simulated oracle)")
    ax.set_ylabel("mAP@0.5 on the test split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(out: str | Path) -> tuple[Path | None, Path | None]:
    """Plot and Markdown summary from ``out/results.csv`` (also usable on its own)."""
    out = Path(out)
    rows = read_results(out / RESULTS_CSV)
    if not rows:
        return None, None
    summary = summarize(rows)
    plot = plot_curves(rows, out / PLOT_PNG, summary["full_map50"])
    cfg = json.loads((out / CONFIG_JSON).read_text()) if (out / CONFIG_JSON).is_file() else {}
    info = json.loads((out / RUN_INFO_JSON).read_text()) if (out / RUN_INFO_JSON).is_file() else {}
    costs = cfg.get("costs", {})
    lines = [
        "# Simulated-oracle benchmark",
        "",
        f"Full-supervision mAP@0.5: **{summary['full_map50']:.3f}** (every pool box drawn: "
        f"{_fmt_s(summary['full_cost'])} s); target 90%: {summary['target']:.3f}.",
        "",
        *[f"**Note:** {c}\n" for c in summary["caveats"]],
        summary_table(summary),
        "",
        "Seconds to the target per seed (ratio to random-draw on the same seed and initial set):",
        "",
        per_seed_table(rows, summary["target"]),
        "",
        f"![mAP@0.5 vs annotation seconds]({PLOT_PNG})",
        "",
        "Settings: "
        + ", ".join(
            f"{k} {cfg.get(k)}"
            for k in (
                "data",
                "rounds",
                "init_images",
                "budget_images",
                "budget_boxes",
                "pool_subset",
                "init_steps",
                "round_steps",
                "full_steps",
                "min_size",
                "max_size",
                "lr",
                "lambda_d",
                "noisy_min_score",
                "partial_background_weight",
                "verify_min_score",
                "verify_missed_min_score",
                "calibration",
                "rich_answers",
                "missed_by",
                "self_training",
            )
            if k in cfg
        )
        + f"; seeds {summary['seeds']}.",
        "",
        "Costs (s): " + ", ".join(f"{k} {v}" for k, v in costs.items()) + ".",
    ]
    if info:
        lines += [
            "",
            f"Machine: {info.get('machine')} ({info.get('device')}, {info.get('workers')} "
            f"workers x {info.get('threads') or 'default'} threads); wall time "
            f"{info.get('wall_s_total', 0) / 60:.1f} min.",
        ]
    md = out / SUMMARY_MD
    md.write_text("\n".join(lines) + "\n")
    return plot, md
