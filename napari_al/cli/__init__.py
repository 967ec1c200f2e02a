"""The ``napari-al`` command line: project management headless, and napari on a project.

The round commands (train, predict, evaluate, rank), the applications (open, demo, simulate),
the parser and :func:`main` are here; :mod:`~napari_al.cli.project` holds the data commands
(init, import, export, add-class, info), :mod:`~napari_al.cli.evaluate` the printing of an
evaluation and a score calibration, :mod:`~napari_al.cli.review` mark-region-complete,
:mod:`~napari_al.cli.common` what all share (the one-line :class:`CliError`,
:func:`user_message`, the parser class, progress bars).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_al.cli.cluster import dask_arguments, dask_cluster
from napari_al.cli.common import (
    FORMATS_IN,
    FORMATS_OUT,
    KEPT_BY_EXPORT,
    KEPT_BY_PREDICT,
    KEPT_BY_RANK,
    CliError,
    Parser,
    bars_shown,
    counted,
    json_text,
    log_warnings_held,
    open_store,
    progress_bar,
    quiet_broken_pipe,
    rank_notes,
    require_classes,
    say,
    skip_reporter,
    stop_on_sigint,
    tile_progress_bars,
    untrained_warning,
    user_message,
    warn,
)
from napari_al.cli.evaluate import (
    calibration_args,
    calibration_fix,
    calibration_line,
    print_eval,
)
from napari_al.cli.project import (
    add_info_command,
    cmd_add_class,
    cmd_export,
    cmd_import,
    cmd_init,
)
from napari_al.cli.questions import (
    add_question_arguments,
    cmd_rank_questions,
    refuse_question_flags,
    refuse_unit_flags,
)
from napari_al.cli.review import add_review_commands, examples_text
from napari_al.cli.training import (
    NOTHING_TO_TRAIN,
    check_before_training,
    in_rank,
    interrupted,
    launch_ranks,
    nproc_argument,
    train_failed,
)
from napari_al.cli.viewer import cmd_demo, cmd_open
from napari_al.core.names import shown

__all__ = ["CliError", "build_parser", "main", "user_message"]


def _detector(store, args: argparse.Namespace):
    from napari_al.core import workflow

    require_classes(store, args.project)
    with log_warnings_held() as held:  # said once, below
        detector = workflow.load_model(store, workflow.from_args(workflow.ModelSettings, args))
    if not workflow.is_main_process():  # a rank > 0 of train --nproc: rank 0 says it
        return detector
    print(f"detector: {workflow.describe(detector)}", file=sys.stderr)
    for message in held:  # e.g. no pretrained weights found: the line above says it already
        if message not in detector.build_message or detector.model_version:
            warn(message)
    why = untrained_warning(store, detector, args.project)
    if why is not None and args.func is not cmd_train:
        print(f"warning: {why}", file=sys.stderr)
    return detector


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_al.core import workflow

    if args.nproc > 1 and not in_rank():  # start the ranks; rank 0 prints
        return launch_ranks(args, args.argv)
    settings = workflow.from_args(workflow.TrainSettings, args)
    with open_store(args.project, busy="training") as store:
        if not in_rank():  # the ranks of --nproc were checked before torchrun started them
            check_before_training(store, args)
        detector = _detector(store, args)
        total = settings.steps if settings.epochs is None else None  # epochs: known at step 1
        main_rank = workflow.is_main_process()
        bar = tqdm(
            total=total,
            desc="training",
            unit="step",
            file=sys.stderr,
            leave=False,
            disable=not (main_rank and bars_shown()),
        )
        before = store.latest_model_version()

        def progress(step: int, total: int, loss: float, epoch: float) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3f}", epoch=f"{epoch:.1f}")

        on_skip, _ = skip_reporter()
        try:
            with stop_on_sigint() as stop:  # Ctrl+C stops between steps; twice: at once
                outcome = workflow.train_model(
                    store, detector, settings, progress=progress, should_stop=stop.is_set,
                    on_skip=on_skip,
                )  # fmt: skip
            if not main_rank:  # a rank > 0 of --nproc: rank 0 saves, reports, evaluates
                return 130 if stop.is_set() else 0
            if stop.is_set() and outcome.model_version is None:
                raise KeyboardInterrupt
        except KeyboardInterrupt:  # Ctrl+C: say what was kept (exit 130, as for SIGINT)
            bar.close()
            print(f"napari-al: {interrupted(store, before)}", file=sys.stderr)
            return 130
        except Exception as exc:  # nothing was saved: say so, and which model stays in use
            error = train_failed(exc, detector.model_version)
            if error is None:
                raise
            raise error from exc
        finally:
            bar.close()
        result = outcome.result
        if outcome.model_version is None and result.stopped_reason == "no_data":
            raise CliError(result.message if outcome.skipped_all else NOTHING_TO_TRAIN)
        if outcome.model_version is None:
            raise CliError(
                f"training stopped ({result.stopped_reason}) after {result.steps} steps; "
                "the previous model stays in use"
            )
        loss = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
        print(
            f"trained {counted(result.steps, 'step')} on {examples_text(outcome)} "
            + (f"on {result.world_size} processes " if result.world_size > 1 else "")
            + f"(final loss {loss}); saved model version {outcome.model_version} "
            f"to {outcome.checkpoint}"
        )
        if outcome.removed_partial_writes:
            mb = outcome.removed_partial_bytes / 1e6
            say(
                "note",
                f"removed {counted(outcome.removed_partial_writes, 'leftover temporary file')} "
                f"({mb:.0f} MB) of checkpoint saves killed before they finished, from "
                f"{outcome.checkpoint.parent}",
            )
        calibration = workflow.from_args(workflow.CalibrationSettings, args)
        if args.evaluate:
            if not store.images(split="val", review_state="complete"):
                print(
                    "note: no reviewed val images, so no evaluation; the model is saved "
                    f"(napari-al evaluate {args.project} --split SPLIT)",
                    file=sys.stderr,
                )
            else:
                return print_eval(store, detector, "val", False, calibration)
        # no evaluation: calibrate on the judged boxes only (no pass over a split)
        cal = workflow.calibrate_model(store, detector, calibration, split=None)
        print(calibration_line(cal, calibration_fix(store, args.project)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from napari_al.core import workflow

    with open_store(args.project, busy="predicting") as store, dask_cluster(args) as cluster:
        detector = _detector(store, args)
        ids = workflow.images_to_predict(store, split=args.split)
        update, close = progress_bar("predicting")
        on_skip, skipped = skip_reporter()
        try:
            done = workflow.predict_images(
                store,
                detector,
                ids,
                progress=update,
                on_skip=on_skip,
                distributed=cluster,
                tile_progress=tile_progress_bars(lambda i: Path(store.image(i).path).name),
            )
        finally:
            close()
        target = f"split {args.split}" if args.split else "the project"
        n_boxes = sum(len(store.boxes(image_id=i, statuses=("predicted",))) for i in done)
        note = f" ({counted(len(skipped), 'unreadable image')} skipped)" if skipped else ""
        print(
            f"predicted {counted(len(done), 'image')} still to review in {target}: "
            f"{counted(n_boxes, 'predicted box')} stored{note}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_al.core import workflow

    calibration = workflow.from_args(workflow.CalibrationSettings, args)
    with open_store(args.project, reads_only=True) as store:
        require_classes(store, args.project)
        workflow.complete_rows(store, args.split)  # none: say so before a model is loaded
        detector = _detector(store, args)
        return print_eval(store, detector, args.split, args.json, calibration)


def _query_rows(items: Sequence, paths: dict[int, str]) -> list[dict]:
    rows = []
    for rank, item in enumerate(items, 1):
        row = {
            "rank": rank,
            "image": paths.get(item.image, str(item.image)),
            "image_id": item.image,
            "score": item.score,
            "unit": item.unit,
            "breakdown": item.breakdown,
        }
        if item.box is not None:
            row["box"] = [float(v) for v in item.box]
        if item.index is not None:
            row["box_index"] = int(item.index)
        rows.append(row)
    return rows


def cmd_rank(args: argparse.Namespace) -> int:
    from napari_al.core import workflow

    if args.unit == "question":  # the dialog planner's queue (cli/questions.py)
        return cmd_rank_questions(args, _detector)
    refuse_question_flags(args)
    settings = workflow.from_args(workflow.QuerySettings, args)
    try:
        workflow.check_query(settings)
    except workflow.SettingsError as exc:
        raise workflow.flag_named(exc, workflow.QuerySettings) from None
    refuse_unit_flags(args)  # e.g. --region-block with --unit image
    with open_store(args.project, busy="ranking") as store, dask_cluster(args) as cluster:
        detector = _detector(store, args)
        update, close = progress_bar("scoring")
        on_skip, skipped = skip_reporter()
        try:
            items = workflow.rank_pool(
                store, detector, settings, progress=update, on_skip=on_skip, distributed=cluster
            )
        finally:
            close()
        paths = {r.id: r.path for r in store.images()}
        n_pool = len(workflow.pool_image_ids(store))
    rows = _query_rows(items, paths)
    for note in rank_notes(len(rows), settings, n_pool, len(skipped), args.project):
        print(note, file=sys.stderr)
    if args.json:
        print(json_text(rows, indent=2))
        return 0
    for row in rows:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in row["breakdown"].items())
        box = ""
        if "box" in row:  # the box, or the region, of a box or region query
            box = f" {row['unit']} [" + ", ".join(f"{v:.0f}" for v in row["box"]) + "]"
        image = shown(row["image"])
        print(f"{row['rank']:>3}. {row['score']:.4f}  {image}{box}  ({parts})")
    if rows:
        print(
            "saved as the project's query list (open the project in napari to walk it)",
            file=sys.stderr,
        )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Benchmark strategies with a simulated oracle (see docs/simulation.md)."""
    from napari_al import simulation as sim

    if args.strategies == "list":
        print(sim.describe_strategies())
        return 0
    if args.report_only:
        try:
            plot, summary = sim.write_report(Path(args.out))
        except ValueError as exc:  # a results.csv of other columns: one line
            raise CliError(str(exc)) from exc
        if summary is None:
            raise CliError(f"{args.out}: no {sim.RESULTS_CSV} to report on")
        print(f"wrote {plot} and {summary}")
        return 0
    try:
        config = sim.config_from_args(args)
        outputs = sim.run_simulation(config, Path(args.out), progress=not args.no_progress)
    except ValueError as exc:  # bad settings or data: one line
        raise CliError(str(exc)) from exc
    if outputs.summary is not None:
        print(outputs.summary.read_text())
    print(f"results: {outputs.csv}, {outputs.plot}, {outputs.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="napari-al",
        description="Human-in-the-loop active learning of object detectors (napari and CLI).",
    )
    from napari_al import __version__

    parser.add_argument("--version", action="version", version=f"napari-al {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "init",
        help="make DIR a project: its images join the pool (a VOC or YOLO folder with its labels)",
    )
    p.add_argument("project", metavar="DIR")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="import a dataset (VOC, COCO, YOLO or a folder of images)")
    p.add_argument("project", metavar="DIR")
    p.add_argument("path", metavar="PATH", help="dataset folder, COCO JSON file, or one image")
    p.add_argument("--format", required=True, choices=FORMATS_IN)
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip malformed files and boxes (reported as warnings) instead of refusing the import",
    )
    p.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="import images whose content is already in the project under another name",
    )
    p.add_argument(
        "--image-root",
        metavar="DIR",
        help="coco: the folder the images' file_name is relative to (default: the JSON's folder)",
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="voc: the image folder, when not JPEGImages/, images/ or beside the XML files",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export the human labels (VOC, COCO or YOLO)")
    p.add_argument("project", metavar="DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", required=True, choices=FORMATS_OUT)
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing files; an earlier napari-al export in OUT, of any format, is "
        "replaced whole (its files this export does not write are removed; no other file is)",
    )
    p.add_argument("--all", action="store_true", help="include images not yet marked complete")
    p.add_argument(
        "--copy-images",
        action="store_true",
        help="voc, yolo: copy the images into OUT (yolo: the images/ + labels/ layout "
        "Ultralytics trains on; automatic when two images share a file name)",
    )
    p.set_defaults(func=cmd_export, interrupted=KEPT_BY_EXPORT)

    p = sub.add_parser("add-class", help="add object classes to the project (before labelling)")
    p.add_argument("project", metavar="DIR")
    p.add_argument("names", metavar="NAME", nargs="+")
    p.set_defaults(func=cmd_add_class)

    add_info_command(sub)

    add_review_commands(sub)
    _add_round_commands(sub)
    _add_app_commands(sub)
    return parser


