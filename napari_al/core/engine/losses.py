"""Partial-label losses (Desai et al., "Towards fine-grained sampling for active learning in
object detection", eq. 3): target parts, ignore masks, the weighted Fast R-CNN loss and an RPN
whose loss weighs every anchor by the box it matches.

A training target (see :func:`napari_al.core.engine.training.make_target`) carries human boxes
(weight 1), unverified predictions (weight ``lambda_d``), rejected boxes (explicit background)
and ignore regions (no loss). Boxes are ``(N, 4)`` float xyxy tensors in the resized image's
pixels; labels are 1-based (0 = background), as torchvision's detection models expect.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from napari_al.core.engine.proposals import filter_proposals

#: Proposals/anchors whose centre lies in an ignore region, or with at least this fraction of
#: their area inside one, carry no loss.
IGNORE_IOF_THRESHOLD = 0.5
#: Proposals/anchors with at least this IoU with a rejected box are background targets.
REJECT_IOU_THRESHOLD = 0.5


# ----------------------------------------------------------------------------- geometry helpers


def centres_inside(boxes: Tensor, regions: Tensor) -> Tensor:
    """``(P,)`` bool: the centre of each box lies inside at least one region."""
    if boxes.numel() == 0 or regions.numel() == 0:
        return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (
        (cx[:, None] >= regions[None, :, 0])
        & (cx[:, None] <= regions[None, :, 2])
        & (cy[:, None] >= regions[None, :, 1])
        & (cy[:, None] <= regions[None, :, 3])
    )
    return inside.any(dim=1)


def intersection_over_box(boxes: Tensor, regions: Tensor) -> Tensor:
    """``(P, G)``: area of box ∩ region divided by the box's own area."""
    lt = torch.max(boxes[:, None, :2], regions[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], regions[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
    return inter / area[:, None]


def ignored_mask(boxes: Tensor, regions: Tensor, iof: float = IGNORE_IOF_THRESHOLD) -> Tensor:
    """``(P,)`` bool: boxes (anchors, proposals) that an ignore region removes from the loss."""
    if boxes.numel() == 0 or regions.numel() == 0:
        return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    return centres_inside(boxes, regions) | (intersection_over_box(boxes, regions) >= iof).any(1)


@dataclass
class _TargetParts:
    boxes: Tensor  # (K, 4) foreground boxes (ignored ones dropped)
    labels: Tensor  # (K,) 1-based
    weights: Tensor  # (K,)
    bg_boxes: Tensor  # (R, 4) rejected boxes: explicit background
    ignore: Tensor  # (G, 4)
    bg_weight: float


def target_parts(target: dict[str, Tensor]) -> _TargetParts:
    """Split a training target into its parts. Boxes (and rejected boxes) whose centre lies in an
    ignore region are dropped, so a label inside an ignore region cannot change any loss or
    gradient; rejected boxes with IoU >= 0.5 with a foreground box are dropped too."""
    boxes = target["boxes"]
    device, dtype = boxes.device, boxes.dtype
    labels = target["labels"]
    weights = target.get("weights")
    if weights is None:
        weights = torch.ones(boxes.shape[0], dtype=dtype, device=device)
    empty = torch.zeros((0, 4), dtype=dtype, device=device)
    bg = target.get("bg_boxes", empty).to(dtype)
    ignore = target.get("ignore", empty).to(dtype)
    bg_weight = target.get("bg_weight")
    bgw = 1.0 if bg_weight is None else float(bg_weight)
    if ignore.numel():
        keep = ~centres_inside(boxes, ignore)
        boxes, labels, weights = boxes[keep], labels[keep], weights[keep]
        bg = bg[~centres_inside(bg, ignore)]
    if bg.numel() and boxes.numel():
        # a rejected box on top of a labeled one is a duplicate or a mislocalisation: the
        # object is there, so it says nothing about background
        bg = bg[box_ops.box_iou(bg, boxes).max(dim=1).values < REJECT_IOU_THRESHOLD]
    return _TargetParts(boxes, labels, weights.to(dtype), bg, ignore, bgw)


# ----------------------------------------------------------------------------- losses


def weighted_fastrcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    weights: list[Tensor],
) -> tuple[Tensor, Tensor]:
    """torchvision's ``fastrcnn_loss`` with a weight per sampled proposal (Desai et al., eq. 3).

    ``L = sum_i w_i l_i / n`` over the n sampled proposals: proposals matched to human boxes and
    background proposals weigh 1, those matched to unverified boxes ``lambda_d``; so
    ``L = L_labeled + lambda_d * L_noisy`` with both terms normalised by the same n (equal to
    torchvision's loss when every weight is 1).
    """
    labels_t = torch.cat(labels, dim=0)
    targets_t = torch.cat(regression_targets, dim=0)
    w = torch.cat(weights, dim=0).to(class_logits.dtype)
    n = max(int(labels_t.numel()), 1)
    ce = F.cross_entropy(class_logits, labels_t, reduction="none")
    classification_loss = (ce * w).sum() / n
    pos = torch.where(labels_t > 0)[0]
    labels_pos = labels_t[pos]
    num = class_logits.shape[0]
    box_regression = box_regression.reshape(num, box_regression.size(-1) // 4, 4)
    l1 = F.smooth_l1_loss(
        box_regression[pos, labels_pos], targets_t[pos], beta=1 / 9, reduction="none"
    ).sum(dim=1)
    box_loss = (l1 * w[pos]).sum() / n
    return classification_loss, box_loss


_BUDGET = threading.local()


def _scaled(n: int) -> int:
    return max(1, round(n * getattr(_BUDGET, "scale", 1.0)))


@contextmanager
def proposal_budget(scale: float, block: tuple[int, int] | None = None) -> Iterator[None]:
    """Within the ``with`` block, in this thread only, :class:`PartialLabelRPN` keeps
    ``scale`` times its usual number of proposals (per level before NMS, in all after it): an
    input of ``scale`` times the model's input area at scale 1 gets as many proposals per
    pixel. ``block`` ``(rows, columns)`` pixels: its NMS runs per block of that size (the
    model's input) and level (:mod:`napari_al.core.engine.proposals`), so it costs per pixel
    what it costs on the input. Other threads using the same model are unaffected."""
    before = getattr(_BUDGET, "scale", 1.0), getattr(_BUDGET, "block", None)
    _BUDGET.scale, _BUDGET.block = float(scale), block
    try:
        yield
    finally:
        _BUDGET.scale, _BUDGET.block = before


class PartialLabelRPN(RegionProposalNetwork):
    """RPN whose training loss handles partial labels (Desai et al., eq. 3).

    Positive anchors weigh as much as the box they match (1 for human labels, ``lambda_d`` for
    unverified predictions); anchors overlapping a rejected box (IoU >= 0.5, more than with any
    foreground box) are negatives with weight 1; anchors in an ignore region are not sampled
    (weight 0). Inference is unchanged, except that :func:`proposal_budget` scales the number
    of proposals kept, in the thread that holds it (a window larger than the model's input).
    """

    reject_iou_thresh = REJECT_IOU_THRESHOLD
    ignore_iof_thresh = IGNORE_IOF_THRESHOLD

    def pre_nms_top_n(self) -> int:
        return _scaled(int(super().pre_nms_top_n()))

    def post_nms_top_n(self) -> int:
        return _scaled(int(super().post_nms_top_n()))

    def filter_proposals(  # type: ignore[override]
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's filter; within :func:`proposal_budget` with a block, the NMS runs per
        block (:mod:`napari_al.core.engine.proposals`)."""
        block = getattr(_BUDGET, "block", None)
        if block is None:
            return super().filter_proposals(
                proposals, objectness, image_shapes, num_anchors_per_level
            )
        return filter_proposals(
            self, proposals, objectness, image_shapes, num_anchors_per_level, block
        )

    @classmethod
    def from_rpn(cls, rpn: RegionProposalNetwork) -> PartialLabelRPN:
        new = cls(
            rpn.anchor_generator,
            rpn.head,
            rpn.proposal_matcher.high_threshold,
            rpn.proposal_matcher.low_threshold,
            rpn.fg_bg_sampler.batch_size_per_image,
            rpn.fg_bg_sampler.positive_fraction,
            dict(rpn._pre_nms_top_n),
            dict(rpn._post_nms_top_n),
            rpn.nms_thresh,
            rpn.score_thresh,
        )
        return new

    def assign_weighted(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-anchor labels (1, 0, -1 = unused), matched boxes and loss weights."""
        labels, matched_boxes, weights = [], [], []
        for anchors_i, target in zip(anchors, targets, strict=True):
            p = target_parts(target)
            device = anchors_i.device
            n = anchors_i.shape[0]
            if p.boxes.numel() == 0:
                matched = torch.zeros(anchors_i.shape, dtype=torch.float32, device=device)
                lab = torch.zeros((n,), dtype=torch.float32, device=device)
                w = torch.full((n,), p.bg_weight, dtype=torch.float32, device=device)
                iou_gt = torch.zeros((n,), dtype=torch.float32, device=device)
            else:
                quality = self.box_similarity(p.boxes, anchors_i)
                idx = self.proposal_matcher(quality)
                matched = p.boxes[idx.clamp(min=0)]
                lab = (idx >= 0).to(torch.float32)
                lab[idx == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
                lab[idx == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
                w = torch.where(
                    lab > 0,
                    p.weights[idx.clamp(min=0)].float(),
                    torch.full_like(lab, p.bg_weight),
                )
                iou_gt = quality.max(dim=0).values
            if p.bg_boxes.numel():
                iou_bg = self.box_similarity(p.bg_boxes, anchors_i).max(dim=0).values
                force = (iou_bg >= self.reject_iou_thresh) & (iou_bg > iou_gt)
                lab[force] = 0.0
                w[force] = 1.0
            if p.ignore.numel():
                ign = ignored_mask(anchors_i, p.ignore, self.ignore_iof_thresh)
                lab[ign] = -1.0
                w[ign] = 0.0
            labels.append(lab)
            matched_boxes.append(matched)
            weights.append(w)
        return labels, matched_boxes, weights

    def weighted_loss(
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
        weights: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """``compute_loss`` with per-anchor weights; equal to it when every weight is 1."""
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos_masks, dim=0))[0]
        neg = torch.where(torch.cat(neg_masks, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        n = max(int(sampled.numel()), 1)
        objectness = objectness.flatten()
        labels_t = torch.cat(labels, dim=0)
        targets_t = torch.cat(regression_targets, dim=0)
        w = torch.cat(weights, dim=0).to(objectness.dtype)
        l1 = F.smooth_l1_loss(
            pred_bbox_deltas[pos], targets_t[pos], beta=1 / 9, reduction="none"
        ).sum(dim=1)
        box_loss = (l1 * w[pos]).sum() / n
        bce = F.binary_cross_entropy_with_logits(
            objectness[sampled], labels_t[sampled], reduction="none"
        )
        objectness_loss = (bce * w[sampled]).sum() / n
        return objectness_loss, box_loss

    def forward(  # type: ignore[override]
        self,
        images: Any,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        feats = list(features.values())
        objectness, pred_bbox_deltas = self.head(feats)
        anchors = self.anchor_generator(images, feats)
        num_images = len(anchors)
        shapes = [o[0].shape for o in objectness]
        num_anchors_per_level = [s[0] * s[1] * s[2] for s in shapes]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors)
        proposals = proposals.view(num_images, -1, 4)
        boxes, _scores = self.filter_proposals(
            proposals, objectness, images.image_sizes, num_anchors_per_level
        )
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None in training mode")
            labels, matched, weights = self.assign_weighted(anchors, targets)
            regression_targets = self.box_coder.encode(matched, anchors)
            loss_obj, loss_box = self.weighted_loss(
                objectness.float(), pred_bbox_deltas.float(), labels, regression_targets, weights
            )
            losses = {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}
        return boxes, losses
