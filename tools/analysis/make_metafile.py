"""Write the model index's metafiles (configs/ghostnet/metafile.yml, configs/synthetic/metafile.yml):
params and FLOPs counted from each config (as tools/analysis/model_info.py --config does), the
synthetic results and published anchors listed in ghost_backbones/apps/metafile.py.

    python tools/analysis/make_metafile.py
"""
import os.path as osp

from ghost_backbones.apps.metafile import write_all

if __name__ == '__main__':
    for path in write_all(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))):
        print(f'wrote {path}')
