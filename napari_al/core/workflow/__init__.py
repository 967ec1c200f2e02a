"""The workflow layer: the only code that runs an active-learning round.

The CLI, the widget's background jobs, the notebook ``Session`` and the simulator call these
functions and nothing below them for a round (``docs/architecture.md``):

- settings: :class:`ModelSettings`, :class:`TrainSettings`, :class:`QuerySettings`,
  :class:`SuggestSettings`, :class:`CalibrationSettings`, :class:`ClickSettings`,
  :class:`RegionSettings`, :class:`RoundSettings` (one default per field);
  :class:`TileSettings` (large images); :class:`DistributedSettings` (score the pool as a Dask
  task graph: :mod:`napari_al.core.workflow.distributed`, its ``DaskCluster``);
- model: :func:`load_model`, :func:`checkpoint_path`, :func:`describe`,
  :func:`untrained_reason` (:class:`UntrainedModelWarning`: results of untrained heads);
- examples: :func:`training_examples`, :func:`judged_mask` (the one "already judged" rule);
  large images train in crops from their reviewed regions (:mod:`~.crops`):
  :func:`mark_region_complete` ("mark region complete", one undoable action),
  :func:`image_reviewed_area`;
  self-training on unreviewed images: :func:`pseudo_labels` (confident and stable under a
  flip), :func:`pseudo_label_examples`, :class:`PseudoLabels`;
- steps: :func:`train_model`, :func:`predict_images`, :func:`evaluate_model`,
  :func:`rank_pool` (stores the query set), :func:`suggest_missed`, :func:`predict_split`
  (one pass on a split, shared by evaluation and calibration);
- calibrated scores: :func:`calibrate_model` (fit and measure, stored on the model version),
  :func:`verify_rule` / :class:`VerifyRule` (show or ask a model box only where
  ``P(yes) x draw_s > verify_s``), :func:`probability_of_yes`, :func:`worth_asking`,
  :func:`stored_calibration`, :func:`calibration_summary`;
- centre clicks -> boxes: :func:`click` (:func:`click_candidates`, :func:`propose_click_box`,
  :func:`record_click`; :class:`ClickCandidates`, :class:`ClickProposal`, :func:`has_model`);
- region questions for missed objects, "any more <class> here?": :func:`region_questions`
  (:class:`RegionQuestion`), :func:`answer_region`, :func:`suggestion_candidates`,
  :func:`known_empty`;
- rich verification answers (yes / part / container / several / wrong class / no):
  :func:`answer_box` (:func:`propose_refined_box`, :func:`stored_candidates`;
  :class:`Answered`, :class:`AnswerSettings`, :data:`FOLLOWUPS`);
- the dialog planner (one queue of questions: verify a box, "any more <class> here?", label
  an image): :func:`plan_questions` (:func:`score_gains`, :class:`Planner`, :func:`replan`,
  :func:`is_open`, :func:`supervision`), :func:`stored_questions`, :func:`save_questions`;
  :class:`Question`, :class:`QuestionGains`, :class:`DialogSettings`;
- a whole round: :func:`run_round` (a generator of :class:`Progress`), :func:`drive`;
  :func:`first_round` (which round a project opened mid-loop needs first).
- errors a person can act on: :class:`WorkflowError`, :class:`SettingsError` (ValueErrors;
  :class:`SettingsTypeError`, a value of the wrong type, is a TypeError too).

Qt-free and napari-free; torch is imported only when a model is built or run.
"""

from __future__ import annotations

