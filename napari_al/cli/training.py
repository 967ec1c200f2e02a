"""``napari-al train``'s helpers: the one-line messages of a failed or interrupted run, and
training on several processes (``--nproc N``).

``napari-al train DIR --nproc N`` (N > 1) takes the project lock, then starts
``python -m torch.distributed.run --standalone --nproc-per-node N -m napari_al.cli train DIR
...`` (PyTorch's torchrun, one machine) with the same arguments and waits for it. Each of the
N processes is one rank of a DistributedDataParallel run (backend ``nccl`` on CUDA, one GPU
per rank; ``gloo`` on the CPU); rank 0 writes the checkpoint and the model version, prints
and evaluates, the other ranks only read the store. The launching process lends them its
project lock (:func:`~napari_al.core.store.lock.lend_env`) and holds it until they end.
``kill`` of the launching process is passed on to torchrun (which ends the ranks); after
``kill -9`` the ranks end within a second by themselves (they watch their lender), so no rank
writes the store once the lock is free.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

from napari_al.cli.common import CliError, open_store, require_classes

#: Set in the ranks' environment by torchrun; more than 1: this process is one of several.
_WORLD_SIZE_ENV = "WORLD_SIZE"
#: ``train``'s one line when no reviewed image gives a training example.
NOTHING_TO_TRAIN = (
    "nothing to train on yet: no reviewed image has a box (accept, correct or draw boxes in "
    "napari, or import labelled data); nothing was saved"
)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def nproc_argument(p: Any) -> None:
    """``--nproc N``: train on N processes (torchrun, DistributedDataParallel)."""
    p.add_argument(
        "--nproc",
        type=_positive,
        default=1,
        metavar="N",
        help="train on N processes together (PyTorch DDP through torchrun: one GPU each on "
        "CUDA, else N CPU processes; --batch-size is per process; default 1)",
    )


def in_rank() -> bool:
    """Whether this process is a rank of a multi-process run (torchrun started it)."""
    try:
        return int(os.environ.get(_WORLD_SIZE_ENV, "1")) > 1
    except ValueError:
        return False


def rank_argv(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` (or ``--nproc=N``, or an abbreviation of it): the ranks
    know their number from torchrun, and torchrun's own parser would take ``--nproc`` for an
    ambiguous abbreviation of its ``--nproc-per-node``."""
    out: list[str] = []
    skip = False
    for token in argv:
        name = token.split("=", 1)[0]
        if skip:
            skip = False
        elif len(name) >= len("--np") and "--nproc".startswith(name):
            skip = "=" not in token
        else:
            out.append(token)
    return out


def check_before_training(store: Any, args: argparse.Namespace) -> None:
    """What ``train`` refuses before its first step, checked before a detector is built (a
    new one takes seconds) and before torchrun starts the ranks of ``--nproc`` (each would
    fail alike, under torchrun's tracebacks): the settings (training, model, calibration), the
    classes, the device, and something to train on (unless self-training may add pseudo
    labels). Cheap: no detector is built, no image read. Raises :class:`CliError` or the
    workflow's one-line errors."""
    from napari_al.core import workflow
    from napari_al.core.workflow.training import has_a_box

    settings = workflow.from_args(workflow.TrainSettings, args)
    model = workflow.from_args(workflow.ModelSettings, args)
    workflow.from_args(workflow.CalibrationSettings, args)
    require_classes(store, args.project)
    workflow.check_device(model.device)  # the flag, or $NAPARI_AL_DEVICE
    if settings.self_training is not None:
        return
    snapshot = store.training_snapshot()
    examples = workflow.training_examples(store, snapshot, noisy_min_score=settings.noisy_min_score)
    if not has_a_box(examples):  # none, or background only
        raise CliError(NOTHING_TO_TRAIN)


def launch_ranks(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``napari-al train`` (``argv``, this command's arguments) on ``args.nproc``
    processes through torchrun, holding the project lock for them; their exit status (0: every
    rank succeeded).

    Raises :class:`CliError` when the project is not one, :func:`check_before_training` refuses
    it, or torch's launcher cannot start.
    """
    from napari_al.core.store.lock import lend_env

    n = int(args.nproc)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        "-m",
        "napari_al.cli",
        *rank_argv(argv),
    ]
    with open_store(args.project, busy="training") as store:
        check_before_training(store, args)
        before = store.latest_model_version()
        print(f"training on {n} processes (torchrun, DistributedDataParallel)", file=sys.stderr)
        env = {**os.environ, **lend_env(args.project)}
        try:
            proc = subprocess.Popen(cmd, env=env)
        except OSError as exc:
            raise CliError(f"cannot start torchrun ({exc}); train without --nproc") from exc
        stopped = False

        def forward(signum: int, frame: Any) -> None:  # ``kill PID``: end the ranks with us
            nonlocal stopped
            stopped = True
            proc.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            while True:  # hold the lock until the ranks end, Ctrl+C or not
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:  # the terminal sent it to torchrun (and the ranks) too
                    stopped = True
        finally:
            signal.signal(signal.SIGTERM, previous)
        if stopped or code in (130, -2):
            print(f"napari-al: {interrupted(store, before)}", file=sys.stderr)
            return 130
    if code != 0:
        print(
            f"napari-al: training on {n} processes failed (exit status {code}); "
            "the ranks' own errors are above",
            file=sys.stderr,
        )
    return code


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (CPU or GPU) rather than a bug."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def train_failed(exc: BaseException, version: int) -> CliError | None:
    """The one-line error for a failed training run (None: print a note and re-raise)."""
    kept = (
        f"model version {version} stays in use"
        if version
        else "the project still has no trained model"
    )
    if out_of_memory(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CliError(
            f"training ran out of memory ({first}); nothing was saved and {kept}; "
            "try a smaller --batch-size or --min-size/--max-size"
        )
    print(f"napari-al: training failed; nothing was saved and {kept}", file=sys.stderr)
    return None


def interrupted(store: Any, before: Any) -> str:
    """What a training run stopped by Ctrl+C left: nothing saved, which model stays in use
    (or the version saved, when the interrupt came after the checkpoint was recorded)."""
    after = store.latest_model_version()
    if after is not None and (before is None or after.id != before.id):
        return f"training interrupted after saving model version {after.id}, now in use"
    kept = (
        f"model version {before.id} stays in use"
        if before is not None
        else "the project still has no trained model"
    )
    return f"training interrupted: nothing was saved and {kept}"
