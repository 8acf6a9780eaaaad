"""Convert GhostNet weights (timm, the official v1/v2/v3 releases, mmengine checkpoints) into a
data-only checkpoint that ``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads.

    python tools/convert_weights.py SRC DST [--prefix backbone.] [--keep-head]
    python tools/convert_weights.py --to mmpretrain SRC DST   # backbone + head for configs/ghostnet/*_in1k.py
    python tools/convert_weights.py --trust --whole OLD_CKPT DST       # re-save a file you trust as data
    python tools/convert_weights.py --trust-sha256 HEX --whole OLD_CKPT DST   # ... trusting exactly that content
    python tools/convert_weights.py --to mmpretrain timm/ghostnet_100.in1k OUT.pth   # timm's weights, from the hub

Handles ``state_dict`` / ``model`` nesting, DDP's ``module.``, the official v3 names (``bn.`` ->
``bn1.``) and FLOP-counter entries. SRC may be a path (``.safetensors`` too), a Hugging Face hub
name as init_cfg takes it (``timm/ghostnet_100.in1k``, ``hf-hub:timm/...``: from the hub cache,
downloaded once) or a URL (https://, open-mmlab://, ...). It is read as data; ``--trust`` /
``--trust-sha256`` allow full unpickling of SRC (which can run code): only for files you trust.
What is written is plain data.
"""
import argparse

from ghost_backbones.weights import convert_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='a path, a hub name (timm/ghostnet_100.in1k, hf-hub:...) or a URL')
    parser.add_argument('dst')
    parser.add_argument('--prefix', help='keep only keys under this prefix and strip it (e.g. backbone.)')
    parser.add_argument('--keep-head', action='store_true', help='keep the ImageNet classifier keys')
    parser.add_argument('--to', default='backbone', choices=['backbone', 'mmpretrain'],
                        help='backbone: GhostNet keys for init_cfg; mmpretrain: an ImageClassifier (backbone + head)')
    parser.add_argument('--whole', action='store_true', help='re-save the entire checkpoint as plain data')
    parser.add_argument('--trust', action='store_true', help='trust the file SRC (as resolved now): allow full unpickling')
    parser.add_argument('--trust-sha256', metavar='HEX', help='trust exactly the content with this sha256 (sha256sum SRC)')
    args = parser.parse_args()
    result = convert_checkpoint(args.src, args.dst, trust=args.trust, trust_sha256=args.trust_sha256, whole=args.whole,
                                prefix=args.prefix, keep_head=args.keep_head, layout=args.to)
    print(f'wrote {args.dst}: {result}')


if __name__ == '__main__':
    main()