from napari_al.core.dialog import Question
from napari_al.core.workflow.answers import (
    FOLLOWUPS,
    Answered,
    AnswerSettings,
    answer_box,
    propose_refined_box,
    stored_candidates,
)
from napari_al.core.workflow.calibration import (
    CALIBRATION_KEY,
    CalibrationSamples,
    VerifyRule,
    calibrate_model,
    calibration_summary,
    judged_samples,
    online_calibration,
    probability_of_yes,
    split_samples,
    stored_calibration,
    verify_rule,
    worth_asking,
)
from napari_al.core.workflow.clicks import (
    ClickCandidates,
    ClickProposal,
    click,
    click_candidates,
    has_model,
    propose_click_box,
    record_click,
)
from napari_al.core.workflow.crops import (
    image_reviewed_area,
    mark_region_complete,
    unreviewed_in_region,
)
from napari_al.core.workflow.dialog import (
    QUESTION_UNIT,
    Planner,
    QuestionGains,
    is_open,
    plan_questions,
    question_item,
    replan,
    save_questions,
    score_gains,
    stored_questions,
    supervision,
)
from napari_al.core.workflow.errors import SettingsError, SettingsTypeError, WorkflowError
from napari_al.core.workflow.evaluation import (
    SplitPredictions,
    complete_rows,
    effort_series,
    evaluate_model,
    predict_split,
    record_metrics,
)
from napari_al.core.workflow.examples import (
    JUDGED_IOU,
    PseudoLabels,
    judged_boxes,
    judged_mask,
    labels_hash,
    load_rgb,
    pseudo_label_examples,
    read_rows,
    training_examples,
)
from napari_al.core.workflow.fields import add_arguments, flag_named, flags_given, from_args
from napari_al.core.workflow.model import (
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_SIZE,
    MODELS_DIR,
    UntrainedModelWarning,
    check_device,
    checkpoint_path,
    describe,
    ensemble_members,
    load_model,
    untrained_reason,
)
from napari_al.core.workflow.prediction import images_to_predict, pool_image_ids, predict_images
from napari_al.core.workflow.query_checks import UNITS_USING
from napari_al.core.workflow.ranking import (
    check_query,
    fit_missed_regressor,
    labelled_embeddings,
    rank_pool,
    stored_queries,
)
from napari_al.core.workflow.regions import (
    RegionQuestion,
    answer_region,
    known_empty,
    region_questions,
    suggestion_candidates,
)
from napari_al.core.workflow.rounds import (
    Progress,
    RoundResult,
    RoundSettings,
    drive,
    first_round,
    run_round,
)
from napari_al.core.workflow.selftraining import flip_stable, pseudo_labels
from napari_al.core.workflow.settings import (
    CALIBRATION_METHODS,
    WEIGHT_SOURCES,
    CalibrationSettings,
    ClickSettings,
    DialogSettings,
    DistributedSettings,
    ModelSettings,
    QuerySettings,
    RegionSettings,
    SuggestSettings,
    TileSettings,
    TrainSettings,
)
from napari_al.core.workflow.suggest import Suggestion, suggest_missed
from napari_al.core.workflow.training import (
    TrainOutcome,
    is_main_process,
    labelling_effort,
    train_model,
)

__all__ = [
    "CALIBRATION_KEY",
    "CALIBRATION_METHODS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "FOLLOWUPS",
    "JUDGED_IOU",
    "MODELS_DIR",
    "QUESTION_UNIT",
    "UNITS_USING",
    "WEIGHT_SOURCES",
    "AnswerSettings",
    "Answered",
    "CalibrationSamples",
    "CalibrationSettings",
    "ClickCandidates",
    "ClickProposal",
    "ClickSettings",
    "DialogSettings",
    "DistributedSettings",
    "ModelSettings",
    "Planner",
    "Progress",
    "PseudoLabels",
    "QuerySettings",
    "Question",
    "QuestionGains",
    "RegionQuestion",
    "RegionSettings",
    "RoundResult",
    "RoundSettings",
    "SettingsError",
    "SettingsTypeError",
    "SplitPredictions",
    "SuggestSettings",
    "Suggestion",
    "TileSettings",
    "TrainOutcome",
    "TrainSettings",
    "UntrainedModelWarning",
    "VerifyRule",
    "WorkflowError",
    "add_arguments",
    "answer_box",
    "answer_region",
    "calibrate_model",
    "calibration_summary",
    "check_device",
    "check_query",
    "checkpoint_path",
    "click",
    "click_candidates",
    "complete_rows",
    "describe",
    "drive",
    "effort_series",
    "ensemble_members",
    "evaluate_model",
    "first_round",
    "fit_missed_regressor",
    "flag_named",
    "flags_given",
    "flip_stable",
    "from_args",
    "has_model",
    "image_reviewed_area",
    "images_to_predict",
    "is_main_process",
    "is_open",
    "judged_boxes",
    "judged_mask",
    "judged_samples",
    "known_empty",
    "labelled_embeddings",
    "labelling_effort",
    "labels_hash",
    "load_model",
    "load_rgb",
    "mark_region_complete",
    "online_calibration",
    "plan_questions",
    "pool_image_ids",
    "predict_images",
    "predict_split",
    "probability_of_yes",
    "propose_click_box",
    "propose_refined_box",
    "pseudo_label_examples",
    "pseudo_labels",
    "question_item",
    "rank_pool",
    "read_rows",
    "record_click",
    "record_metrics",
    "region_questions",
    "replan",
    "run_round",
    "save_questions",
    "score_gains",
    "split_samples",
    "stored_calibration",
    "stored_candidates",
    "stored_queries",
    "stored_questions",
    "suggest_missed",
    "suggestion_candidates",
    "supervision",
    "train_model",
    "training_examples",
    "unreviewed_in_region",
    "untrained_reason",
    "verify_rule",
    "worth_asking",
]
