"""The RPN's proposal filter for windows larger than the model's input: NMS per block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import clip_boxes_to_image, nms, remove_small_boxes

from napari_al.core.engine import Detector
from napari_al.core.engine.losses import proposal_budget
from napari_al.core.engine.proposals import block_groups, filter_proposals


def test_block_groups_split_levels_and_blocks_by_the_box_centre() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # centre (5, 5): block (0, 0)
            [90.0, 0.0, 130.0, 10.0],  # centre (110, 5): block (0, 1)
            [0.0, 95.0, 10.0, 130.0],  # centre (5, 112.5): block (1, 0)
            [190.0, 190.0, 260.0, 260.0],  # centre (225, 225): past the image, last block
            [0.0, 0.0, 10.0, 10.0],  # block (0, 0), another level
        ]
    )
    levels = torch.tensor([0, 0, 0, 0, 1])
    groups = block_groups(boxes, levels, (100, 100), (200, 200)).tolist()
    assert groups == [0, 1, 2, 3, 4]
    # one block covering the image: the groups are the levels
    assert torch.equal(block_groups(boxes, levels, (500, 500), (200, 200)), levels)


def _rpn_inputs(det: Detector, image: np.ndarray) -> tuple:
    """What the RPN passes its filter for ``image``: decoded proposals, objectness, sizes."""
    rpn = det.model.rpn
    image_list, feats, _ = det._backbone_features(det.image_tensors([image]), scale_one=True)
    features = list(feats.values())
    objectness, deltas = rpn.head(features)
    anchors = rpn.anchor_generator(image_list, features)
    per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(1, -1, 4)
    return (proposals, objectness, image_list.image_sizes, per_level), image_list, feats


@pytest.fixture(scope="module")
def detector() -> Detector:
    det = Detector(["cell"], min_size=128, max_size=160, seed=0)
    det.model.eval()
    return det


def test_without_a_block_the_filter_is_torchvisions(detector: Detector) -> None:
    """The filter's own copy of torchvision's steps, with no block or one block spanning the
    window, keeps torchvision's proposals exactly, in order (budget 3.5 for a window)."""
    image = np.random.default_rng(0).integers(0, 255, (256, 320, 3), np.uint8)
    rpn = detector.model.rpn
    with torch.inference_mode(), proposal_budget(3.5):
        args, _, _ = _rpn_inputs(detector, image)
        theirs, _ = RegionProposalNetwork.filter_proposals(rpn, *args)
        for block in (None, (256, 320)):
            ours, _ = filter_proposals(rpn, *args, block)
            assert len(ours[0]) == len(theirs[0]) > 0
            assert torch.equal(ours[0], theirs[0])


def test_a_block_suppresses_within_itself_only(detector: Detector) -> None:
    """Blocked NMS is torchvision's NMS run on each block's boxes alone, per level: more
    survive (nothing is suppressed across a block's edge), and the RPN uses the block given
    to :func:`proposal_budget`, and only then."""
    image = np.random.default_rng(1).integers(0, 255, (256, 320, 3), np.uint8)
    rpn = detector.model.rpn
    with torch.inference_mode(), proposal_budget(1e6):  # no cut: compare every survivor
        args, image_list, feats = _rpn_inputs(detector, image)
        whole, _ = filter_proposals(rpn, *args, None)
        blocked, _ = filter_proposals(rpn, *args, (128, 160))
        with proposal_budget(1e6, (128, 160)):
            via_rpn, _ = rpn(image_list, feats)
    assert torch.equal(via_rpn[0], blocked[0])
    assert len(blocked[0]) > len(whole[0])
    # each block alone: every box of the window's candidates centred in it, one NMS per level
    with torch.inference_mode(), proposal_budget(1e6):
        candidates, scores = _candidates(rpn, *args)
    centre = (candidates[:, :2] + candidates[:, 2:]) / 2
    cell = (centre[:, 1] // 128).clamp(max=1) * 2 + (centre[:, 0] // 160).clamp(max=1)
    expected = set()
    for b in range(4):
        for level in candidates.new_tensor(range(len(args[3]))).long():
            sel = torch.where((cell == b) & (scores[1] == level))[0]
            keep = nms(candidates[sel], scores[0][sel], rpn.nms_thresh)
            expected |= {tuple(x) for x in candidates[sel][keep].tolist()}
    assert {tuple(x) for x in blocked[0].tolist()} == expected


def _candidates(rpn, proposals, objectness, image_shapes, per_level) -> tuple:
    """The boxes torchvision's filter runs its NMS on, with (probabilities, levels)."""
    levels = torch.cat([torch.full((n,), i) for i, n in enumerate(per_level)])
    idx = rpn._get_top_n_idx(objectness.reshape(1, -1), per_level)[0]
    boxes = clip_boxes_to_image(proposals[0, idx], image_shapes[0])
    probs = torch.sigmoid(objectness.reshape(-1)[idx])
    keep = remove_small_boxes(boxes, rpn.min_size)
    keep = keep[probs[keep] >= rpn.score_thresh]
    return boxes[keep], (probs[keep], levels[idx][keep])
