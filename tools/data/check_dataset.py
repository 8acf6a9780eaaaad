"""Check the train and val datasets of a config the way tools/train.py does before training,
and say how long it took.

    python tools/data/check_dataset.py CONFIG [--sample N] [--cfg-options k=v ...]

Exit code 0 and one line per dataset when the data is fine; exit code 1 and a DatasetError
naming each bad file / record / value when it is not. --sample N decodes only N images per
dataset (chosen with a fixed seed; the others are checked by their headers): for very large sets.
"""
import argparse
import sys
import time

from mmengine.config import DictAction

from ghost_backbones.apps import runtime
from ghost_backbones.apps.datasets.checks import DatasetError, check_config_datasets


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--sample', type=int, help='decode only this many images per dataset')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    args = parser.parse_args()
    cfg = runtime.load_config(args.config, args.cfg_options)
    start = time.perf_counter()
    try:
        reports = check_config_datasets(cfg, sample=args.sample)
    except DatasetError as error:
        print(f'DatasetError: {error}', file=sys.stderr)
        sys.exit(1)
    for report in reports:
        print(', '.join(f'{key}={value}' for key, value in report.items()))
    print(f'checked in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
