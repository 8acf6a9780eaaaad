"""Evaluate a checkpoint: COCO bbox mAP for detection configs, per-class IoU and mIoU for
segmentation configs (the config's default_scope decides).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

The implementation is ghost_backbones/apps/test_tool.py (also: python -m ghost_backbones.apps.test_tool).
"""
from ghost_backbones.apps.test_tool import main

if __name__ == '__main__':
    main()
