"""Name -> scorer registry for the CLI and GUI strategy names.

Box scorers (:data:`SCORERS`) give one score per base box; image scorers
(:data:`IMAGE_SCORERS`) one per image. ``name1+name2`` combines box scorers (see
:mod:`napari_al.core.scoring.combine`); mixing box and image scorers is the job of
:class:`~napari_al.core.scoring.strategy.Strategy`.
"""

from __future__ import annotations

import difflib
from typing import Any

from napari_al.core.scoring.base import BoxScorer, ImageScorer
from napari_al.core.scoring.combine import CombinedScorer
from napari_al.core.scoring.committee import MutualInformationScorer, VoteEntropyScorer
from napari_al.core.scoring.consistency import ConsistencyScorer
from napari_al.core.scoring.localization import (
    LocalizationStabilityScorer,
    LocalizationTightnessScorer,
)
from napari_al.core.scoring.missed import CandidateDensityScorer, MissedScorer
from napari_al.core.scoring.uncertainty import (
    EntropyScorer,
    LeastConfidenceScorer,
    MarginScorer,
    RandomScorer,
    ScoreBandScorer,
)

_BOX: dict[str, type[BoxScorer]] = {
    cls.name: cls
    for cls in (
        RandomScorer,
        ScoreBandScorer,
        LeastConfidenceScorer,
        MarginScorer,
        EntropyScorer,
        VoteEntropyScorer,
        MutualInformationScorer,
        ConsistencyScorer,
        LocalizationStabilityScorer,
        LocalizationTightnessScorer,
    )
}
_IMAGE: dict[str, type[ImageScorer]] = {
    cls.name: cls for cls in (CandidateDensityScorer, MissedScorer)
}

#: Registered per-box scorer names.
SCORERS: tuple[str, ...] = tuple(_BOX)
#: Registered image-level scorer names.
IMAGE_SCORERS: tuple[str, ...] = tuple(_IMAGE)


class StrategyError(ValueError):
    """A strategy name the registry cannot build: malformed, repeated or unknown scorers
    (the message suggests the nearest registered name)."""


def split_spec(spec: str) -> list[str]:
    """``"entropy + consistency"`` -> ``["entropy", "consistency"]`` (no duplicates allowed);
    raises :class:`StrategyError`."""
    names = [p.strip() for p in spec.split("+")]
    if not spec.strip() or any(not p for p in names):
        raise StrategyError(f"malformed strategy {spec!r}; expected name or name1+name2")
    if len(set(names)) != len(names):
        raise StrategyError(f"strategy {spec!r} repeats a scorer")
    return names


def check_strategy(spec: str) -> list[str]:
    """The scorer names of ``spec`` (box and image scorers, ``name1+name2``), every one
    registered; raises :class:`StrategyError` naming the nearest name of an unknown one."""
    names = split_spec(spec)
    for name in names:
        if name not in _BOX and name not in _IMAGE:
            raise _unknown(name)
    return names


def _unknown(name: str) -> StrategyError:
    close = difflib.get_close_matches(name, [*SCORERS, *IMAGE_SCORERS], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return StrategyError(
        f"unknown scorer {name!r}{hint}; box scorers: {', '.join(SCORERS)}; "
        f"image scorers: {', '.join(IMAGE_SCORERS)}"
    )


def get_scorer(name: str, **params: Any) -> BoxScorer:
    """A box scorer by name, e.g. ``get_scorer("score_band", a=0.3, b=0.7)``.

    ``name1+name2`` gives a :class:`CombinedScorer`; its parameters are passed per component
    (``get_scorer("score_band+entropy", score_band={"a": 0.3})``) plus optional ``weights``.
    """
    names = split_spec(name)
    if len(names) == 1:
        if names[0] not in _BOX:
            raise _unknown(names[0])
        return _BOX[names[0]](**params)
    weights = params.pop("weights", None)
    extra = set(params) - set(names)
    if extra:
        raise ValueError(f"parameters {sorted(extra)} name no component of {name!r}")
    return CombinedScorer([get_scorer(n, **params.get(n, {})) for n in names], weights)


def get_image_scorer(name: str, **params: Any) -> ImageScorer:
    """An image scorer by name, e.g. ``get_image_scorer("missed", regressor=reg)``."""
    if name not in _IMAGE:
        raise _unknown(name)
    return _IMAGE[name](**params)


def is_image_scorer(name: str) -> bool:
    return name in _IMAGE


def describe(name: str) -> dict[str, Any]:
    """Name, kind, needed views, range and one-line summary of a registered scorer."""
    cls: type[BoxScorer] | type[ImageScorer]
    if name in _BOX:
        cls, kind = _BOX[name], "box"
    elif name in _IMAGE:
        cls, kind = _IMAGE[name], "image"
    else:
        raise _unknown(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    return {
        "name": name,
        "kind": kind,
        "needs": sorted(cls.needs),
        "requires_proposals": cls.requires_proposals,
        "range": cls.range,
        "summary": doc[0] if doc else "",
    }
