"""mmcv's ops on torchvision (mmcv-lite): numbers that would be wrong if the ops were wrong,
through mmcv's own wrappers (what mmdet calls), on CPU and, when present, on CUDA."""
import os
import subprocess
import sys

import pytest
import torch

from ghost_backbones_startup import mmcv_ops

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
uses_our_ops = pytest.mark.skipif(
    __import__('ghost_backbones_startup.mmcv_ext', fromlist=['provider']).provider() != 'torchvision',
    reason='a compiled mmcv is installed: its own ops run, these check ours')


def iou_matrix(boxes, offset=0):
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    wh = (torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:]) -
          torch.maximum(boxes[:, None, :2], boxes[None, :, :2]) + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def reference_nms(boxes, scores, threshold, offset=0):
    """Greedy NMS as a plain loop: the definition."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    iou = iou_matrix(boxes.double(), offset)
    keep = []
    for i in order:
        if all(iou[i, k] <= threshold for k in keep):
            keep.append(i)
    return keep


def random_boxes(count, seed, device='cpu'):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=gen) * 100
    wh = torch.rand(count, 2, generator=gen) * 40 + 1
    scores = torch.rand(count, generator=gen)
    return torch.cat([xy, xy + wh], 1).to(device), scores.to(device)


@pytest.mark.parametrize('device', DEVICES)
def test_nms_keeps_the_right_boxes(device):
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.],     # 0: best
                          [1., 1., 11., 11.],     # 1: IoU 0.68 with 0 -> suppressed
                          [20., 20., 30., 30.],   # 2: far away -> kept
                          [0., 0., 10., 9.],      # 3: IoU 0.9 with 0 -> suppressed
                          [21., 21., 29., 29.]], device=device)  # 4: IoU 0.64 with 2 -> suppressed
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5], device=device)
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    torch.testing.assert_close(dets[:, 4].cpu(), torch.tensor([0.9, 0.7]))
    assert nms(boxes, scores, iou_threshold=0.7)[1].tolist() == [0, 1, 2, 4]  # 0.64 < 0.7 <= 0.9
    # mmcv's score_threshold and max_num run around the op
    assert nms(boxes, scores, 0.7, score_threshold=0.65)[1].tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.7, max_num=2)[1].tolist() == [0, 1]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('offset', [0, 1])
def test_nms_equals_the_greedy_definition_on_random_boxes(device, offset):
    from mmcv.ops import nms
    for seed in range(20):
        boxes, scores = random_boxes(60, seed, device)
        _, keep = nms(boxes, scores, iou_threshold=0.4, offset=offset)
        assert keep.tolist() == reference_nms(boxes.cpu(), scores.cpu(), 0.4, offset), seed


def test_batched_nms_suppresses_within_a_class_only():
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.5], [0., 0., 10., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = batched_nms(boxes, scores, torch.tensor([0, 0, 1]), dict(type='nms', iou_threshold=0.5))
    assert keep.tolist() == [0, 2]  # box 1 overlaps box 0 of its class; box 2 is another class


def test_empty_input():
    from mmcv.ops import nms
    dets, keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and dets.shape == (0, 5)


@pytest.mark.parametrize('method, expected', [
    # box 1 overlaps box 0 with IoU 0.8 (see below), box 2 is far away
    ('linear', [0.9, 0.7, 0.8 * (1 - 0.8)]),
    ('gaussian', [0.9, 0.7, 0.8 * torch.exp(torch.tensor(-0.64 / 0.5)).item()]),
    ('naive', [0.9, 0.7]),
])
def test_soft_nms_decays_overlapping_scores(method, expected):
    from mmcv.ops import soft_nms
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 8.], [50., 50., 60., 60.]])  # IoU(0, 1) = 0.8
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=0.01, method=method)
    torch.testing.assert_close(dets[:, 4], torch.tensor(expected), atol=1e-6, rtol=0)
    assert keep.tolist() == [0, 2, 1][:len(expected)]


def py_sigmoid_focal_loss(logits, target, gamma, alpha):
    """The focal loss by its definition (as mmdet's pure-PyTorch version), autograd for gradients."""
    one_hot = torch.nn.functional.one_hot(target, logits.shape[1] + 1)[:, :-1].to(logits.dtype)
    p = logits.sigmoid()
    pt = (1 - p) * one_hot + p * (1 - one_hot)
    weight = (alpha * one_hot + (1 - alpha) * (1 - one_hot)) * pt.pow(gamma)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, one_hot, reduction='none') * weight


@pytest.mark.parametrize('device', DEVICES)
def test_sigmoid_focal_loss_forward_and_backward(device):
    from mmcv.ops import sigmoid_focal_loss
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(50, 4, generator=gen) * 3).to(device)
    target = torch.randint(0, 5, (50,), generator=gen).to(device)  # 4 = background
    ours = logits.clone().requires_grad_()
    reference = logits.clone().requires_grad_()
    loss = sigmoid_focal_loss(ours, target, 2.0, 0.25, None, 'sum')
    expected = py_sigmoid_focal_loss(reference, target, 2.0, 0.25).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-4, atol=1e-6)


