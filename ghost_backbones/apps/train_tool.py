"""Train a detector or segmenter from a config (mmdet 3.x / mmseg 1.x command line).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--no-data-check | --data-check-sample N] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

``tools/train.py`` and ``python -m ghost_backbones.apps.train_tool`` run this.
"""
import argparse

from . import runtime


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a GhostNet detector or segmenter')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or without a value from the last checkpoint in work_dir')
    parser.add_argument('--no-data-check', action='store_true',
                        help='skip the dataset and checkpoint checks that run before training')
    parser.add_argument('--data-check-sample', type=int, metavar='N',
                        help='decode only N images per dataset in the check (the others by their headers)')
    return runtime.parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    with runtime.one_line_errors():
        cfg = runtime.load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        if args.amp:
            runtime.enable_amp(cfg)
        runtime.set_resume(cfg, args.resume)
        runtime.train(cfg, check=not args.no_data_check, sample=args.data_check_sample)


if __name__ == '__main__':
    main()
