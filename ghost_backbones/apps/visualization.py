"""Pictures a person would rather look at than read: loss curves, predictions, image grids.

Inference and drawing go through mmdet's / mmseg's own APIs and visualizers, so what is shown
is what their ``tools/test.py --show-dir`` would paint.
"""
import glob
import json
import os
import os.path as osp
from itertools import count
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

_visualizer_ids = count()


def read_scalars(work_dir: str) -> List[Dict]:
    """The training log records mmengine wrote (``<work_dir>/<time>/vis_data/scalars.json``);
    the newest run's, plus any earlier run in the same work_dir (a resumed run continues)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}: was it trained there?')
    records = []
    for path in files:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def plot_loss_curves(work_dirs: Dict[str, str], out_file: str) -> str:
    """One panel per training run, every ``loss*`` key against the iteration."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(work_dirs), figsize=(6 * len(work_dirs), 4), squeeze=False)
    for ax, (title, work_dir) in zip(axes[0], work_dirs.items()):
        records = [r for r in read_scalars(work_dir) if 'loss' in r and 'step' in r]
        by_step = {r['step']: r for r in records}  # a resumed run rewrites steps: keep the last
        steps = sorted(by_step)
        for key in sorted({k for r in records for k in r if k.startswith('loss')}):
            points = [(s, by_step[s][key]) for s in steps if key in by_step[s]]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key,
                    linewidth=2 if key == 'loss' else 1)
        ax.set_title(title)
        ax.set_xlabel('iteration')
        ax.set_ylabel('loss')
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def load_rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'))


def predict_and_draw(config: str, checkpoint: str, images: Sequence[str], score_thr: float = 0.3,
                     device: str = 'cpu') -> List[np.ndarray]:
    """Run a detector or segmenter (by the config's default_scope) on images; return paintings."""
    from mmengine.config import Config
    scope = Config.fromfile(config).get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.visualization import DetLocalVisualizer
        model = init_detector(config, checkpoint, device=device)
        visualizer = DetLocalVisualizer(name=f'ghost_det_{next(_visualizer_ids)}')
        predict = lambda path: inference_detector(model, path)  # noqa: E731
        extra = dict(pred_score_thr=score_thr)
    elif scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        model = init_model(config, checkpoint, device=device)
        visualizer = SegLocalVisualizer(name=f'ghost_seg_{next(_visualizer_ids)}', alpha=0.6)
        predict = lambda path: inference_model(model, path)  # noqa: E731
        extra = dict(with_labels=False)
    else:
        raise ValueError(f'{config}: default_scope must be mmdet or mmseg, got {scope!r}')
    visualizer.dataset_meta = model.dataset_meta
    paintings = []
    for path in images:
        visualizer.add_datasample(osp.basename(path), load_rgb(path), predict(path), draw_gt=False,
                                  show=False, **extra)
        paintings.append(visualizer.get_image())
    return paintings


def image_grid(rows: Dict[str, Sequence[np.ndarray]], out_file: str, tile: int = 160) -> str:
    """Tiles in labelled rows (e.g. 'input', 'boxes', 'masks'), saved as one PNG."""
    label_width = 70
    columns = max(len(tiles) for tiles in rows.values())
    grid = Image.new('RGB', (label_width + columns * (tile + 4), len(rows) * (tile + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (label, tiles) in enumerate(rows.items()):
        top = r * (tile + 4)
        draw.text((4, top + tile // 2 - 6), label, fill=(0, 0, 0))
        for c, array in enumerate(tiles):
            image = Image.fromarray(np.asarray(array, dtype=np.uint8)).resize((tile, tile), Image.BILINEAR)
            grid.paste(image, (label_width + c * (tile + 4), top))
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    grid.save(out_file)
    return out_file


def save_image(array: np.ndarray, out_file: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(out_file)) or '.', exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(out_file)
    return out_file


def demo(image: str, config: str, checkpoint: str, out_file: str, score_thr: float = 0.3,
         device: Optional[str] = 'cpu') -> str:
    """One image through a detector or segmenter, painted and saved (tools/demo.py)."""
    if not osp.isfile(image):
        raise FileNotFoundError(f'image {image} does not exist')
    painting = predict_and_draw(config, checkpoint, [image], score_thr=score_thr, device=device)[0]
    return save_image(painting, out_file)
