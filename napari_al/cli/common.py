"""What every ``napari-al`` command shares: the one-line error, the parser, progress bars,
opening a project."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

FORMATS_IN = ("voc", "coco", "yolo", "images")
FORMATS_OUT = ("voc", "coco", "yolo")


class CliError(Exception):
    """An error reported to the user as one line, exiting non-zero."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``napari-al train: error: ...``), exit status 2."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(sys.argv[1:] if args is None else args)  # for error's hints
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        if "arguments are required" in message and "--" in getattr(self, "_argv", []):
            # after '--' every word is a positional (a name starting with '-')
            message = f"{message}; every word after '--' is read as a name: put options before it"

        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if bad:
            choices = re.findall(r"'([^']*)'", bad.group(2))
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            if close:
                message = f"{message}; did you mean {close[0]!r}?"
        flag = re.match(r"argument (--[\w-]+)(?:/\S+)?: expected one argument$", message)
        if flag:
            # argparse takes a value starting with '-' (but not a plain number) for a flag
            message = f"{message}; a value starting with '-' goes after '=': {flag.group(1)}=-..."
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def progress_bar(
    desc: str, unit: str = "img"
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A tqdm progress callback ``(done, total)`` and a function that closes the bar; no bar
    when stderr is not a terminal (:func:`bars_shown`)."""
    from tqdm import tqdm

    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                leave=False,
                mininterval=0.5,
                disable=not bars_shown(),
            )
        b = bar["bar"]
        b.total = total
        b.update(done - b.n)

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close


def bars_shown() -> bool:
    """Whether progress bars are drawn: only when stderr is a terminal. A bar that is not kept
    (``leave=False``) erases itself with a carriage return and spaces, which a terminal shows
    as nothing and a pipe or log file keeps, so the next line (an error, the summary) would
    follow a bar's remnant on the same line."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def counted(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``1 image``, ``3 images``, ``2 boxes``
    (:func:`napari_al.core.project.plural`)."""
    from napari_al.core.project import plural

    return f"{n} {plural(n, word)}"


def tile_progress_bars(
    name: Callable[[int], str] | None = None,
) -> Callable[[int, int, int], None]:
    """A ``tile_progress(image id, windows done, windows in total)`` callback for a large
    image predicted tile by tile: one bar of windows per image, labelled ``name(image id)``
    (e.g. its file name; default ``image <id>``), closed when it is done."""
    bars: dict[int, tuple[Callable[[int, int], None], Callable[[], None]]] = {}

    def update(image_id: int, done: int, total: int) -> None:
        if image_id not in bars:
            label = name(image_id) if name is not None else f"image {image_id}"
            bars[image_id] = progress_bar(f"{label}, tile by tile", unit="window")
        bars[image_id][0](done, total)
        if done >= total:
            bars.pop(image_id)[1]()

    return update


def warn(message: str) -> None:
    """``warning: MESSAGE`` as one line on stderr, above any progress bar being drawn (tqdm
    clears the bars, writes the line and draws them again), never inside a bar's line; a
    control character of the message (a file name's line break) is written escaped
    (:func:`~napari_al.core.names.escaped`)."""
    from tqdm import tqdm

    from napari_al.core.names import escaped

    tqdm.write(f"warning: {escaped(message)}", file=sys.stderr)


class _Hold(logging.Handler):
    """Keeps the text of each record it is handed (WARNING and above) in ``held``."""

    def __init__(self, held: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.held = held

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record.getMessage())


@contextlib.contextmanager
def log_warnings_held() -> Iterator[list[str]]:
    """napari_al's log warnings of the ``with`` block held in the list it yields, not printed,
    for the caller to say once (:func:`warn`) those its own lines do not say already: a
    detector built without pretrained weights warns of it, and the detector line says it
    again (its build message). An exception out of the block says them all (one line each)."""
    logger = logging.getLogger("napari_al")
    held: list[str] = []
    handler, propagate = _Hold(held), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # nor through the root's handlers (or logging's last resort)
    try:
        yield held
    except BaseException:
        for message in held:
            warn(message)
        raise
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def say(prefix: str, message: str) -> None:
    """``PREFIX: MESSAGE`` as one line on stderr (``note``, ``warning``), a control character
    of the message written escaped (:func:`~napari_al.core.names.escaped`)."""
    from napari_al.core.names import escaped

    print(f"{prefix}: {escaped(message)}", file=sys.stderr)


def skip_reporter() -> tuple[Callable[[int, str], None], list[int]]:
    """A callback that warns on stderr about each unreadable image (:func:`warn`, with what
    to do), and the ids it saw."""
    skipped: list[int] = []

    def report(image_id: int, message: str) -> None:
        skipped.append(image_id)
        warn(f"skipped unreadable image {message}; {SKIPPED_FIX}")

    return report, skipped


def nothing_to(verb: str, n_pool: int, why: str, project: str = "DIR") -> str:
    """The one-line note of a rank that returned nothing: an empty pool (the fix names the
    ``project`` directory), or ``why`` (what scored nothing, and the fix) when ``n_pool``
    images are still to review."""
    if n_pool == 0:
        return (
            f"nothing to {verb}: the pool has no image still to review (import unlabelled images "
            f"with 'napari-al import {shlex.quote(str(project))} --format images FOLDER')"
        )
    return f"nothing to {verb} in the {counted(n_pool, 'pool image')} still to review: {why}"


def json_text(value: Any, **kwargs: Any) -> str:
    """``value`` as strict JSON for ``--json`` output: NaN and infinities (an AP with no ground
    truth, say) become ``null``, which every JSON parser reads (Python's ``json`` module would
    write ``NaN``, which JavaScript's ``JSON.parse`` and strict parsers refuse); numpy numbers
    become plain ones. ``kwargs`` go to ``json.dumps`` (``indent``, ``sort_keys``)."""
    import json
    import math

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:
            v = v.item()  # a numpy scalar
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return json.dumps(plain(value), allow_nan=False, default=float, **kwargs)


def untrained_warning(store: Any, detector: Any, project: str) -> str | None:
    """Why results of a detector that is no model version yet are weak
    (:func:`napari_al.core.workflow.untrained_reason`, the notebook's wording too), and the
    CLI's fix; None when it is one."""
    from napari_al.core.workflow import untrained_reason

    why = untrained_reason(store, detector)
    if why is None:
        return None
    return f"{why} (train first: napari-al train {shlex.quote(str(project))})"


#: What ``predict`` and ``rank`` keep when Ctrl+C stops them (after "interrupted").
KEPT_BY_PREDICT = "the images predicted before it keep their new boxes, the others their old"
KEPT_BY_RANK = "the project's previous query list stays"
KEPT_BY_EXPORT = "the files it had written were removed (files replaced with --force keep the new)"


#: Why a rank or question queue is empty when every pool image was unreadable.
ALL_SKIPPED = "every one was skipped as unreadable (see the warnings above)"


def rank_notes(
    n_items: int, q: Any, n_pool: int, n_skipped: int, project: str = "DIR"
) -> list[str]:
    """What ``napari-al rank`` says about a short result: nothing ranked (:func:`nothing_to`,
    why), or fewer regions than ``q.budget`` (a :class:`QuerySettings`) because the others
    scored 0."""
    if not n_items:
        why = empty_rank_reason(q.unit, q.strategy, n_pool, n_skipped)
        return [nothing_to("rank", n_pool, why, project)]
    if q.unit == "region" and n_items < q.budget:
        return [
            f"note: {counted(n_items, 'region')}, fewer than --budget {q.budget}: no other "
            f"region of the pool scores above 0 under --strategy {q.strategy} outside the "
            "regions marked complete"
        ]
    return []


def empty_rank_reason(unit: str, strategy: str, n_pool: int, n_skipped: int) -> str:
    """Why ``napari-al rank`` returned nothing for a pool of ``n_pool`` images still to review,
    ``n_skipped`` of them unreadable, and what to try instead."""
    if n_skipped >= n_pool:
        return ALL_SKIPPED
    if unit == "box":
        return "the model shows no box there not judged already; try --unit region or --unit image"
    return (
        f"every {unit} scores 0 under --strategy {strategy} (no uncertain box, no possibly "
        "missed object); try --strategy entropy+missed or --unit image"
    )


#: What to do about an image skipped as unreadable (the end of its warning).
SKIPPED_FIX = "replace or re-save the file ('napari-al info DIR' lists every unreadable one)"


def not_a_project(path: Path) -> str:
    """Why ``path`` is not a project, and the fix that applies to it: the store file itself
    (give its folder), a file, a store path that is a folder (rename or remove it), a folder
    inside a project or holding projects (give the project), a missing folder, a folder of
    images (``napari-al init`` it), or any other folder (give a project's folder; ``/`` or a
    home folder is never offered to ``init``)."""
    from napari_al.core.project_paths import enclosing_project, holds_images, projects_in
    from napari_al.core.store import STORE_FILENAME, store_folder_error

    quoted = shlex.quote(str(path))
    if path.name == STORE_FILENAME and path.is_file():
        return f"{path}: give the project's folder, {path.parent}, not its store file"
    if path.exists() and not path.is_dir():
        return (
            f"{path}: is a file, not a project folder; give the folder that holds "
            f"{STORE_FILENAME} (or make one: napari-al init DIR)"
        )
    if (path / STORE_FILENAME).is_dir():
        return store_folder_error(path)
    around = enclosing_project(path)
    if around is not None:
        what = "is inside" if path.exists() else "no such folder; it would be inside"
        return (
            f"{path}: {what} the project {around}, not a project itself: give {around} "
            f"(the folder that holds its {STORE_FILENAME})"
        )
    if not path.exists():
        fix = f"napari-al init {quoted} makes one"
        return f"{path}: not a napari-al project, no such folder ({fix})"
    inside = projects_in(path)
    if inside:
        if len(inside) == 1:
            return f"{path}: not a napari-al project, but it holds one: give {inside[0]}"
        names = ", ".join(str(p) for p in inside[:3])
        more = f" (and {len(inside) - 3} more)" if len(inside) > 3 else ""
        return (
            f"{path}: not a napari-al project, but it holds {len(inside)} projects: give one of "
            f"{names}{more}"
        )
    if holds_images(path):
        return f"{path}: not a napari-al project (make it one: napari-al init {quoted})"
    return (
        f"{path}: not a napari-al project (no {STORE_FILENAME} in it), nor a folder of images "
        f"to make one of; give a project's folder (the one holding {STORE_FILENAME}), or make "
        "a project of a folder of images: napari-al init DIR"
    )


@contextlib.contextmanager
def open_store(project: str, busy: str | None = None, *, reads_only: bool = False) -> Iterator[Any]:
    """The project's store for a ``with`` block; with ``busy`` (what the command does, e.g.
    ``training``) the block also holds the project lock, taken first, so that a second run
    fails at once with one line naming the holder (:func:`~napari_al.core.store.project_lock`).
    A path that is no project, or whose store file is empty (an interrupted init), is a
    :class:`CliError` saying which, before anything is written.

    A project folder that cannot be written (a read-only file system, no write permission)
    is one line naming it and the fix (:class:`~napari_al.core.store.ReadOnlyProjectError`),
    before the command does anything, unless the command only reads (``reads_only``: info,
    export, evaluate), which then gets a read-only store (``store.read_only``).
    """
    from napari_al.core.project import is_project
    from napari_al.core.store import ProjectStore, empty_store_error, is_empty_store, project_lock

    path = Path(project)
    if not is_project(path):
        raise CliError(not_a_project(path))
    if is_empty_store(path):  # an interrupted init: say so before the lock file is made
        raise CliError(empty_store_error(path))
    with contextlib.ExitStack() as stack:
        if busy is not None:
            stack.enter_context(project_lock(path, busy))
        yield stack.enter_context(ProjectStore.open(path, read_only=None if reads_only else False))


def require_classes(store: Any, project: str) -> None:
    """:class:`CliError` (one line saying how to add one) when the project has no classes."""
    if not store.classes():
        raise CliError(
            f"the project has no classes yet: add them with 'napari-al add-class "
            f"{project} NAME [NAME ...]' (or the Class field in napari), or import "
            "labelled data with 'napari-al import'"
        )


#: Exit status when the reader of stdout went away (``napari-al info DIR | head -1``): a
#: process killed by SIGPIPE reports 128 + 13 to the shell.
BROKEN_PIPE_STATUS = 141


def printable_file_names() -> None:
    """Let stdout and stderr print any file name: one that is not valid UTF-8 comes from the
    operating system with surrogate escapes (``os.fsdecode``), which a strict UTF-8 stream
    refuses with a UnicodeEncodeError; such characters print as ``\\udcNN`` instead."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def quiet_broken_pipe(run: Callable[[], int]) -> int:
    """``run()``, with stdout flushed before returning; when stdout's reader closed early
    (``| head``), no error message: the rest of the output goes to /dev/null (at exit too)
    and the status is :data:`BROKEN_PIPE_STATUS` (Python's documented recipe, "Note on
    SIGPIPE" in the ``signal`` module's documentation)."""
    import os

    printable_file_names()
    try:
        try:
            return run()
        finally:
            sys.stdout.flush()  # a reader gone shows here, not at interpreter exit
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # stdout without a descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can act on, or ``None`` for a bug.

    User errors: :class:`CliError`, OSError (a file missing, denied, a full disk), the store's,
    the formats' and the image reader's errors, the workflow's (no classes, nothing to train
    or evaluate on, a bad setting or device) and an unknown strategy name.
    """
    known: list[type[BaseException]] = [CliError, OSError]  # files: missing, denied, full
    for module, name in (
        ("napari_al.core.store", "StoreError"),
        ("napari_al.core.formats", "FormatError"),
        ("napari_al.core.images", "ImageReadError"),
        ("napari_al.core.workflow.errors", "WorkflowError"),
        ("napari_al.core.scoring.registry", "StrategyError"),
    ):
        try:
            known.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            continue
    if isinstance(exc, sqlite3.OperationalError) and "readonly database" in str(exc).lower():
        from napari_al.core.store import STORE_FILENAME

        return (  # the folder became read-only after the store opened (a remount)
            f"the project's store, {STORE_FILENAME}, cannot be written now ({exc}): its folder "
            "or file became read-only (a remount, changed permissions); make them writable "
            "and run the command again (the changes committed before are kept)"
        )
    if isinstance(exc, sqlite3.DatabaseError) and any(
        words in str(exc).lower() for words in _DAMAGED_STORE
    ):  # damage found by a query, after the store opened
        from napari_al.core.store import STORE_FILENAME

        return (
            f"the project's store, {STORE_FILENAME}, cannot be read ({exc}); restore it from a "
            "backup or re-import an export into a new project (docs/store.md, 'Backups')"
        )
    return str(exc) if isinstance(exc, tuple(known)) else None


#: SQLite's words for a file it cannot read (a damaged page, a full or failing disk).
_DAMAGED_STORE = ("malformed", "not a database", "disk i/o error", "database or disk is full")


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[threading.Event]:
    """Ctrl+C as a request to stop: the first SIGINT sets the yielded event (a long run polls
    it, e.g. as ``should_stop``, and stops cleanly between steps); a second raises
    KeyboardInterrupt at once. Unlike a KeyboardInterrupt raised wherever Python happens to be
    (it is lost when it lands in a finalizer), a flag cannot be swallowed. The previous handler
    is restored on exit; outside the main thread (no signal handlers there) the event is never
    set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
