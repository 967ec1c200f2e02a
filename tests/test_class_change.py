"""Adding a class keeps what the trained model learnt (engine.class_change, workflow.load_model).

Found by a new user: after ``add-class`` the next ``predict``/``rank`` said "no trained model
yet" and ran untrained heads, and ``train`` restarted from the COCO backbone, throwing away
every round of training. Every model and image is generated here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_al.cli import main
from napari_al.core.engine import Detector
from napari_al.core.engine.class_change import with_classes
from napari_al.core.store import ProjectStore

ARCHS = ["fasterrcnn_mobilenet_v2_fpn", "ssdlite320_mobilenet_v3_large"]


def _detector(arch: str, classes: list[str]) -> Detector:
    torch.manual_seed(0)
    d = Detector(classes, arch, pretrained_backbone=False, device="cpu", min_size=128,
                 max_size=160, seed=0)  # fmt: skip
    with torch.no_grad():  # every weight away from its initialisation, as after training
        for p in d.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return d


def test_reordered_classes_predict_the_same_boxes_under_their_new_labels() -> None:
    old = _detector(ARCHS[0], ["a", "b"])
    new, kept = with_classes(old, ["b", "a"])
    assert kept.fresh == () and kept.partly > 0 and kept.added == ()
    image = np.random.default_rng(0).integers(0, 255, (128, 160, 3), dtype=np.uint8)
    p_old, p_new = old.predict([image])[0], new.predict([image])[0]
    assert len(p_old.boxes) > 0
    np.testing.assert_allclose(p_new.boxes, p_old.boxes, atol=1e-4)
    np.testing.assert_allclose(p_new.scores, p_old.scores, atol=1e-5)
    assert list(p_new.labels) == [1 - int(k) for k in p_old.labels]  # a <-> b


def test_a_one_stage_heads_class_logits_follow_their_classes() -> None:
    """SSDlite's anchor-major layout: the same logits, each class's under its new slot
    (a random model's hundreds of tied detections make comparing predictions meaningless)."""
    old = _detector(ARCHS[1], ["a", "b"])
    new, _ = with_classes(old, ["b", "a"])
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        feats = list(old.model.backbone(x).values())
        logits_old = old.model.head.classification_head(feats)  # (N, anchors, background + 2)
        logits_new = new.model.head.classification_head(feats)
    torch.testing.assert_close(logits_new, logits_old[..., [0, 2, 1]])


@pytest.mark.parametrize("arch", ARCHS)
def test_an_added_class_keeps_the_old_rows_and_every_other_weight(arch: str) -> None:
    old = _detector(arch, ["a", "b"])
    new, kept = with_classes(old, ["a", "c", "b"])
    assert kept.shared == ("a", "b") and kept.added == ("c",) and new.model_version == 0
    so, sn = old.model.state_dict(), new.model.state_dict()
    grown = [k for k in sn if sn[k].shape != so[k].shape]
    assert grown and all(torch.equal(sn[k], so[k]) for k in sn if k not in grown)
    for k in grown:  # slots: background 0, a 1, c 2, b 3 (new); background 0, a 1, b 2 (old)
        per = sn[k].shape[0] // 4
        assert so[k].shape[0] // 3 == per
        major = "bbox_pred" in k or "cls_score" in k

        def rows(t: torch.Tensor, slot: int, per: int = per, major: bool = major) -> torch.Tensor:
            # class-major: a slot's rows together; anchor-major: anchor r's slot at r*slots+slot
            return t[slot * per : (slot + 1) * per] if major else t[slot :: t.shape[0] // per]

        for new_slot, old_slot in ((0, 0), (1, 1), (3, 2)):
            assert torch.equal(rows(sn[k], new_slot), rows(so[k], old_slot)), k
        assert not torch.equal(rows(sn[k], 2), rows(so[k], 1))  # c's rows: fresh


def test_add_class_carries_the_trained_model_over(tmp_path: Path, capsys) -> None:
    project = tmp_path / "p"
    project.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (i * 90, 120, 40)).save(project / f"im{i}.png")
    tiny = ["--min-size", "64", "--max-size", "80", "--device", "cpu"]
    assert main(["init", str(project)]) == 0 and main(["add-class", str(project), "cell"]) == 0
    with ProjectStore.open(project) as store:
        ids = [r.id for r in store.images()]
        cell = store.class_id("cell")
        for image_id in ids:
            store.add_box(image_id, (5, 5, 30, 30), cell, status="drawn")
            store.set_review_state(image_id, "complete")
    assert main(["train", str(project), *tiny, "--steps", "1"]) == 0
    from napari_al.core.engine import load_checkpoint

    with ProjectStore.open(project) as store:
        trained, _ = load_checkpoint(store.abs_path(store.latest_model_version()))
    capsys.readouterr()
    assert main(["add-class", str(project), "debris"]) == 0
    assert "next training continues model version 1 with output rows for the new class" in (
        capsys.readouterr().out
    )
    assert main(["predict", str(project), *tiny]) == 0
    err = capsys.readouterr().err
    assert "classes changed since model version 1 (debris added)" in err
    assert "no trained model yet" not in err and "untrained output rows for the new classes" in err
    from napari_al.core import workflow

    with ProjectStore.open(project) as store:
        detector = workflow.load_model(store, workflow.ModelSettings(device="cpu"))
    assert detector.classes == ["cell", "debris"] and detector.model_version == 0
    body = "backbone.body"
    so, sn = trained.model.state_dict(), detector.model.state_dict()
    assert all(torch.equal(sn[k], so[k]) for k in sn if k.startswith(body))
