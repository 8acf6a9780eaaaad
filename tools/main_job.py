"""The main job: train, score and show SSDLite-GhostNet and Semantic FPN-GhostNet on the
built-in synthetic data (see ghost_backbones/apps/main_job.py). About 10 minutes on 2 CPU cores.

    python tools/main_job.py [--out outputs/main_job] [--data data/synthetic]
        [--det-epochs 30] [--seg-iters 600] [--num-train 200] [--num-val 50]
"""
import argparse

from ghost_backbones.apps.main_job import run_main_job


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='outputs/main_job', help='output folder')
    parser.add_argument('--data', default='data/synthetic', help='synthetic data (written if absent)')
    parser.add_argument('--num-train', type=int, default=200, help='training images, if the data is written')
    parser.add_argument('--num-val', type=int, default=50, help='val images, if the data is written')
    parser.add_argument('--det-epochs', type=int, default=30)
    parser.add_argument('--seg-iters', type=int, default=600)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--grid-images', type=int, default=6)
    args = parser.parse_args()
    run_main_job(args.out, args.data, args.num_train, args.num_val, args.det_epochs, args.seg_iters,
                 args.grid_images, args.batch_size)


if __name__ == '__main__':
    main()
