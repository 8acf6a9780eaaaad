"""Train a detector or segmenter from a config (mmdet 3.x / mmseg 1.x command line).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--no-data-check | --data-check-sample N] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The implementation is ghost_backbones/apps/train_tool.py (also: python -m ghost_backbones.apps.train_tool).
"""
from ghost_backbones.apps.train_tool import main

if __name__ == '__main__':
    main()
