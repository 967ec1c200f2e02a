"""Printing an evaluation and a model version's score calibration (``evaluate``, ``train
--evaluate``), and the ``--calibration`` option."""

from __future__ import annotations

import argparse
from typing import Any

from napari_al.cli.common import counted, json_text, progress_bar, say, skip_reporter


def print_eval(store, detector, split: str, as_json: bool, calibration=None) -> int:
    """Evaluate on ``split`` and, for a trained model, fit and measure its score calibration
    there with the same predictions (one pass); print both (or one JSON object)."""
    from napari_al.core import workflow

    update, close = progress_bar("evaluating")
    try:
        on_skip, _ = skip_reporter()
        predictions = workflow.predict_split(
            store, detector, split, progress=update, on_skip=on_skip
        )
    finally:
        close()
    record = not getattr(store, "read_only", False)  # a project folder napari-al cannot write
    result = workflow.evaluate_model(store, detector, split, predictions=predictions, record=record)
    cal = None
    if detector.model_version:
        cal = workflow.calibrate_model(
            store, detector, calibration, split=split, predictions=predictions, record=record
        )
        if not record:
            from napari_al.core.store.access import why_not_writable

            say(
                "note",
                f"not recorded on model version {detector.model_version}: the project folder "
                f"is not writable ({why_not_writable(store.project_dir)}); the figures are "
                "printed only",
            )
    if as_json:
        print(json_text({**result, **(cal or {})}, indent=2, sort_keys=True))
        return 0
    version = f"model version {detector.model_version}" if detector.model_version else "model"
    print(
        f"{split}: mAP@0.5 {result['map50']:.4f}  AP@[.5:.95] {result['map']:.4f}  "
        f"({result['images']} images; {version})"
    )
    for name, m in sorted(result.get("per_class", {}).items()):
        print(class_line(name, m, split))
    if cal is not None:
        line = calibration_line(cal)
        if _kept_under_by_split(store, detector.model_version, split):
            line += "; a look only: the model keeps the calibration fitted and measured on val"
        print(line)
    return 0


def class_line(name: str, metrics: dict, split: str) -> str:
    """One class's line of ``evaluate``: its AP@0.5 and AP@[.5:.95], or, where the split holds
    no box of the class (pycocotools gives no AP, read as NaN), that it holds none: "AP50 nan"
    read as a failure of the tool."""
    import math

    ap50, ap = metrics.get("ap50", math.nan), metrics.get("ap", math.nan)
    if not (math.isfinite(ap50) or math.isfinite(ap)):
        return f"  {name:<12} no {name} box in {split}: AP not defined"
    return f"  {name:<12} AP50 {ap50:.4f}  AP {ap:.4f}"


def _kept_under_by_split(store, version: int, split: str) -> bool:
    """Whether ``split``'s figures went under the version's ``by_split`` (its own figures,
    and the calibration the loop uses, come from val: ``workflow.record_metrics``)."""
    row = next((r for r in store.model_versions() if r.id == version), None)
    return row is not None and split in (row.metrics.get("by_split") or {})


def calibration_fix(store: Any, project: str) -> str | None:
    """What to do when too few samples kept the raw scores, on a project holding complete val
    images (None without any: :func:`calibration_line`'s default advice then holds)."""
    import shlex

    n_val = len(store.images(split="val", review_state="complete"))
    if not n_val:
        return None
    return (
        f"train with --evaluate, or run 'napari-al evaluate {shlex.quote(str(project))}', to "
        f"fit it on the {counted(n_val, 'complete val image')}; or judge more boxes"
    )


def calibration_line(cal: dict, fix: str | None = None) -> str:
    """One line on a calibration: how it was fitted and its error before/after. ``fix``: what
    to do when too few samples kept the raw scores (default: evaluate on a val split of
    complete images, or judge more boxes)."""
    n = cal["calibration_samples"]
    source = {
        "judged": f"fitted on {n} judged model boxes",
        "val": f"fitted on {n} val detections",
    }.get(cal["calibration_source"], "raw scores kept")
    judged = cal.get("calibration_judged")
    if cal["calibration_source"] == "none" and cal["calibration_method"] != "none":
        source += f": {judged} judged model boxes, too few" if judged is not None else ": too few"
        source += f" ({fix or 'evaluate on a val split of complete images, or judge more boxes'})"
    line = f"calibration ({cal['calibration_method']}, {source})"
    if cal.get("ece_before") is not None:
        line += (
            f": ECE on {cal['ece_split']} {cal['ece_before']:.4f} raw -> "
            f"{cal['ece_after']:.4f} calibrated"
        )
        if cal.get("ece_samples") is not None:  # a version recorded before they were kept
            cross = ", cross-fitted" if cal.get("ece_cross_fitted") else ""
            line += f" ({cal['ece_samples']} detections, {cal['ece_bins']} equal-width bins{cross})"
    return line


def calibration_args(p: argparse.ArgumentParser) -> None:
    """``--calibration``, from :class:`~napari_al.core.workflow.CalibrationSettings`."""
    from napari_al.core.workflow import CalibrationSettings, add_arguments

    add_arguments(p.add_argument_group("score calibration"), CalibrationSettings, only=["method"])
