"""Refusals a ranking makes before any image is scored: a query its strategy cannot score
meaningfully (:func:`check_query`, before a model is loaded) and a strategy whose views the
loaded detector cannot compute (:func:`check_detector_views`). Each raises a one-line
:class:`~napari_al.core.workflow.errors.SettingsError` that names the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_al.core.workflow.errors import SettingsError
from napari_al.core.workflow.settings import QuerySettings

if TYPE_CHECKING:
    from napari_al.core.engine import Detector

#: :class:`QuerySettings` fields that only some units read, and those units; the others ignore
#: them, so a front end refuses one given for another unit. ``aggregation`` lifts box scores to
#: image scores: image queries rank by them and the question planner's draw questions take
#: their gain from them (:func:`~napari_al.core.workflow.dialog.score_gains`); box and region
#: queries rank boxes. ``candidate_factor`` also needs a ``diversity`` (its candidate pool);
#: ``diversity`` itself is :func:`check_query`'s (its default, None, is never given).
UNITS_USING: dict[str, tuple[str, ...]] = {
    "aggregation": ("image", "question"),
    "candidate_factor": ("image",),
    "region_block": ("region",),
}


def check_detector_views(strategy: Any, detector: Detector) -> None:
    """Refuse (SettingsError, one line) a strategy whose views ``detector`` cannot compute,
    before any image is scored: MC dropout (``mc_probs``: BALD mutual information, vote
    entropy with ``source="mc"``) and RPN proposals (``localization_tightness``) need the box
    head of a two-stage detector (Faster R-CNN); a one-stage one (RetinaNet, SSDlite) has
    neither. ``strategy``: a :class:`~napari_al.core.scoring.strategy.Strategy`."""
    if detector.two_stage:
        return
    missing = []
    if "mc_probs" in strategy.needs:
        missing.append("MC dropout over a box head")
    if strategy.requires_proposals:
        missing.append("RPN proposals")
    if missing:
        raise SettingsError(
            f"strategy {strategy.spec!r} needs {' and '.join(missing)}, which only two-stage "
            f"detectors (Faster R-CNN) have; this model is {detector.arch}: pick another "
            "strategy (e.g. entropy, consistency or entropy+missed) or train a Faster R-CNN "
            "(--arch)"
        )


def check_query(q: QuerySettings) -> None:
    """Refuse (SettingsError) what :func:`rank_pool` cannot rank meaningfully, before any model
    is loaded: box queries need a box scorer, an image scorer alone (``missed``) scores every
    box 0; diversity spreads image queries, no other unit."""
    from napari_al.core.scoring.registry import is_image_scorer, split_spec

    if q.diversity is not None and q.unit != "image":
        raise SettingsError(
            f"diversity {q.diversity!r} spreads image queries only; leave it out for "
            f"{q.unit} queries, or rank whole images (unit 'image')",
            "diversity",
        )

    if q.unit == "box" and all(map(is_image_scorer, split_spec(q.strategy))):
        raise SettingsError(
            f"strategy {q.strategy!r} scores whole images, not boxes (every box query would "
            "score 0); for box queries use a box scorer, e.g. entropy or entropy+missed, or "
            "rank regions or images"
        )
