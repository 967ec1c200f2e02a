"""Simulated-oracle benchmark: how many annotation seconds does each strategy save?

``napari-al simulate`` replays the active-learning loop on a labelled dataset with an oracle
that answers from the ground truth and charges every answer its published human cost
(:mod:`napari_al.core.costs`; Papadopoulos et al. 2016, 2017). It runs through the product's
own path, so the number it reports is what the plugin would measure on a person:

- one real :class:`~napari_al.core.store.ProjectStore` per (strategy, seed), the pool imported
  WITHOUT its annotations: the ground truth stays in the simulator's memory and reaches the
  store only through the oracle's answers;
- the oracle answers through the store's user actions (``draw_box``, ``accept_box``,
  ``reject_box``, ``set_box_class``, ``correct_box``, ``set_review_state``) on a simulated clock
  that it advances by each answer's cost before the answer, so the cost IS the store's action
  log (:meth:`~napari_al.core.store.ProjectStore.annotation_seconds`), with an idle cut-off too
  large to ever apply;
- every model step is the workflow's (:mod:`napari_al.core.workflow`), as in the CLI and the
  widget: the detector is :func:`~napari_al.core.workflow.load_model`, training is
  :func:`~napari_al.core.workflow.train_model` (continuous fine-tuning from the last
  checkpoint; unverified predictions on partly reviewed images are noisy labels damped by
  ``lambda_d``, Desai et al. eq. 3), querying is :func:`~napari_al.core.workflow.rank_pool`,
  verification uses the boxes :func:`~napari_al.core.workflow.predict_images` stored, and
  "already judged" is :func:`~napari_al.core.workflow.judged_mask`;
- evaluation is :func:`~napari_al.core.workflow.evaluate_model` on a fixed test split that each
  project holds labelled in its ``test`` split (imported like a labelled dataset: ``complete``,
  boxes ``accepted`` from source ``import``, no annotation time); training, the pool and the
  oracle never see it.

Oracle modes: :mod:`napari_al.simulation.oracle`.

The loop, per seed: a random initial set (the same for every strategy; drawn in full; one
shared initial model, as in Desai et al.), then ``rounds`` of query -> oracle -> retrain ->
evaluate for each strategy. Results go to ``results.csv`` after every round (rows are also
kept as markers in each store's action log), so a stopped run resumes where it stopped.

Modules: :mod:`~napari_al.simulation.config` (settings, strategies, presets, data),
:mod:`~napari_al.simulation.oracle` (the simulated person), :mod:`~napari_al.simulation.project`
(one simulated project, its model steps), :mod:`~napari_al.simulation.runner` (the rounds),
:mod:`~napari_al.simulation.parallel` (a whole run, in one process or worker processes),
:mod:`~napari_al.simulation.results` (``results.csv``), :mod:`~napari_al.simulation.report`
(tables and plot), :mod:`~napari_al.simulation.cli` (the ``napari-al simulate`` options).
Importing the package sets no process-wide state: torch thread counts are applied by the run
functions (``config.threads``, :func:`napari_al.runtime.torch_threads`) and by the worker
processes' initializer.
"""

from __future__ import annotations

from napari_al.simulation.cli import add_arguments, config_from_args, describe_strategies
from napari_al.simulation.config import (
    BASELINES,
    BCCD_STRATEGIES,
    FULL_NAME,
    ORACLES,
    STRATEGIES,
    BenchmarkData,
    SimConfig,
    SimStrategy,
    default_bccd_dir,
    load_data,
    preset,
    resolve_strategies,
)
from napari_al.simulation.oracle import (
    CLOCK_T0,
    MISSED_IOU,
    GroundTruth,
    Oracle,
    SimClock,
    claim_ground_truth,
    plan_verification,
)
from napari_al.simulation.parallel import SimOutputs, run_simulation
from napari_al.simulation.project import (
    IDLE_CUTOFF_S,
    MARKER_KIND,
    TEST_SPLIT,
    SimProject,
    load_detector,
    model_settings,
    predict_queried,
)
from napari_al.simulation.report import (
    cost_ratio,
    per_seed_table,
    plot_curves,
    summarize,
    summary_table,
    write_report,
)
from napari_al.simulation.results import (
    CONFIG_JSON,
    CSV_COLUMNS,
    PLOT_PNG,
    RESULTS_CSV,
    RUN_INFO_JSON,
    SUMMARY_MD,
    TIMING_COLUMNS,
    append_result,
    read_results,
    sort_results,
)
from napari_al.simulation.runner import run_base, run_full, run_strategy

__all__ = [
    "BASELINES",
    "BCCD_STRATEGIES",
    "CLOCK_T0",
    "CONFIG_JSON",
    "CSV_COLUMNS",
    "FULL_NAME",
    "IDLE_CUTOFF_S",
    "MARKER_KIND",
    "MISSED_IOU",
    "ORACLES",
    "PLOT_PNG",
    "RESULTS_CSV",
    "RUN_INFO_JSON",
    "STRATEGIES",
    "SUMMARY_MD",
    "TEST_SPLIT",
    "TIMING_COLUMNS",
    "BenchmarkData",
    "GroundTruth",
    "Oracle",
    "SimClock",
    "SimConfig",
    "SimOutputs",
    "SimProject",
    "SimStrategy",
    "add_arguments",
    "append_result",
    "claim_ground_truth",
    "config_from_args",
    "cost_ratio",
    "default_bccd_dir",
    "describe_strategies",
    "load_data",
    "load_detector",
    "model_settings",
    "per_seed_table",
    "plan_verification",
    "plot_curves",
    "predict_queried",
    "preset",
    "read_results",
    "resolve_strategies",
    "run_base",
    "run_full",
    "run_simulation",
    "run_strategy",
    "sort_results",
    "summarize",
    "summary_table",
    "write_report",
]
