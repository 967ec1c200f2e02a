"""The workflow layer: the only code that runs an active-learning round.

The CLI, the widget's background jobs, the notebook ``Session`` and the simulator call these
functions and nothing below them for a round (``docs/architecture.md``):

- settings: :class:`ModelSettings`, :class:`TrainSettings`, :class:`QuerySettings`,
  :class:`SuggestSettings`, :class:`RoundSettings` (one default per field);
- model: :func:`load_model`, :func:`checkpoint_path`, :func:`describe`;
- examples: :func:`training_examples`, :func:`judged_mask` (the one "already judged" rule);
- steps: :func:`train_model`, :func:`predict_images`, :func:`evaluate_model`,
  :func:`rank_pool` (stores the query set), :func:`suggest_missed`;
- a whole round: :func:`run_round` (a generator of :class:`Progress`), :func:`drive`;
  :func:`first_round` (which round a project opened mid-loop needs first).
- errors a person can act on: :class:`WorkflowError`, :class:`SettingsError` (ValueErrors).

Qt-free and napari-free; torch is imported only when a model is built or run.
"""

from __future__ import annotations

from napari_al.core.workflow.errors import SettingsError, WorkflowError
from napari_al.core.workflow.evaluation import (
    effort_series,
    evaluate_model,
    record_metrics,
)
from napari_al.core.workflow.examples import (
    JUDGED_IOU,
    judged_boxes,
    judged_mask,
    labels_hash,
    load_rgb,
    read_rows,
    training_examples,
)
from napari_al.core.workflow.model import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    MODELS_DIR,
    checkpoint_path,
    describe,
    ensemble_members,
    load_model,
)
from napari_al.core.workflow.prediction import images_to_predict, pool_image_ids, predict_images
from napari_al.core.workflow.ranking import (
    fit_missed_regressor,
    labelled_embeddings,
    rank_pool,
    stored_queries,
)
from napari_al.core.workflow.rounds import (
    Progress,
    RoundResult,
    RoundSettings,
    drive,
    first_round,
    run_round,
)
from napari_al.core.workflow.settings import (
    WEIGHT_SOURCES,
    ModelSettings,
    QuerySettings,
    SuggestSettings,
    TrainSettings,
    add_arguments,
    from_args,
)
from napari_al.core.workflow.suggest import Suggestion, suggest_missed
from napari_al.core.workflow.training import TrainOutcome, labelling_effort, train_model

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "JUDGED_IOU",
    "MODELS_DIR",
    "WEIGHT_SOURCES",
    "ModelSettings",
    "Progress",
    "QuerySettings",
    "RoundResult",
    "RoundSettings",
    "SettingsError",
    "SuggestSettings",
    "Suggestion",
    "TrainOutcome",
    "TrainSettings",
    "WorkflowError",
    "add_arguments",
    "checkpoint_path",
    "describe",
    "drive",
    "effort_series",
    "ensemble_members",
    "evaluate_model",
    "first_round",
    "fit_missed_regressor",
    "from_args",
    "images_to_predict",
    "judged_boxes",
    "judged_mask",
    "labelled_embeddings",
    "labelling_effort",
    "labels_hash",
    "load_model",
    "load_rgb",
    "pool_image_ids",
    "predict_images",
    "rank_pool",
    "read_rows",
    "record_metrics",
    "run_round",
    "stored_queries",
    "suggest_missed",
    "train_model",
    "training_examples",
]
