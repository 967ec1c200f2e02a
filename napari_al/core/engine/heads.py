"""Faster R-CNN parts that keep what torchvision throws away, and train on partial labels.

:class:`RichRoIHeads` reimplements ``postprocess_detections`` keeping, for each kept box, the
proposal it was refined from, so that the full softmax row (``probs``, background in column 0),
the box-head output (``features``, D = 1024 for the default: TwoMLPHead fc7), the RPN proposal
(``proposals``, for localization tightness, Kao et al.) and optionally the RoI-pooled feature
(for head-only MC dropout, Gal & Ghahramani) can be gathered. Its training loss weighs every
sampled proposal (Desai et al., eq. 3; :mod:`napari_al.core.engine.losses`).
:class:`RichTransform` rescales the extra target boxes (rejected boxes, ignore regions) with the
image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _resize_image_and_masks,
    resize_boxes,
)
from torchvision.ops import boxes as box_ops

from napari_al.core.engine.losses import (
    IGNORE_IOF_THRESHOLD,
    REJECT_IOU_THRESHOLD,
    ignored_mask,
    target_parts,
    weighted_fastrcnn_loss,
)


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
    (``bg_boxes``: rejected boxes, ``ignore``: ignore regions), and never resizes a side to
    0 px: torchvision scales an image by ``min(min_size / short side, max_size / long side)``
    and floors each side, so a 1 x 1,400 px image at ``max_size`` 640 became 0 x 640 and
    ``interpolate`` raised, failing the training, prediction or ranking of the whole project
    (found by a newcomer). Such a side is kept at 1 px; every other image is resized exactly as
    torchvision resizes it (the same single draw of the training size)."""

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
        if self.training and self._skip_resize:
            return image, target
        size = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        if self.fixed_size is None and min(h, w) * scale < 1:
            out = [max(1, int(h * scale)), max(1, int(w * scale))]
            image = F.interpolate(image[None], size=out, mode="bilinear", align_corners=False)[0]
        else:
            image, _ = _resize_image_and_masks(image, size, self.max_size, None, self.fixed_size)
        if target is not None:
            for key in ("boxes", "bg_boxes", "ignore"):
                if key in target and target[key].numel():
                    target[key] = resize_boxes(target[key], [h, w], list(image.shape[-2:]))
        return image, target