def _model_args(p: argparse.ArgumentParser, arch: bool = False) -> None:
    """The model flags, built from :class:`~napari_al.core.workflow.ModelSettings`."""
    from napari_al.core.workflow import ModelSettings, add_arguments

    only = ["device", "min_size", "max_size"] + (["arch", "weights", "anchors"] if arch else [])
    add_arguments(p.add_argument_group("model"), ModelSettings, only=only)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``, the torch CPU threads of the command (applied in :func:`main`)."""
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="torch CPU threads for this command (default: torch's, one per core)",
    )


def _add_round_commands(sub: Any) -> None:
    """train, predict, evaluate, rank: the round's steps, flags from the workflow settings."""
    from napari_al.core.workflow import QuerySettings, TrainSettings, add_arguments

    p = sub.add_parser("train", help="fine-tune the detector on the project's labels")
    p.add_argument("project", metavar="DIR")
    _model_args(p, arch=True)
    group = p.add_argument_group("training")
    length = ("steps", "epochs")  # one or the other
    add_arguments(group.add_mutually_exclusive_group(), TrainSettings, only=length)
    rest = [f.name for f in dataclasses.fields(TrainSettings) if f.name not in length]
    add_arguments(group, TrainSettings, only=[n for n in rest if n != "threads"])
    _threads_arg(p)  # as on predict, evaluate and rank; also TrainSettings.threads
    nproc_argument(p)
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="evaluate on the val split after (and measure the score calibration there)",
    )
    calibration_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="store the detector's boxes for the images still to review")
    p.add_argument("project", metavar="DIR")
    _model_args(p)
    _threads_arg(p)
    p.add_argument(
        "--split",
        choices=("pool", "train", "val", "test"),
        help="only this split (default: every image not yet complete, pool first)",
    )
    dask_arguments(p)
    p.set_defaults(func=cmd_predict, interrupted=KEPT_BY_PREDICT)

    p = sub.add_parser(
        "evaluate",
        help="mAP@0.5 and COCO AP on a split's reviewed images, and the score calibration error",
    )
    p.add_argument("project", metavar="DIR")
    _model_args(p)
    _threads_arg(p)
    p.add_argument("--split", default="val", choices=("train", "val", "test", "pool"))
    p.add_argument("--json", action="store_true")
    calibration_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("rank", help="rank the pool: what to annotate next (saved in the project)")
    p.add_argument("project", metavar="DIR")
    _model_args(p)
    _threads_arg(p)
    add_arguments(p.add_argument_group("query"), QuerySettings)
    add_question_arguments(p)
    dask_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rank, interrupted=KEPT_BY_RANK)


