"""The OpenMMLab stack on current torch: compiled mmcv ops, SSD predict, safe checkpoints."""
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn

import ghost_backbones  # noqa: F401  (applies the compat fixes)
from ghost_backbones.weights import CheckpointError, UnsafeCheckpointError, load_checkpoint_file


def test_mmcv_compiled_nms_keeps_the_right_boxes():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.],     # 0: best
                          [1., 1., 11., 11.],     # 1: IoU 0.68 with 0 -> suppressed
                          [20., 20., 30., 30.],   # 2: far away -> kept
                          [0., 0., 10., 9.],      # 3: IoU 0.9 with 0 -> suppressed
                          [21., 21., 29., 29.]])  # 4: IoU 0.64 with 2 -> suppressed
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.9, 0.7]))
    # A looser threshold keeps box 4 (IoU 0.64 < 0.7) but still drops 3 (IoU 0.9).
    assert nms(boxes, scores, iou_threshold=0.7)[1].tolist() == [0, 1, 2, 4]


def test_mmcv_compiled_roi_align_matches_a_hand_computed_value():
    from mmcv.ops import roi_align
    feature = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 2., 2.]])  # batch index, x1, y1, x2, y2
    out = roi_align(feature, rois, (1, 1), 1.0, 1, 'avg', False)  # scale, samples, mode, aligned
    # one sample at the centre (1, 1) of the box: value at row 1, column 1 = 5
    assert out.item() == pytest.approx(5.0)


def test_stock_ssdlite_mobilenetv2_predicts_boxes():
    """mmdet 3.3.0's SSDHead lacks loss_cls: predict used to raise AttributeError."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    register_all_modules()
    import mmdet
    cfg = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'ssd',
                                   'ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = 0.0
    model = MODELS.build(cfg.model).eval()
    images = torch.randn(1, 3, 320, 320)
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320), scale_factor=(1., 1.),
                                         pad_shape=(320, 320), batch_input_shape=(320, 320)))
    with torch.no_grad():
        results = model.predict(images, [sample])
    boxes = results[0].pred_instances.bboxes
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0
    assert results[0].pred_instances.labels.max() < 80
    # and training still computes its loss (the fix does not touch the loss path)
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 20., 200., 220.]]), labels=torch.tensor([3]))
    model.train()
    losses = model.loss(torch.cat([images, images]), [sample, sample])
    assert torch.isfinite(sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                              for v in losses.values()))


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(1) - labels) ** 2).mean())
        return out


def tiny_runner(work_dir, max_epochs, resume=False):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Wrapped(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = TinyModel()

        def forward(self, inputs, labels=None, mode='tensor'):
            return self.net(inputs, labels, mode)

    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(32, 2, generator=gen)
    dataset = [dict(inputs=x, labels=x.sum()) for x in xs]
    return Runner(
        model=Wrapped(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=dataset, batch_size=8, sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[2], by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0), resume=resume, default_scope='mmengine',
        experiment_name=f'tiny_{max_epochs}_{resume}')


def test_runner_checkpoint_resumes_under_current_torch(tmp_path):
    first = tiny_runner(tmp_path, max_epochs=2)
    first.train()
    checkpoint = tmp_path / 'epoch_2.pth'
    assert checkpoint.exists()
    # what we write holds no code references: torch itself lists no unsafe global but the
    # allow-listed data types, and getattr in particular is absent
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    assert not any('getattr' in name for name in unsafe), unsafe
    assert isinstance(load_checkpoint_file(str(checkpoint)), dict)

    second = tiny_runner(tmp_path, max_epochs=3, resume=True)
    second.train()
    assert second.epoch == 3 and second.iter == 12  # 4 iterations an epoch, 2 epochs resumed
    loss_history = second.message_hub.get_scalar('train/loss')
    assert len(loss_history.data[0]) == 12  # the first run's 8 losses came back with the resume
    assert second.param_schedulers[0]._global_step == 3  # 1 for a scheduler that starts afresh
    momentum = second.optim_wrapper.optimizer.state_dict()['state']
    assert len(momentum) == 2  # SGD momentum buffers of weight and bias were restored and used


class WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {self.path}',))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': WritesAFile(str(marker))}, str(evil))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(str(evil))
    assert str(evil) in str(info.value) and 'system' in str(info.value)
    # through mmengine's own entry point (what Runner.resume / load_from use)
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(evil))
    assert not marker.exists()


def test_old_checkpoint_loads_only_with_explicit_trust(tmp_path, monkeypatch):
    """A HistoryBuffer pickled the old way (statistics methods via getattr) is refused, and
    loads once the user names the file as trusted."""
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer([1.0, 2.0], [1, 1])
    old_state = dict(buffer.__dict__, statistics_methods=dict(HistoryBuffer._statistics_methods))
    monkeypatch.setattr(HistoryBuffer, '__getstate__', lambda self: old_state)
    path = tmp_path / 'old.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buffer}}}, str(path))
    monkeypatch.undo()
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        load_checkpoint_file(str(path))
    monkeypatch.setenv('GHOST_BACKBONES_TRUSTED_CHECKPOINTS', str(path))
    loaded = load_checkpoint_file(str(path))
    assert loaded['message_hub']['log_scalars']['loss'].mean() == 1.5


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', b'PK\x03\x04truncated zip'])
def test_unreadable_checkpoint_is_named(tmp_path, content):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(str(path))
    assert str(path) in str(info.value) and 'not a readable PyTorch checkpoint' in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_truncated_real_checkpoint_is_named(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'state_dict': {'w': torch.randn(1000)}}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        load_checkpoint_file(str(path))


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_checkpoint_file(osp.join('no', 'such', 'nowhere.pth'))
