"""Calibration benchmark: how well P(yes) is estimated, before and after calibration.

Reads the projects of a finished ``napari-al simulate`` run (``OUT/work/seed*/STRATEGY``) and, for
every model version whose own predictions a (simulated) person judged, predicts the evaluation
split (``test`` in the presets) with that version's checkpoint and matches the predictions to
the ground truth (:func:`napari_al.core.workflow.split_samples`: same class, IoU >= 0.5). Each
prediction is a (score, correct) pair; the expected calibration error (ECE, 10 equal-width bins,
Naeini et al. 2015) is printed for three maps of score -> P(yes):

- ``raw``: the detector's score itself;
- ``earlier``: the map the run stored on the version at training time, fitted on boxes that
  *earlier* versions scored and people judged (the rule of napari-al <= 0.4);
- ``same``: a map fitted on the boxes *this* version scored and people judged
  (judged samples of that version), the rule of the workflow now.

A simulation keeps only each run's latest checkpoint unless run with ``--keep-checkpoints``
(e.g. 10); version 1, the shared initial model, is read from the seed's ``base`` project.

The fitting method is the workflow's default (isotonic regression, Zadrozny & Elkan 2002;
``--method platt`` for Platt scaling). ``--png`` also writes the reliability diagram of all
versions' samples pooled (:func:`napari_al.core.calibration.reliability_curve`). Example::

    python benchmarks/calibration.py bench-out/bccd --png docs/images/reliability_bccd.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from napari_al.core import workflow  # noqa: E402
from napari_al.core.calibration import (  # noqa: E402
    ScoreCalibration,
    expected_calibration_error,
    fit_calibration,
    reliability_curve,
)
from napari_al.core.engine import configure_threads, load_checkpoint  # noqa: E402
from napari_al.core.store import ProjectStore  # noqa: E402

MAPS = ("raw", "earlier", "same")


def _version_rows(
    store: ProjectStore, split: str, method: str, min_samples: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    judged = workflow.judged_samples(store)
    for mv in store.model_versions():
        own = judged.subset(judged.groups == mv.id)
        same = fit_calibration(
            own.scores, own.outcomes, own.classes, method, min_samples=min_samples
        )
        if same.is_identity:
            continue  # no judged boxes of this version (or one answer only)
        path = store.abs_path(mv)
        if not path.is_file() and mv.id == 1:  # the shared initial model, kept in base/
            path = store.project_dir.parent / "base" / "models" / path.name
        if not path.is_file():
            print(f"<!-- {path}: deleted by the run (simulate --keep-checkpoints) -->")
            continue
        detector, _ = load_checkpoint(path, device="cpu")
        detector.model_version = mv.id
        preds = workflow.predict_split(store, detector, split)
        samples = workflow.split_samples(preds, [c.name for c in store.classes()])
        earlier = ScoreCalibration.from_dict(mv.metrics.get(workflow.CALIBRATION_KEY))
        probs = {
            "raw": np.clip(samples.scores, 0.0, 1.0),
            "earlier": earlier.predict(samples.scores, samples.classes),
            "same": same.predict(samples.scores, samples.classes),
        }
        row: dict[str, Any] = {
            "version": mv.id,
            "judged": len(own),
            "samples": len(samples),
            "outcomes": samples.outcomes,
            "probs": probs,
        }
        row.update(
            {f"ece_{k}": expected_calibration_error(p, samples.outcomes) for k, p in probs.items()}
        )
        rows.append(row)
    return rows


def _plot(rows: list[dict[str, Any]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = np.concatenate([r["outcomes"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    for key, marker in zip(MAPS, "osD", strict=True):
        probs = np.concatenate([r["probs"][key] for r in rows])
        if key == "earlier" and np.array_equal(
            probs, np.concatenate([r["probs"]["raw"] for r in rows])
        ):
            continue  # no earlier map stored on these versions (version 1): the raw curve
        curve = reliability_curve(probs, outcomes)
        ece = expected_calibration_error(probs, outcomes)
        ax.plot(
            curve["prob_pred"], curve["prob_true"], marker=marker, label=f"{key} (ECE {ece:.3f})"
        )
    ax.set_xlabel("P(yes) (mean per bin)")
    ax.set_ylabel("fraction correct (IoU >= 0.5, same class)")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", type=Path, help="a finished `napari-al simulate --out` folder")
    p.add_argument("--split", default="test")
    p.add_argument("--method", default="isotonic", choices=("isotonic", "platt"))
    p.add_argument("--min-samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--png", type=Path, default=None, help="write the reliability diagram here")
    args = p.parse_args(argv)
    if args.threads:
        configure_threads(args.threads)
    projects = sorted(
        d
        for d in (args.out / "work").glob("seed*/*")
        if (d / "napari_al.sqlite").is_file() and d.name not in ("base", "full")
    )
    if not projects:
        p.error(f"{args.out}/work/seed*/STRATEGY/napari_al.sqlite: no simulated project found")
    rows: list[dict[str, Any]] = []
    print(
        "| seed | strategy | version | judged boxes of it | test predictions | ECE raw "
        "| ECE earlier | ECE same |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for d in projects:
        with ProjectStore.open(d) as store:
            for r in _version_rows(store, args.split, args.method, args.min_samples):
                r.update(seed=d.parent.name, strategy=d.name)
                rows.append(r)
                print(
                    f"| {r['seed']} | {r['strategy']} | {r['version']} | {r['judged']} | "
                    f"{r['samples']} | {r['ece_raw']:.3f} | {r['ece_earlier']:.3f} | "
                    f"{r['ece_same']:.3f} |",
                    flush=True,
                )
    if not rows:
        print("no model version with judged boxes of its own")
        return 1
    print()
    print("| map | mean ECE over versions | versions better than raw | pooled ECE |")
    print("|---|---:|---:|---:|")
    outcomes = np.concatenate([r["outcomes"] for r in rows])
    for key in MAPS:
        eces = np.asarray([r[f"ece_{key}"] for r in rows])
        better = int((eces < np.asarray([r["ece_raw"] for r in rows]) - 1e-12).sum())
        pooled = expected_calibration_error(
            np.concatenate([r["probs"][key] for r in rows]), outcomes
        )
        print(
            f"| {key} | {eces.mean():.3f} +- {eces.std():.3f} | {better} / {len(rows)} "
            f"| {pooled:.3f} |"
        )
    if args.png:
        title = (
            f"{args.out.name}: {len(rows)} model versions, {len(outcomes)} {args.split} predictions"
        )
        _plot(rows, args.png, title)
        print(f"\nreliability diagram: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
