"""The detector: torchvision detectors that say everything scorers need in one pass.

Rich predictions (:class:`~napari_al.core.data.Predictions`) come from ONE forward pass:

- two-stage (Faster R-CNN): ``postprocess_detections`` is reimplemented keeping, for each kept
  box, the proposal it was refined from, so that the full softmax row (``probs``, background in
  column 0), the box-head output (``features``, D = 1024 for the default: TwoMLPHead fc7) and the
  RPN proposal (``proposals``, for localization tightness, Kao et al.) can be gathered
  (:class:`~napari_al.core.engine.heads.RichRoIHeads`);
- one-stage (RetinaNet, FCOS, SSDlite): see
  :func:`~napari_al.core.engine.one_stage.sigmoid_scores_to_probs`; ``features`` are the
  classification tower output at the box's anchor (D = 256) for RetinaNet/FCOS and empty
  (D = 0) for SSDlite; ``proposals`` is ``None``.

``embedding`` (E) is the global average pool of every backbone/FPN level over the valid (unpadded)
image area, concatenated: E = 256 x levels = 1280 for the default and the ResNet-50 models, 768 for
``fasterrcnn_mobilenet_v3_large_fpn`` (3 levels), 2304 for SSDlite.

:meth:`Detector.scoring_views` computes the extra views scorers need with the backbone run ONCE
per view (:mod:`napari_al.core.engine.views`): MC dropout (Gal & Ghahramani; as used for
detection by Miller et al.) reruns only the box head over cached RoI-pooled features; the
flipped view is mapped back to original pixels; candidates use a low threshold and more boxes
per image (Desai et al.: maximise recall).

:meth:`Detector.predict_tiled` predicts a large image window by window at the model's native
scale (:mod:`napari_al.core.engine.tiling`).

How a detector is built and where its initial weights come from: :mod:`napari_al.core.engine.build`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from napari_al.core.data import Predictions, ScoringViews
from napari_al.core.engine import tiling, views
from napari_al.core.engine.build import DEFAULT_ARCH, DetectorConfig, build_model
from napari_al.core.engine.device import autocast, keep_freed_memory, select_device
from napari_al.core.engine.folding import FoldedBackbone
from napari_al.core.engine.inference import (
    CANDIDATE_DETECTIONS_PER_IMAGE,
    CANDIDATE_SCORE_THRESHOLD,
    DETECTIONS_PER_IMAGE,
    SCORE_THRESHOLD,
    RawDetections,
    image_embedding,
    image_to_tensor,
    load_image,
    to_predictions,
)
from napari_al.core.engine.losses import proposal_budget
from napari_al.core.engine.one_stage import one_stage_detections
from napari_al.core.engine.views import MC_DROPOUT_P, NOISE_SIGMA
from napari_al.core.engine.weights import SOURCES, Preprocessing

ProgressCallback = Callable[[int, int], None]


class Detector:
    """A torchvision detector for a project's classes, with rich predictions and scoring views.

    ``classes`` are the project's (foreground) class names; labels are 0-based indices into it.
    Inputs are ``uint8`` HxWx3 arrays of any size (resized internally to ``min_size``/``max_size``;
    SSDlite always uses 320x320).

    ``weights``: a weight source (``"imagenet"``, ``"coco-mnv2"``, ``"torchvision-coco"``), a
    file, or None (automatic); see :mod:`napari_al.core.engine.weights`. The source's
    preprocessing is part of :attr:`config` and so of every checkpoint.

    ``model_version`` (int) is the project store's model version the weights came from; 0 = not
    trained in a project yet (a fresh detector, or one loaded from a file outside a store). The
    store owns versions: whoever loads or trains the detector for a project sets it; it is not
    written to checkpoints, and ``copy.deepcopy`` keeps it.
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
        preprocessing: Preprocessing | None = None,
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
            preprocessing=preprocessing,
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
            weights="" if weights is None else str(weights),
        )
        self._record_preprocessing(info.preprocessing)
        self.build_info = info
        self.build_message = info.message
        self._init_weights = None if weights is None else str(weights)
        self._pretrained_backbone = pretrained_backbone
        #: Preprocessing imposed on the structure (a checkpoint's), else the source's.
        self._preprocessing = preprocessing
        keep_freed_memory()  # before the first forward pass (engine.device)
        self.device = select_device(device)
        self.amp = amp
        self.model = model.to(self.device).eval()
        #: The backbone with its batch norms folded, for inference (engine.folding).
        self._inference_backbone = FoldedBackbone()
        self._apply_runtime_config()
        self._dims: tuple[int, int] | None = None
        #: The project store's model version of these weights (0: not trained in a project yet).
        self.model_version: int = 0

    def _record_preprocessing(self, prep: Preprocessing) -> None:
        """Write what the model applies into the config (and so into checkpoints)."""
        c = self.config
        c.image_mean = None if prep.image_mean is None else list(prep.image_mean)
        c.image_std = None if prep.image_std is None else list(prep.image_std)
        c.tf_same_padding = bool(prep.tf_same_padding)

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
        filled from a checkpoint), with the config's preprocessing."""
        prep = Preprocessing(
            None if config.image_mean is None else tuple(config.image_mean),
            None if config.image_std is None else tuple(config.image_std),
            bool(config.tf_same_padding),
        )
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
            preprocessing=prep,
        )._with_init(config.init, config.weights)

    def _with_init(self, init: str, weights: str) -> Detector:
        self.config.init, self.config.weights = init, weights
        # reset() (train(from_scratch=True)) restarts from the pretrained backbone if there was
        # one: the same named source (a file may be gone: then the automatic one)
        self._pretrained_backbone = init != "scratch"
        self._init_weights = weights if weights in SOURCES else None
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

    def image_tensors(self, images: Sequence[np.ndarray]) -> list[Tensor]:
        """Images as float CHW tensors in [0, 1] on the detector's device."""
        return [image_to_tensor(im).to(self.device, non_blocking=True) for im in images]

    def inference_backbone(self) -> nn.Module:
        """The backbone that inference runs: a copy of ``model.backbone`` with its batch norms
        folded into their convolutions, rebuilt when the weights change (engine.folding); the
        same features to float rounding, less memory and time per pass."""
        return self._inference_backbone(self.model.backbone)

    def _backbone_features(
        self, tensors: list[Tensor], scale_one: bool = False
    ) -> tuple[Any, dict[str, Tensor], Tensor]:
        t = self.model.transform
        if scale_one:
            # normalised and padded into one batch as the transform does, but not resized
            normed = [t.normalize(x) for x in tensors]
            sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in normed]
            image_list = ImageList(t.batch_images(normed, size_divisible=t.size_divisible), sizes)
        else:
            image_list, _ = t(tensors, None)
        feats = self.inference_backbone()(image_list.tensors)
        if isinstance(feats, Tensor):
            feats = OrderedDict([("0", feats)])
        padded = tuple(image_list.tensors.shape[-2:])
        emb = image_embedding(feats, image_list.image_sizes, padded)  # type: ignore[arg-type]
        return image_list, feats, emb

    @torch.inference_mode()
    def infer_raw(
        self,
        tensors: list[Tensor],
        score_thresh: float,
        detections: int,
        keep_pooled: bool = False,
        *,
        scale_one: bool = False,
        budget: float = 1.0,
        proposal_block: tuple[int, int] | None = None,
    ) -> list[RawDetections]:
        """One forward pass (backbone once) on a batch of :meth:`image_tensors`: per image the
        detections scoring above ``score_thresh``, at most ``detections``, in resized-image
        coordinates (:func:`~napari_al.core.engine.inference.to_predictions` maps them back);
        ``keep_pooled`` keeps the RoI-pooled features of two-stage boxes (for MC dropout).

        ``scale_one``: the tensors go in at their own size, not resized to the model's input
        (windows of a large image, :mod:`~napari_al.core.engine.tiling`; not for SSDlite, whose
        input size is fixed); ``budget``: the RPN's proposals (two-stage) or the candidates per
        level (one-stage) are multiplied by it, for inputs ``budget`` times the model's input
        area, and ``proposal_block`` ``(rows, columns)`` px (the model's input) makes the RPN's NMS
        run block by block (:func:`~napari_al.core.engine.losses.proposal_budget`)."""
        self.model.eval()
        orig = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        with autocast(self.device, self.amp), proposal_budget(budget, proposal_block):
            image_list, feats, emb = self._backbone_features(tensors, scale_one)
            if self.two_stage:
                proposals, _ = self.model.rpn(image_list, feats)
                dets = self.model.roi_heads.rich_forward(
                    feats, proposals, image_list.image_sizes, score_thresh, detections, keep_pooled
                )
            else:
                dets = one_stage_detections(
                    self.model, image_list, feats, score_thresh, detections, budget
                )
        out = []
        for i, d in enumerate(dets):
            out.append(
                RawDetections(
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
            batch = self.image_tensors(images[start : start + batch_size])
            out.extend(
                to_predictions(r, self.num_classes) for r in self.infer_raw(batch, thr, dets)
            )
        return out

    def predict_tiled(
        self,
        image: Any,
        *,
        overlap: int,
        tile: tuple[int, int] | None = None,
        score_threshold: float | None = None,
        candidate: bool = False,
        batch_size: int = 4,
        window_scale: float = 1.0,
        features: bool = True,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Predictions | None:
        """Rich predictions of one large image, window by window at the model's native scale,
        windows overlapping by ``overlap`` pixels and merged with class-aware NMS
        (:func:`napari_al.core.engine.tiling.predict_tiled`, whose docstring gives the rule);
        windows up to ``window_scale`` times the model's input per side; ``features=False``
        leaves out the boxes' RoI features (``(N, 0)``; a caller that stores only boxes).

        ``image`` ``(H, W, 3)`` uint8 supports ``image[y0:y1, x0:x1]`` (a numpy array, or a
        lazy reader that decodes only that window); ``progress(windows done, total)``; None
        when ``should_stop()`` fired."""
        return tiling.predict_tiled(
            self,
            image,
            overlap=overlap,
            tile=tile,
            score_threshold=score_threshold,
            candidate=candidate,
            batch_size=batch_size,
            window_scale=window_scale,
            features=features,
            progress=progress,
            should_stop=should_stop,
        )

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
            tens = self.image_tensors(images[start : start + batch_size])
            bxs = [
                torch.as_tensor(np.asarray(b, np.float32).reshape(-1, 4), device=self.device)
                for b in boxes[start : start + batch_size]
            ]
            if self.two_stage:
                out.extend(self._reclassify_two_stage(tens, bxs))
            else:
                raws = self.infer_raw(
                    tens, CANDIDATE_SCORE_THRESHOLD, CANDIDATE_DETECTIONS_PER_IMAGE
                )
                for raw, b in zip(raws, bxs, strict=True):
                    pred = to_predictions(raw, self.num_classes)
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
        options = views.ViewOptions(
            mc_passes=mc_passes,
            flip=flip,
            noise_views=noise_views,
            noise_sigma=noise_sigma,
            candidates=candidates,
            dropout_p=dropout_p,
            score_threshold=score_threshold,
            ensemble=tuple(ensemble),
        )
        return views.scoring_views(
            self,
            images,
            options,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            should_stop=should_stop,
        )

    # --- state ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], strict: bool = True) -> None:
        self.model.load_state_dict(state, strict=strict)
        self.model.eval()

    def reset(self, seed: int | None = 0) -> None:
        """Re-initialise the weights as at construction (same initial weights, fresh heads).
        ``model_version`` is left as is: whoever trains and registers the new weights sets it."""
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
            preprocessing=None if self._pretrained_backbone else self._preprocessing,
        )
        self.model = model.to(self.device).eval()
        self._apply_runtime_config()
        self._record_preprocessing(info.preprocessing)
        # the source actually used (the automatic start may have fallen back since): the
        # checkpoint's provenance and the source's peak learning rate follow it
        self.config.init = info.source
        self.build_info = info
        self.build_message = info.message
