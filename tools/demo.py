"""Run one image through a detector or segmenter and save the painted result.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out OUT.png [--score-thr 0.3] [--device cpu]
"""
import argparse

from ghost_backbones.apps.visualization import demo


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    print(demo(args.image, args.config, args.checkpoint, args.out, args.score_thr, args.device))


if __name__ == '__main__':
    main()
