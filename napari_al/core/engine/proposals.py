"""The RPN's proposal filter for a window larger than the model's input: NMS block by block.

torchvision's :meth:`RegionProposalNetwork.filter_proposals` keeps, per image, the
``pre_nms_top_n`` best-scoring anchors of each feature level, runs greedy NMS per level over
them (``torchvision.ops.batched_nms``) and keeps the ``post_nms_top_n`` best survivors. A
window of ``k`` times the input's area gets ``k`` times those numbers
(:func:`napari_al.core.engine.losses.proposal_budget`), and NMS, which compares each survivor
with every box below it, then costs about ``k`` times more per pixel than on the input: on a
960 x 1,280 px window (``k`` about 3.5) its NMS took 2.5 times the time per pixel of a batch
of 480 x 640 px images (docs/large-images.md).

:func:`filter_proposals` with a ``block`` size runs the NMS within each block of the window
(the block holding the box's centre, on a grid of ``block`` pixels from the window's origin)
and level: the suppression an input-sized window would have done, per pixel at its cost. The
best anchors per level and the survivors kept are still chosen over the whole window; two
near-identical proposals centred on either side of a block's edge both survive (as they do in
two neighbouring input-sized windows), for the box head's own NMS to settle. Without a block
it is torchvision's filter.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops


def block_groups(
    boxes: Tensor, levels: Tensor, block: tuple[int, int], shape: tuple[int, int]
) -> Tensor:
    """NMS groups of ``boxes`` ``(N, 4)`` xyxy pixels: one per (feature level, block of
    ``block`` ``(rows, columns)`` pixels holding the box's centre) of an image of ``shape``
    ``(H, W)``; ``levels`` ``(N,)`` int64. Returns ``(N,)`` int64."""
    rows = max(1, -(-int(shape[0]) // int(block[0])))
    cols = max(1, -(-int(shape[1]) // int(block[1])))
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).div(block[1]).floor().long().clamp(0, cols - 1)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).div(block[0]).floor().long().clamp(0, rows - 1)
    return (levels * rows + cy) * cols + cx


def filter_proposals(
    rpn: torch.nn.Module,
    proposals: Tensor,
    objectness: Tensor,
    image_shapes: list[tuple[int, int]],
    num_anchors_per_level: list[int],
    block: tuple[int, int] | None,
) -> tuple[list[Tensor], list[Tensor]]:
    """torchvision's ``RegionProposalNetwork.filter_proposals`` (per image: best anchors per
    level, clipped, small and low-scoring ones dropped, NMS per level, best
    ``post_nms_top_n`` kept), the NMS per level and ``block`` when one is given (module doc).
    ``proposals`` ``(B, A, 4)`` decoded boxes in the batch's pixels, ``objectness`` logits
    ``(B * A, 1)``; returns per image the boxes ``(P, 4)`` and their probabilities ``(P,)``."""
    num_images = proposals.shape[0]
    device = proposals.device
    objectness = objectness.detach().reshape(num_images, -1)
    levels = torch.cat(
        [
            torch.full((n,), i, dtype=torch.int64, device=device)
            for i, n in enumerate(num_anchors_per_level)
        ]
    )
    levels = levels.reshape(1, -1).expand_as(objectness)
    top_n_idx = rpn._get_top_n_idx(objectness, num_anchors_per_level)
    batch_idx = torch.arange(num_images, device=device)[:, None]
    objectness = objectness[batch_idx, top_n_idx]
    levels = levels[batch_idx, top_n_idx]
    proposals = proposals[batch_idx, top_n_idx]
    probabilities = torch.sigmoid(objectness)
    final_boxes, final_scores = [], []
    for boxes, scores, lvl, shape in zip(
        proposals, probabilities, levels, image_shapes, strict=True
    ):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = torch.where(scores >= rpn.score_thresh)[0]
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        groups = lvl if block is None else block_groups(boxes, lvl, block, shape)
        keep = box_ops.batched_nms(boxes, scores, groups, rpn.nms_thresh)
        keep = keep[: rpn.post_nms_top_n()]
        final_boxes.append(boxes[keep])
        final_scores.append(scores[keep])
    return final_boxes, final_scores