def _add_app_commands(sub: Any) -> None:
    """open, demo, simulate: the applications beside the headless commands."""
    p = sub.add_parser("open", help="open napari with the plugin docked on DIR")
    p.add_argument("project", metavar="DIR")
    p.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window, then quit")
    p.add_argument("--quit", action="store_true", help="quit right after opening (smoke test)")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("demo", help="open napari on a project made from the BCCD sample")
    p.add_argument(
        "--project",
        default="napari-al-demo",
        metavar="DIR",
        help="where to create the demo project (default: ./napari-al-demo)",
    )
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="save a screenshot of the window once the first round has run, then quit",
    )
    p.add_argument("--quit", action="store_true", help="quit right after opening (smoke test)")
    from napari_al.core.workflow import ModelSettings, TrainSettings, add_arguments

    first = p.add_argument_group("the first round (the widget's Train and Model fields)")
    add_arguments(first, TrainSettings, only=["steps"])
    add_arguments(first, ModelSettings, only=["device", "min_size"])
    p.set_defaults(func=cmd_demo)

    from napari_al.simulation import add_arguments as simulate_arguments

    p = sub.add_parser(
        "simulate",
        help="benchmark strategies in annotation seconds with a simulated oracle",
        description="Replay active learning on a labelled dataset with an oracle that answers "
        "from the ground truth at published human costs; writes results.csv, a plot and a "
        "Markdown summary to --out, and resumes a stopped run.",
    )
    simulate_arguments(p)
    p.set_defaults(func=cmd_simulate)


