"""Write the built-in synthetic shapes dataset (COCO + Pascal VOC formats from the same scenes).

    python tools/data/make_synthetic.py --out data/synthetic [--num-train 200] [--num-val 50]
        [--image-size 160] [--seed 0] [--classification]

--classification also writes <out>/cls/{train,val}/<class>/ (64x64 crops of each shape) for
mmpretrain's CustomDataset.
"""
import argparse
import time

from ghost_backbones.apps.datasets import make_synthetic, make_synthetic_classification


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/synthetic', help='output folder')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--image-size', type=int, default=160)
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--classification', action='store_true', help='also write the classification crops')
    args = parser.parse_args()
    start = time.time()
    counts = make_synthetic(args.out, args.num_train, args.num_val, args.image_size, args.seed,
                            max_objects=args.max_objects)
    if args.classification:
        crops = make_synthetic_classification(args.out, args.num_train, args.num_val, args.image_size, seed=args.seed)
        print(f'wrote {crops} classification crops to {args.out}/cls/')
    print(f'wrote {counts} images of {args.image_size}x{args.image_size} to {args.out} '
          f'(coco/ and voc/VOC2012/) in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
