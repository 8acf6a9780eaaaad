"""What tools/train.py and tools/test.py do, as functions (so tests can call them).

One way to build everything: an mmengine ``Config`` and mmengine's ``Runner``, exactly as
mmdet's and mmseg's own tools do. The task (detection or segmentation) is read from the
config's ``default_scope``.
"""
import contextlib
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

SUPPORTED_SCOPES = ('mmdet', 'mmseg')


class ToolError(ValueError):
    """A config or option the train / test tools cannot run with."""


@contextlib.contextmanager
def one_line_errors():
    """A tool's own errors about its config, options, data and checkpoints end the process with
    their one-line message (as tools/data/check_dataset.py does), not a traceback; any other
    error keeps its traceback."""
    from ghost_backbones.checkpoint import CheckpointError

    from .datasets.checks import DatasetError
    try:
        yield
    except (ToolError, DatasetError, CheckpointError) as error:
        raise SystemExit(f'{type(error).__name__}: {error}') from None


def load_config(config: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config, apply ``--cfg-options`` and the work_dir rule of mmdet's tools
    (CLI > config > ./work_dirs/<config name>), and adapt it to the machine."""
    if not osp.isfile(config):
        raise ToolError(f'config file {config} does not exist')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    task_scope(cfg)
    adapt_to_device(cfg)
    return cfg


def task_scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        hint = (": train and test classification configs with mmpretrain's own tools (mim train mmpretrain CONFIG)"
                if scope == 'mmpretrain' else '')
        raise ToolError(f'default_scope of the config must be one of {SUPPORTED_SCOPES}, got {scope!r}{hint}')
    return scope


def replace_sync_bn(node):
    """SyncBN -> BN everywhere in a config (SyncBN needs GPUs; a CPU process group has none)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'type' and value == 'SyncBN':
                node[key] = 'BN'
            else:
                replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            replace_sync_bn(item)


def adapt_to_device(cfg: Config) -> None:
    """Without CUDA: SyncBN becomes BN and distributed runs use gloo (see compat for DDP)."""
    if torch.cuda.is_available():
        return
    replace_sync_bn(cfg.model)
    if cfg.launcher != 'none':
        cfg.setdefault('env_cfg', ConfigDict())
        cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
        cfg.env_cfg.dist_cfg.backend = 'gloo'


def enable_amp(cfg: Config) -> None:
    """mmdet's --amp: AmpOptimWrapper with dynamic loss scaling (mmengine's needs CUDA, NPU or MLU)."""
    from mmengine.device import is_cuda_available, is_mlu_available, is_npu_available
    if not (is_cuda_available() or is_npu_available() or is_mlu_available()):
        raise ToolError('--amp needs a CUDA (or NPU / MLU) device: mmengine has no CPU mixed-precision '
                         'optimizer wrapper; train without --amp on this machine')
    optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if optim_wrapper == 'AmpOptimWrapper':
        return
    if optim_wrapper != 'OptimWrapper':
        raise ToolError(f'--amp needs optim_wrapper type OptimWrapper, got {optim_wrapper}')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``resume='auto'``: the last checkpoint in work_dir; a path: that checkpoint."""
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        cfg.resume = True
        cfg.load_from = resume


def build_runner(cfg: Config) -> Runner:
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def last_checkpoint(work_dir: str) -> str:
    """The checkpoint mmengine's CheckpointHook saved last in ``work_dir``."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def local_checkpoint(checkpoint: Optional[str]) -> bool:
    """Whether mmengine reads ``checkpoint`` as a local file (not https://, s3://, open-mmlab://, a hub name, ...)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from ..checkpoint_sources import load_from_local
    from ..hub_weights import hub_name
    return (bool(checkpoint) and CheckpointLoader._get_checkpoint_loader(checkpoint) is load_from_local
            and hub_name(checkpoint) is None)


def check_checkpoint(checkpoint: Optional[str]) -> None:
    """A local checkpoint read as data before the Runner builds anything: a refused or unreadable
    file is a CheckpointError naming it (URLs are read by the Runner, as data)."""
    from ..checkpoint import load_checkpoint_file
    if local_checkpoint(checkpoint):
        load_checkpoint_file(checkpoint, map_location='cpu')


def check_inputs(cfg: Config, sample: Optional[int] = None) -> None:
    """Fail before the Runner writes anything: unreadable local checkpoints named by path,
    datasets with missing files or bad labels (see :mod:`ghost_backbones.apps.datasets.checks`)."""
    from .datasets.checks import check_config_datasets
    checkpoint = cfg.get('load_from')
    if cfg.get('resume') and not checkpoint and osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        checkpoint = last_checkpoint(cfg.work_dir)
    check_checkpoint(checkpoint)
    check_config_datasets(cfg, sample=sample)


def train(cfg: Config, check: bool = True, sample: Optional[int] = None) -> Runner:
    if check:
        check_inputs(cfg, sample)
    runner = build_runner(cfg)
    runner.train()
    return runner


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Save painted predictions of the test set under ``show_dir`` (mmdet's / mmseg's way)."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ToolError('the config has no default_hooks.visualization to draw with')
    hook['draw'] = True
    if task_scope(cfg) == 'mmdet':
        hook['test_out_dir'] = show_dir
    else:
        hook['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir


def test(cfg: Config, checkpoint: str, out: Optional[str] = None, show_dir: Optional[str] = None) -> Dict:
    """Evaluate ``checkpoint`` on the test set; returns the metrics (also logged)."""
    from .datasets.checks import check_dataset_paths
    if not osp.isfile(checkpoint):
        raise ToolError(f'checkpoint {checkpoint} does not exist')
    check_checkpoint(checkpoint)
    check_dataset_paths(cfg, 'test_dataloader')
    cfg.load_from = checkpoint
    if show_dir:
        enable_visualization(cfg, show_dir)
    runner = build_runner(cfg)
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise ToolError(f'--out must be a .pkl file, got {out}')
        if task_scope(cfg) == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
        else:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))
    return runner.test()


def format_metrics(metrics: Dict, scope: str) -> str:
    """A small table of the headline numbers: COCO AP family or mIoU/aAcc."""
    metrics = {key.split('/')[-1]: value for key, value in metrics.items()}  # 'coco/bbox_mAP' -> 'bbox_mAP'
    if scope == 'mmdet':
        names = [('AP', 'bbox_mAP'), ('AP50', 'bbox_mAP_50'), ('AP75', 'bbox_mAP_75'),
                 ('APs', 'bbox_mAP_s'), ('APm', 'bbox_mAP_m'), ('APl', 'bbox_mAP_l')]
    else:
        names = [('mIoU', 'mIoU'), ('mAcc', 'mAcc'), ('aAcc', 'aAcc')]
    rows = [(label, metrics[key]) for label, key in names if key in metrics]
    header = ' | '.join(f'{label:>6}' for label, _ in rows)
    values = ' | '.join(f'{float(value):6.3f}' if value is not None else '   n/a' for _, value in rows)
    return f'{header}\n{values}'


def parse_cfg_options(options) -> dict:
    """``key=value`` strings as mmengine's ``--cfg-options`` parses them."""
    from mmengine.config import DictAction
    parsed = {}
    for option in options:
        key, value = option.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def parse_tool_args(parser, argv=None):
    """The arguments every tool shares (mmdet's and mmseg's): ``--cfg-options``, ``--launcher``
    and torchrun's ``--local-rank``; parsed, with LOCAL_RANK set for mmengine."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. train_cfg.max_epochs=3)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_local_rank_env(args.local_rank)
    return args


def set_local_rank_env(local_rank: int) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
