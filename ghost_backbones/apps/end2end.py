"""End-to-end models for ONNX: a preprocessed image batch in; final detections, or label maps, out.

Detectors: mmdet's post-processing of the head in the graph, as its ``predict_by_feat`` does it
for one image, for every image of the batch:

* dense heads (SSD / SSDLite softmax, RetinaNet sigmoid): per level, the ``nms_pre`` best
  (box, class) pairs above ``score_thr``; boxes decoded by the head's own box coder and clipped
  to the input; boxes of no area dropped;
* YOLOv3: boxes with objectness >= ``conf_thr``, the ``nms_pre`` best (box, class) pairs above
  ``score_thr`` over all levels, scores multiplied by objectness;

then class-wise NMS (ONNX ``NonMaxSuppression``, the config's IoU threshold) and the
``max_per_img`` best detections per image. Outputs: ``boxes`` (N, K, 4) x1 y1 x2 y2 in input
pixels, ``scores`` (N, K) and ``labels`` (N, K), K = ``max_per_img``; unused slots have score -1.

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

    boxes (N, A, 4), scores (N, C, A), selected (M, 3). Empty slots point at an extra row of
    zeros with score -1, so that no count (M, images without detections) needs a branch.
    """
    image, label, box = selected[:, 0], selected[:, 1], selected[:, 2]
    kept_scores = scores[image, label, box]
    per_image = torch.where(image[None, :] == torch.arange(boxes.shape[0], device=boxes.device)[:, None],
                            kept_scores[None, :], torch.full_like(kept_scores[None, :], -1.0))
    padding = torch.full((boxes.shape[0], max_per_img), -1.0, device=boxes.device, dtype=scores.dtype)
    top_scores, top = torch.cat([per_image, padding], 1).topk(max_per_img, dim=1)
    rows = torch.where(top < selected.shape[0], top, torch.full_like(top, selected.shape[0]))
    all_boxes = torch.cat([boxes[image, box], boxes.new_zeros(1, 4)])
    all_labels = torch.cat([label, label.new_zeros(1)])
    return all_boxes[rows], top_scores, all_labels[rows]


def decode_deltas(coder, priors: torch.Tensor, deltas: torch.Tensor, image_size) -> torch.Tensor:
    """mmdet's DeltaXYWHBBoxCoder.decode for 2-D inputs, through its ``delta2bbox``: in mmdet
    3.3.0 the coder's ONNX-export branch imports ``mmdet.core``, which 3.x no longer has."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    return delta2bbox(priors, deltas, coder.means, coder.stds, image_size, 16 / 1000, coder.clip_border,
                      coder.add_ctr_clamp, coder.ctr_clamp)


def mask_empty_boxes(scores: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Scores (N, A, C) of boxes (N, A, 4) without area set to -1 (mmdet's min_bbox_size 0)."""
    empty = (boxes[..., 2] <= boxes[..., 0]) | (boxes[..., 3] <= boxes[..., 1])
    return torch.where(empty[..., None], torch.full_like(scores, -1.0), scores)


class DetectorEnd2End(nn.Module):
    """A single-stage mmdet detector with its post-processing (see the module docstring)."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        self.head = detector.bbox_head
        self.cfg = self.head.test_cfg
        if type(self.head).__name__ not in ('SSDHead', 'RetinaHead', 'YOLOV3Head', 'AnchorHead'):
            raise ValueError(f'end-to-end export supports SSD / SSDLite, RetinaNet and YOLOv3 heads, '
                             f'not {type(self.head).__name__}')

    def forward(self, images: torch.Tensor):
        height, width = images.shape[-2:]
        outputs = self.head(self.detector.extract_feat(images))
        if type(self.head).__name__ == 'YOLOV3Head':
            boxes, scores = self.yolov3_candidates(outputs[0])
        else:
            boxes, scores = self.dense_candidates(*outputs, (height, width))
        scores = mask_empty_boxes(scores, boxes).transpose(1, 2)  # (N, C, A)
        nms = self.cfg.nms
        max_per_img = self.cfg.max_per_img
        selected = NonMaxSuppression.apply(boxes, scores, max_per_img, float(nms.iou_threshold), 0.0)
        return top_detections(boxes, scores, selected, max_per_img)

    def level_priors(self, maps):
        sizes = [m.shape[-2:] for m in maps]
        return self.head.prior_generator.grid_priors(sizes, dtype=maps[0].dtype, device=maps[0].device)

    def dense_candidates(self, cls_scores, bbox_preds, image_size):
        """Boxes (N, A, 4) and scores (N, A, C) of the kept pairs, -1 elsewhere (SSD, RetinaNet)."""
        all_boxes, all_scores = [], []
        for cls_score, bbox_pred, priors in zip(cls_scores, bbox_preds, self.level_priors(cls_scores)):
            n = cls_score.shape[0]
            logits = cls_score.permute(0, 2, 3, 1).reshape(n, -1, self.head.cls_out_channels)
            scores = logits.sigmoid() if self.head.use_sigmoid_cls else logits.softmax(-1)[..., :-1]
            deltas = bbox_pred.permute(0, 2, 3, 1).reshape(n, -1, 4)
            all_scores.append(keep_top_pairs(scores, self.cfg.score_thr, self.cfg.get('nms_pre', -1)))
            boxes = decode_deltas(self.head.bbox_coder, priors.reshape(1, -1, 4).expand(n, -1, -1).reshape(-1, 4),
                                  deltas.reshape(-1, 4), image_size)
            all_boxes.append(boxes.reshape(n, -1, 4))
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