def test_sigmoid_focal_loss_hand_computed():
    """One positive logit 0 (p = 0.5): alpha (1-p)^2 (-log p) = 0.25 * 0.25 * log 2."""
    from mmcv.ops import sigmoid_focal_loss
    loss = sigmoid_focal_loss(torch.zeros(1, 1), torch.tensor([0]), 2.0, 0.25, None, 'none')
    assert loss.item() == pytest.approx(0.25 * 0.25 * torch.log(torch.tensor(2.)).item(), rel=1e-6)


def reference_roi_align(feature, rois, size, scale, samples, aligned):
    """RoIAlign by its definition: bilinear samples on a regular grid in each bin, averaged."""
    out = torch.zeros(len(rois), feature.shape[1], size, size, dtype=feature.dtype)
    height, width = feature.shape[-2:]

    def bilinear(image, y, x):
        if y < -1 or y > height or x < -1 or x > width:
            return torch.zeros(image.shape[0], dtype=image.dtype)
        y, x = max(y, 0.), max(x, 0.)
        y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
        y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
        y, x = (float(y0) if y0 >= height - 1 else y), (float(x0) if x0 >= width - 1 else x)
        ly, lx = y - y0, x - x0
        return (image[:, y0, x0] * (1 - ly) * (1 - lx) + image[:, y0, x1] * (1 - ly) * lx +
                image[:, y1, x0] * ly * (1 - lx) + image[:, y1, x1] * ly * lx)

    for k, (index, x1, y1, x2, y2) in enumerate(rois.tolist()):
        shift = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = x1 * scale - shift, y1 * scale - shift, x2 * scale - shift, y2 * scale - shift
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / size, roi_h / size
        for i in range(size):
            for j in range(size):
                acc = 0
                for sy in range(samples):
                    for sx in range(samples):
                        y = y1 + i * bin_h + (sy + 0.5) * bin_h / samples
                        x = x1 + j * bin_w + (sx + 0.5) * bin_w / samples
                        acc = acc + bilinear(feature[int(index)], y, x)
                out[k, :, i, j] = acc / samples ** 2
    return out


def test_roi_align_hand_computed():
    from mmcv.ops import roi_align
    feature = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 2., 2.]])  # batch index, x1, y1, x2, y2
    # one sample at the centre (1, 1) of the box: the value at row 1, column 1 is 5
    assert roi_align(feature, rois, (1, 1), 1.0, 1, 'avg', False).item() == pytest.approx(5.0)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_forward_and_backward_against_the_definition(device, aligned):
    from mmcv.ops import roi_align
    gen = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 2.0, 17.0, 15.0], [1, 4.0, 0.5, 9.0, 21.0], [0, 0.0, 0.0, 3.0, 3.0]],
                        dtype=torch.float64)
    ours_input = feature.clone().to(device).requires_grad_()
    ours = roi_align(ours_input, rois.to(device), (3, 3), 0.5, 2, 'avg', aligned)
    ref_input = feature.clone().requires_grad_()
    expected = reference_roi_align(ref_input, rois, 3, 0.5, 2, aligned)
    torch.testing.assert_close(ours.cpu(), expected, atol=1e-10, rtol=0)
    weights = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    (ours * weights.to(device)).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(ours_input.grad.cpu(), ref_input.grad, atol=1e-10, rtol=0)


@uses_our_ops
def test_ops_not_implemented_name_the_op_and_the_way_out():
    from mmcv.ops import roi_align
    import mmcv._ext as ext
    with pytest.raises(NotImplementedError, match=r"'deform_conv_forward'.*GB_MMCV=full"):
        ext.deform_conv_forward()
    with pytest.raises(NotImplementedError, match="pool_mode='max'"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.tensor([[0., 0., 0., 2., 2.]]), (1, 1), 1.0, 1, 'max', False)
    assert set(mmcv_ops.exported_functions()) >= {'nms', 'softnms', 'roi_align_forward', 'sigmoid_focal_loss_forward'}


def run_python(code, **env):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=dict(os.environ, **env), cwd='/')


@uses_our_ops
def test_startup_hook_is_what_provides_the_ops():
    """A fresh interpreter imports mmcv.ops through the .pth hook; turned off, it cannot."""
    code = 'import mmcv.ops; from ghost_backbones_startup.mmcv_ext import provider; print(provider())'
    assert run_python(code).stdout.strip() == 'torchvision'
    off = run_python(code, GHOST_BACKBONES_STARTUP='0')
    assert off.returncode != 0 and "No module named 'mmcv._ext'" in off.stderr


def test_a_compiled_ext_module_wins_over_ours(tmp_path):
    """mmcv's own _ext, wherever the path finder sees it, is used as it is."""
    (tmp_path / '_ext.py').write_text('COMPILED = True\n')
    code = ('import mmcv, sys\n'
            f'mmcv.__path__.insert(0, {str(tmp_path)!r})\n'
            'import mmcv._ext\n'
            'from ghost_backbones_startup.mmcv_ext import provider\n'
            'print(getattr(mmcv._ext, "COMPILED", False), provider())\n')
    result = run_python(code)
    assert result.stdout.split() == ['True', 'compiled'], result.stderr
