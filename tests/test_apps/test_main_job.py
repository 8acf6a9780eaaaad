"""The main job end to end with tiny settings: tables and pictures are written and not trivial."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from ghost_backbones.apps.main_job import run_main_job

pytestmark = pytest.mark.slow


def test_main_job_writes_tables_and_pictures(tmp_path, capsys):
    out = tmp_path / 'out'
    result = run_main_job(str(out), data_root=str(tmp_path / 'data'), num_train=24, num_val=6, det_epochs=1,
                          seg_iters=30, grid_images=3, batch_size=4)
    printed = capsys.readouterr().out
    assert f'everything is in {out}' in printed

    summary = (out / 'summary.md').read_text()
    assert summary == result['summary'] and summary in printed
    for heading in ('AP50', 'AP75', 'APs', 'mIoU', 'aAcc'):
        assert heading in summary
    assert '| category | mAP' in summary and '|   Class    |  IoU  |' in summary  # per-class tables
    for name in ('circle', 'square', 'triangle', 'background'):
        assert summary.count(name) == (2 if name != 'background' else 1), name
    metrics = json.loads((out / 'metrics.json').read_text())
    assert 'coco/bbox_mAP' in metrics['detection'] and 'mIoU' in metrics['segmentation']

    curves = np.asarray(Image.open(out / 'loss_curves.png').convert('RGB'))
    assert curves.shape == (400, 1200, 3)  # two 6x4-inch panels at 100 dpi
    assert curves.std() > 10 and (curves < 128).mean() > 0.005  # axes, text and curves drawn

    grid = np.asarray(Image.open(out / 'predictions.png').convert('RGB'))
    assert grid.shape == (3 * 164, 70 + 3 * 164, 3)  # rows input / boxes / masks, 3 images of 160 + 4
    rows = [grid[r * 164:r * 164 + 160, 70:70 + 160].astype(int) for r in range(3)]
    assert all(row.std() > 10 for row in rows)  # real images, not blank tiles (measured 43, 43, 17)
    assert_mask_row_shows_the_predictions(grid, tmp_path / 'data', result['segmentation'])
    for path in (result['detection']['checkpoint'], result['segmentation']['checkpoint']):
        assert osp.isfile(path)


def assert_mask_row_shows_the_predictions(grid, data_root, segmentation):
    """mmseg paints image * 0.4 + class colour * 0.6: recover the colour of each pixel of the
    mask row, take the nearest class colour, and compare with the segmenter's own prediction.
    The prediction must hold object pixels (after 30 iterations, inferred at the test pipeline's
    160 px, it does: measured 1.2%; the wrong 512-px pipeline of an older config gave blobs)."""
    from mmseg.apis import inference_model, init_model
    config = osp.join(osp.dirname(segmentation['checkpoint']), 'fpn_ghostnet-1.0x_synthetic-160.py')
    model = init_model(config, segmentation['checkpoint'], device='cpu')
    palette = np.array(model.dataset_meta['palette'], dtype=float)
    object_pixels = 0
    for k, name in enumerate(['val_000000', 'val_000001', 'val_000002']):
        image = osp.join(data_root, 'coco', 'val', f'{name}.jpg')
        predicted = inference_model(model, image).pred_sem_seg.data[0].numpy()
        left = 70 + k * 164
        original = grid[0:160, left:left + 160].astype(float)
        painted = grid[2 * 164:2 * 164 + 160, left:left + 160].astype(float)
        colour = (painted - 0.4 * original) / 0.6
        shown = np.argmin(((colour[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)
        assert (shown == predicted).mean() > 0.95, name
        object_pixels += (predicted > 0).sum()
    assert object_pixels > 0.005 * 3 * 160 * 160
