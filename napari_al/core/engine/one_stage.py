"""Rich predictions of one-stage detectors (RetinaNet, FCOS, SSDlite) from one forward pass.

torchvision's one-stage postprocessing keeps only each box's winning score. Here the per-class
scores of each kept box's anchor are kept too, turned into a class distribution by
:func:`sigmoid_scores_to_probs` (sigmoid heads) or taken as the softmax row (SSDlite);
``features`` are the classification tower output at the box's anchor (D = 256) for
RetinaNet/FCOS and empty (D = 0) for SSDlite. Boxes are xyxy pixels of the resized image;
labels are 1-based (0 = background).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.ssd import SSD
from torchvision.ops import boxes as box_ops


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


def one_stage_detections(
    model: nn.Module,
    image_list: Any,
    feats: dict[str, Tensor],
    score_thresh: float,
    detections: int,
    candidates_scale: float = 1.0,
) -> list[dict[str, Tensor]]:
    """Detections of a one-stage ``model`` (RetinaNet, FCOS or SSD) on backbone features
    ``feats`` of ``image_list``: per image ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,)
    1-based, ``probs`` (N, C+1) and ``features`` (N, D); scores above ``score_thresh``, at most
    ``detections`` boxes after NMS (boxes clipped to zero size are dropped); the model's
    ``topk_candidates`` per level times ``candidates_scale`` (an input larger than the model's)."""
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
    topk = max(1, round(int(model.topk_candidates) * candidates_scale))
    if isinstance(model, SSD):
        return ssd_detections(
            model, head, anchors, image_list.image_sizes, score_thresh, detections
        )
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
            num_topk = min(topk, int(keep.numel()))
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


def ssd_detections(
    model: nn.Module,
    head: dict[str, Tensor],
    anchors: list[Tensor],
    image_sizes: list[tuple[int, int]],
    score_thresh: float,
    detections: int,
) -> list[dict[str, Tensor]]:
    """SSD postprocessing (softmax head) keeping each box's full class distribution; see
    :func:`one_stage_detections`."""
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
