"""``napari-al rank --unit question``: the dialog planner's queue of questions, printed and
stored as the project's question set (:func:`napari_al.core.workflow.plan_questions`), so the
viewer's Questions panel and a restart ask the same ones."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from napari_al.cli.common import (
    ALL_SKIPPED,
    SKIPPED_FIX,
    json_text,
    nothing_to,
    open_store,
    progress_bar,
    warn,
)
from napari_al.core.names import shown


def add_question_arguments(p: argparse.ArgumentParser) -> None:
    """The dialog planner's flags (:class:`~napari_al.core.workflow.DialogSettings`)."""
    from napari_al.core.workflow import DialogSettings, add_arguments

    add_arguments(p.add_argument_group("questions (--unit question)"), DialogSettings)


def refuse_question_flags(args: argparse.Namespace) -> None:
    """Raise :class:`~napari_al.core.workflow.SettingsError` when a question flag
    (``--supervision``, ``--scatter-images``, ...) is given with a ``--unit`` other than
    ``question``: it would change nothing, and silently ignoring it misleads."""
    from napari_al.core.workflow import DialogSettings, SettingsError, flags_given

    given = flags_given(DialogSettings, args)
    if given:
        verb, them = ("applies", "it") if len(given) == 1 else ("apply", "them")
        unit = args.unit or "image"  # rank's default unit
        raise SettingsError(
            f"{', '.join(given)} only {verb} to --unit question (this is --unit {unit}); "
            f"drop {them} or add --unit question"
        )


def refuse_unit_flags(args: argparse.Namespace) -> None:
    """Raise :class:`~napari_al.core.workflow.SettingsError` when a query flag that rank's
    ``--unit`` does not read is given (``--aggregation`` with --unit box or region,
    ``--region-block`` with any unit but region, ...: the table
    :data:`~napari_al.core.workflow.UNITS_USING`), or ``--candidate-factor`` without
    ``--diversity``: it would change nothing, and silently ignoring it misleads."""
    from napari_al.core.workflow import UNITS_USING, QuerySettings, SettingsError, flags_given

    unit = args.unit or "image"  # rank's default unit
    for name, units in UNITS_USING.items():
        given = flags_given(QuerySettings, args, only=[name])
        if not given:
            continue
        which = " or ".join(units)
        if name == "candidate_factor":  # the candidates a diverse image pick draws from
            which += " with --diversity"
        if unit not in units:
            raise SettingsError(
                f"{given[0]} only applies to --unit {which} (this is --unit {unit}); "
                f"drop it or use --unit {which}"
            )
        if name == "candidate_factor" and args.diversity is None:
            raise SettingsError(
                f"{given[0]} only applies with --diversity (this ranks by score alone); drop "
                "it or add --diversity coreset or kmeans++"
            )


def question_rows(questions: list[Any], paths: dict[int, str]) -> list[dict[str, Any]]:
    """One JSON-ready row per question: rank, image, the question in words, its keys, and
    every figure of the value rule."""
    rows = []
    for rank, q in enumerate(questions, 1):
        row = {"rank": rank, "image": paths.get(q.image_id, str(q.image_id)), **q.to_dict()}
        row.update(text=q.text, keys=[f"{k} {what}" for k, what in q.keys])
        rows.append(row)
    return rows


def cmd_rank_questions(args: argparse.Namespace, detector_of: Any) -> int:
    """Plan the queue with the project's model (``detector_of(store, args)``), store the first
    ``--budget`` questions, print them (``--json``: as JSON)."""
    from napari_al.core import workflow

    query = workflow.from_args(workflow.QuerySettings, args)
    try:
        workflow.check_query(query)  # --diversity spreads image queries only
    except workflow.SettingsError as exc:
        raise workflow.flag_named(exc, workflow.QuerySettings) from None
    refuse_unit_flags(args)  # --region-block, --candidate-factor
    dialog = workflow.from_args(workflow.DialogSettings, args)
    if workflow.from_args(workflow.DistributedSettings, args).active:
        print(
            "note: the question planner scores in this process (--scheduler and --dask-workers "
            "apply to --unit image, box and region)",
            file=sys.stderr,
        )
    with open_store(args.project, busy="ranking") as store:
        detector = detector_of(store, args)
        update, close = progress_bar("scoring")
        skipped: list[int] = []

        def on_skip(image_id: int, message: str) -> None:
            skipped.append(image_id)
            warn(f"skipped unreadable image {message}; {SKIPPED_FIX}")

        try:
            queue = workflow.plan_questions(
                store, detector, dialog, query=query, progress=update, on_skip=on_skip, save=True
            )
        finally:
            close()
        mode, why = workflow.supervision(store, dialog)
        paths = {r.id: r.path for r in store.images()}
        n_pool = len(workflow.pool_image_ids(store))
    rows = question_rows(queue[: query.budget], paths)
    print(f"supervision: {mode} ({why})", file=sys.stderr)
    if not rows:
        why = "no question is worth its seconds there (every value <= 0); draw instead"
        if n_pool and len(skipped) >= n_pool:
            why = ALL_SKIPPED
        print(nothing_to("ask", n_pool, why, args.project), file=sys.stderr)
    if args.json:
        print(json_text(rows, indent=2))
        return 0
    for row in rows:
        where = ""
        if row["xyxy"] is not None:
            where = " [" + ", ".join(f"{v:.0f}" for v in row["xyxy"]) + "]"
        print(
            f"{row['rank']:>3}. {row['value']:.4f}  {row['kind']:<6} {shown(row['image'])}{where}  "
            f"{row['text']}  (P(yes) {row['p_yes']:.2f}, gain {row['gain']:.2f}, "
            f"{row['seconds']:.1f} s, saves {row['saved_s']:.1f} s)  keys: {', '.join(row['keys'])}"
        )
    if not rows:
        return 0
    print(
        f"saved as the project's question queue ({len(queue)} questions, the first "
        f"{len(rows)} stored; open the project in napari: J asks the next)",
        file=sys.stderr,
    )
    return 0
