"""End-to-end models for ONNX: a preprocessed image batch in; final detections, or label maps, out.

Detectors: mmdet's post-processing of the head in the graph, as its ``predict_by_feat`` does it
for one image, for every image of the batch:

* dense heads (SSD / SSDLite softmax, RetinaNet and RTMDet sigmoid): per level, the ``nms_pre``
  best (box, class) pairs above ``score_thr``; boxes decoded by the head's own box coder (deltas
  on anchors, or RTMDet's distances on the level's points) and clipped to the input;
* YOLOv3: boxes with objectness >= ``conf_thr``, the ``nms_pre`` best (box, class) pairs above
  ``score_thr`` over all levels, scores multiplied by objectness;
* YOLOX: one class per point (its best), score = class score times objectness, kept when
  >= ``score_thr``; its own decoding, no clipping, no ``nms_pre``;

boxes no larger than the test config's ``min_bbox_size`` (when it has one) dropped, then
class-wise NMS (ONNX ``NonMaxSuppression``, the config's IoU threshold) and the ``max_per_img``
best detections per image (YOLOX's post-processing keeps every survivor: K is then its number of
points). Outputs: ``boxes`` (N, K, 4) x1 y1 x2 y2 in input pixels, ``scores`` (N, K) and
``labels`` (N, K); unused slots hold box 0 0 0 0, label 0 and score -1 in every image.

Supported heads are found by ``isinstance`` (a subclass of a supported head is accepted) as long
as the subclass keeps the post-processing methods of the head it derives from.

Segmenters: logits at the input size, argmax in the graph: ``labels`` (N, H, W).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torchvision

from .deploy import SegmentorLogits


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (class-wise, batched); eagerly, the same on torchvision.

    boxes (N, A, 4), scores (N, C, A) -> selected (M, 3) int64 rows [image, class, box], by image,
    then class, then descending score, like onnxruntime's. Boxes with score <= ``score_threshold``
    are not candidates; a box is suppressed when its IoU with a kept box exceeds ``iou_threshold``.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        selected = []
        for image in range(boxes.shape[0]):
            for label in range(scores.shape[1]):
                candidates = torch.nonzero(scores[image, label] > score_threshold).flatten()
                keep = torchvision.ops.nms(boxes[image, candidates], scores[image, label, candidates], iou_threshold)
                keep = candidates[keep[:max_per_class]]
                selected.append(torch.stack([torch.full_like(keep, image), torch.full_like(keep, label), keep], 1))
        return torch.cat(selected) if selected else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        def constant(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))
        return g.op('NonMaxSuppression', boxes, scores, constant(max_per_class, torch.int64),
                    constant(iou_threshold, torch.float32), constant(score_threshold, torch.float32))


def keep_top_pairs(scores: torch.Tensor, score_thr: float, nms_pre: int) -> torch.Tensor:
    """Scores (N, A, C) with every (box, class) pair set to -1 but the ``nms_pre`` best above
    ``score_thr`` of each image (mmdet's ``filter_scores_and_topk``)."""
    flat = scores.flatten(1)
    if 0 < nms_pre < flat.shape[1]:
        _, best = flat.topk(nms_pre, dim=1)
        chosen = torch.zeros_like(flat).scatter(1, best, torch.ones_like(best, dtype=flat.dtype)) > 0
        flat = torch.where(chosen, flat, torch.full_like(flat, -1.0))
    flat = torch.where(flat > score_thr, flat, torch.full_like(flat, -1.0))
    return flat.view_as(scores)


def top_detections(boxes: torch.Tensor, scores: torch.Tensor, selected: torch.Tensor,
                   max_per_img: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``max_per_img`` best NMS survivors of each image as fixed-size tensors.

    boxes (N, A, 4), scores (N, C, A), selected (M, 3). A slot that holds no detection of its own
    image points at an extra row of zeros (box 0 0 0 0, label 0) and has score -1, so that no
    count (M, images without detections) needs a branch.
    """
    image, label, box = selected[:, 0], selected[:, 1], selected[:, 2]
    kept_scores = scores[image, label, box]
    count = boxes.shape[0]
    mine = image[None, :] == torch.arange(count, device=boxes.device)[:, None]  # (N, M)
    per_image = torch.where(mine, kept_scores[None, :], torch.full_like(kept_scores[None, :], -1.0))
    padding = torch.full((count, max_per_img), -1.0, device=boxes.device, dtype=scores.dtype)
    top_scores, top = torch.cat([per_image, padding], 1).topk(max_per_img, dim=1)
    owned = torch.cat([mine.to(scores.dtype), padding.new_zeros(count, max_per_img)], 1).gather(1, top) > 0
    rows = torch.where(owned, top, torch.full_like(top, selected.shape[0]))
    top_scores = torch.where(owned, top_scores, torch.full_like(top_scores, -1.0))
    all_boxes = torch.cat([boxes[image, box], boxes.new_zeros(1, 4)])
    all_labels = torch.cat([label, label.new_zeros(1)])
    return all_boxes[rows], top_scores, all_labels[rows]


def decode_deltas(coder, priors: torch.Tensor, deltas: torch.Tensor, image_size) -> torch.Tensor:
    """mmdet's DeltaXYWHBBoxCoder.decode for 2-D inputs, through its ``delta2bbox``: in mmdet
    3.3.0 the coder's ONNX-export branch imports ``mmdet.core``, which 3.x no longer has."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    return delta2bbox(priors, deltas, coder.means, coder.stds, image_size, 16 / 1000, coder.clip_border,
                      coder.add_ctr_clamp, coder.ctr_clamp)


def decode_distances(points: torch.Tensor, distances: torch.Tensor, image_size, clip: bool) -> torch.Tensor:
    """mmdet's DistancePointBBoxCoder.decode (``distance2bbox``): points (..., 2), distances
    (..., 4) left / top / right / bottom, clipped to ``image_size`` (height, width)."""
    x1 = points[..., 0] - distances[..., 0]
    y1 = points[..., 1] - distances[..., 1]
    x2 = points[..., 0] + distances[..., 2]
    y2 = points[..., 1] + distances[..., 3]
    if clip:
        height, width = image_size
        x1, x2 = x1.clamp(min=0, max=width), x2.clamp(min=0, max=width)
        y1, y2 = y1.clamp(min=0, max=height), y2.clamp(min=0, max=height)
    return torch.stack([x1, y1, x2, y2], -1)


def mask_small_boxes(scores: torch.Tensor, boxes: torch.Tensor, min_bbox_size: float) -> torch.Tensor:
    """Scores (N, A, C) of boxes (N, A, 4) not wider and higher than ``min_bbox_size`` set to -1,
    as mmdet's ``_bbox_post_process`` drops them (no filter when the size is negative)."""
    if min_bbox_size < 0:
        return scores
    small = ((boxes[..., 2] - boxes[..., 0]) <= min_bbox_size) | ((boxes[..., 3] - boxes[..., 1]) <= min_bbox_size)
    return torch.where(small[..., None], torch.full_like(scores, -1.0), scores)


def supported_heads():
    """(head class, post-processing kind) in the order they are matched (subclasses first)."""
    from mmdet.models.dense_heads import AnchorHead, RetinaHead, RTMDetHead, SSDHead, YOLOV3Head, YOLOXHead
    return ((RTMDetHead, 'dense'), (YOLOXHead, 'yolox'), (YOLOV3Head, 'yolov3'), (SSDHead, 'dense'),
            (RetinaHead, 'dense'), (AnchorHead, 'dense'))


POST_PROCESSING = ('predict_by_feat', '_predict_by_feat_single', '_bbox_post_process', '_bbox_decode')


def head_kind(head: nn.Module) -> str:
    """The post-processing the graph reproduces for ``head``: found by ``isinstance``; a subclass
    that overrides a post-processing method of its supported base is refused (the graph would
    not be its post-processing)."""
    for base, kind in supported_heads():
        if isinstance(head, base):
            changed = [name for name in POST_PROCESSING
                       if hasattr(base, name) and getattr(type(head), name) is not getattr(base, name)]
            if changed:
                raise ValueError(f'{type(head).__name__} derives from {base.__name__} but overrides its '
                                 f'post-processing ({", ".join(changed)}): end-to-end export reproduces '
                                 f'{base.__name__}\'s only')
            return kind
    names = ', '.join(base.__name__ for base, _ in supported_heads())
    raise ValueError(f'end-to-end export supports {names} and their subclasses, not {type(head).__name__}')


class DetectorEnd2End(nn.Module):
    """A single-stage mmdet detector with its post-processing (see the module docstring)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        self.head = detector.bbox_head
        self.cfg = self.head.test_cfg
        self.kind = head_kind(self.head)
        nms = self.cfg.get('nms') or {}
        if nms.get('type', 'nms') != 'nms' or nms.get('class_agnostic', False):
            raise ValueError(f'end-to-end export reproduces class-wise hard NMS, not {dict(nms)}')
        if self.kind == 'dense':
            from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder, DistancePointBBoxCoder
            if not isinstance(self.head.bbox_coder, (DeltaXYWHBBoxCoder, DistancePointBBoxCoder)):
                raise ValueError(f'end-to-end export decodes DeltaXYWHBBoxCoder and DistancePointBBoxCoder boxes, '
                                 f'not {type(self.head.bbox_coder).__name__}')

    @property
    def clips_boxes(self) -> bool:
        """Whether mmdet clips this head's boxes to the image (the runner then clips them to the
        original image; YOLOv3 and YOLOX boxes may cross the border)."""
        return self.kind == 'dense' and bool(getattr(self.head.bbox_coder, 'clip_border', True))

    def forward(self, images: torch.Tensor):
        height, width = images.shape[-2:]
        outputs = self.head(self.detector.extract_feat(images))
        if self.kind == 'yolov3':
            boxes, scores = self.yolov3_candidates(outputs[0])
        elif self.kind == 'yolox':
            boxes, scores = self.yolox_candidates(*outputs)
        else:
            if len(outputs) != 2:
                raise ValueError(f'{type(self.head).__name__} returns {len(outputs)} outputs (score factors?): '
                                 'end-to-end export reproduces heads of class scores and boxes only')
            boxes, scores = self.dense_candidates(*outputs, (height, width))
        scores = mask_small_boxes(scores, boxes, self.cfg.get('min_bbox_size', -1)).transpose(1, 2)  # (N, C, A)
        max_per_img = self.cfg.get('max_per_img', int(boxes.shape[1]))  # YOLOX keeps every NMS survivor
        selected = NonMaxSuppression.apply(boxes, scores, max_per_img, float(self.cfg.nms.iou_threshold), 0.0)
        return top_detections(boxes, scores, selected, max_per_img)

    def level_priors(self, maps, **kwargs):
        sizes = [m.shape[-2:] for m in maps]
        return self.head.prior_generator.grid_priors(sizes, dtype=maps[0].dtype, device=maps[0].device, **kwargs)

    def dense_candidates(self, cls_scores, bbox_preds, image_size):
        """Boxes (N, A, 4) and scores (N, A, C) of the kept pairs, -1 elsewhere (SSD, RetinaNet, RTMDet)."""
        from mmdet.models.task_modules.coders import DistancePointBBoxCoder
        coder = self.head.bbox_coder
        all_boxes, all_scores = [], []
        for cls_score, bbox_pred, priors in zip(cls_scores, bbox_preds, self.level_priors(cls_scores)):
            n = cls_score.shape[0]
            logits = cls_score.permute(0, 2, 3, 1).reshape(n, -1, self.head.cls_out_channels)
            scores = logits.sigmoid() if self.head.use_sigmoid_cls else logits.softmax(-1)[..., :-1]
            predictions = bbox_pred.permute(0, 2, 3, 1).reshape(n, -1, 4)
            all_scores.append(keep_top_pairs(scores, self.cfg.score_thr, self.cfg.get('nms_pre', -1)))
            if isinstance(coder, DistancePointBBoxCoder):
                boxes = decode_distances(priors[None], predictions, image_size, coder.clip_border)
            else:
                boxes = decode_deltas(coder, priors.reshape(1, -1, 4).expand(n, -1, -1).reshape(-1, 4),
                                      predictions.reshape(-1, 4), image_size).reshape(n, -1, 4)
            all_boxes.append(boxes)
        return torch.cat(all_boxes, 1), torch.cat(all_scores, 1)

    def yolov3_candidates(self, pred_maps):
        """YOLOv3: objectness >= conf_thr, best pairs over all levels, times objectness."""
        n = pred_maps[0].shape[0]
        attributes = 5 + self.head.num_classes
        predictions = torch.cat([p.permute(0, 2, 3, 1).reshape(n, -1, attributes) for p in pred_maps], 1)
        priors = self.level_priors(pred_maps)
        strides = torch.cat([torch.full((len(p),), float(stride), device=p.device)
                             for p, stride in zip(priors, self.head.featmap_strides)])
        offsets = torch.cat([predictions[..., :2].sigmoid(), predictions[..., 2:4]], -1)  # as mmdet's predict_by_feat
        boxes = self.head.bbox_coder.decode(torch.cat(priors)[None].expand(n, -1, -1), offsets, strides[:, None])
        objectness = predictions[..., 4].sigmoid()
        scores = predictions[..., 5:].sigmoid()
        confident = objectness >= self.cfg.get('conf_thr', -1)
        scores = torch.where(confident[..., None], scores, torch.full_like(scores, -1.0))
        scores = keep_top_pairs(scores, self.cfg.score_thr, self.cfg.get('nms_pre', -1))
        scores = torch.where(scores > 0, scores * objectness[..., None], scores)
        return boxes, scores

    def yolox_candidates(self, cls_scores, bbox_preds, objectnesses):
        """YOLOX: each point's best class, score = class score times objectness, kept when >= score_thr."""
        n = cls_scores[0].shape[0]
        priors = torch.cat(self.level_priors(cls_scores, with_stride=True))
        classes = torch.cat([c.permute(0, 2, 3, 1).reshape(n, -1, self.head.cls_out_channels)
                             for c in cls_scores], 1).sigmoid()
        predictions = torch.cat([b.permute(0, 2, 3, 1).reshape(n, -1, 4) for b in bbox_preds], 1)
        objectness = torch.cat([o.permute(0, 2, 3, 1).reshape(n, -1) for o in objectnesses], 1).sigmoid()
        boxes = self.head._bbox_decode(priors, predictions)
        max_scores, labels = classes.max(-1)
        valid = objectness * max_scores >= self.cfg.score_thr
        best = labels[..., None] == torch.arange(classes.shape[-1], device=labels.device)
        scores = torch.where(best & valid[..., None], (max_scores * objectness)[..., None],
                             torch.full_like(classes, -1.0))
        return boxes, scores


class SegmentorEnd2End(nn.Module):
    """An encoder-decoder segmenter to its label map at the input size (argmax in the graph)."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.logits = SegmentorLogits(segmentor)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(dim=1)


def end2end(model: nn.Module) -> nn.Module:
    if hasattr(model, 'bbox_head'):
        return DetectorEnd2End(model)
    if hasattr(model, 'decode_head'):
        return SegmentorEnd2End(model)
    raise ValueError(f'end-to-end export is for detectors and segmenters, not {type(model).__name__}')