def _one_line_warnings() -> None:
    """Python warnings (e.g. a multi-page TIFF read as its first page) as one line each on
    stderr, ``warning: MESSAGE``, without the source line."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        warn(str(message))

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-al`` console script. Every command (``--help`` too) ends
    quietly when stdout's reader closes early (:func:`~napari_al.cli.common.quiet_broken_pipe`).
    """
    return quiet_broken_pipe(lambda: _main(argv))


#: Path arguments, their name in the usage line, and what they name.
_PATH_ARGUMENTS = (
    ("project", "DIR", "the project folder"),
    ("path", "PATH", "the dataset folder or file"),
    ("out", "OUT", "the folder (or, for coco, the .json file) to write"),
)


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    """An empty path (``napari-al init "$DIR"`` with DIR unset) is the current folder to the
    operating system: ``init ""`` made the working folder a project. Refused (CliError)."""
    for name, metavar, what in _PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise CliError(f"{metavar} is empty; name {what} (is a shell variable unset?)")


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc: the ranks' too
    _one_line_warnings()
    try:
        _refuse_empty_paths(args)
        if getattr(args, "threads", None) is not None:  # train, predict, evaluate, rank
            from napari_al.runtime import set_torch_threads

            set_torch_threads(args.threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        kept = getattr(args, "interrupted", None)  # what the command keeps of its work
        print("napari-al: interrupted" + (f"; {kept}" if kept else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away: main ends quietly
        raise
    except Exception as exc:  # one line for the user, not a trace
        message = user_message(exc)
        if message is None:
            raise
        from napari_al.core.names import escaped

        print(f"napari-al: error: {escaped(message)}", file=sys.stderr)  # one line
        return 1
