"""``pip install`` of the built wheel into a OneDL environment: no upstream mm* distribution comes with it
and ``pip check`` stays clean. The wheel goes into a throw-away venv layered on the OneDL venv's site-packages
(a .pth file), so that the OneDL venv itself, with its editable install, is left as it is."""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from helpers import ROOT

UPSTREAM = {'mmengine', 'mmcv', 'mmcv-lite', 'mmdet', 'mmsegmentation', 'mmpretrain'}
ONEDL_EXTRAS = 'onedl,onedl-mmdet,onedl-mmseg,onedl-mmpretrain'


def run(*command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f'{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result.stdout


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp('wheel')
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', folder, ROOT)
    (path,) = folder.glob('ghost_backbones-*.whl')
    return path


def requirements(wheel_path):
    with zipfile.ZipFile(wheel_path) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    return [line.split(':', 1)[1].strip() for line in metadata.splitlines() if line.startswith('Requires-Dist:')]


def name_of(requirement: str) -> str:
    import re
    return re.split(r'[\s<>=!~;\[(]', requirement, maxsplit=1)[0].lower()


def test_runtime_requirements_name_no_openmmlab_distribution(wheel):
    runtime = [r for r in requirements(wheel) if 'extra ==' not in r]
    assert runtime and not {name_of(r) for r in runtime} & UPSTREAM, runtime
    onedl = {name_of(r) for r in requirements(wheel) if "extra == 'onedl" in r or 'extra == "onedl' in r}
    assert onedl >= {'onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection', 'onedl-mmsegmentation',
                     'onedl-mmpretrain'} and not onedl & UPSTREAM, onedl


def test_resolving_the_wheel_with_its_onedl_extras_installs_nothing_else(wheel, tmp_path):
    """pip's resolver, on the OneDL venv itself (dry run): everything is satisfied, only the wheel would go in."""
    report = tmp_path / 'report.json'
    out = run(sys.executable, '-m', 'pip', 'install', '--dry-run', '--report', report, '-q',
              f'{wheel}[{ONEDL_EXTRAS}]')
    installs = {item['metadata']['name'].lower() for item in json.loads(report.read_text())['install']}
    assert installs <= {'ghost-backbones', 'ghost_backbones'}, (installs, out)  # (none: the same version is there)


def test_install_into_a_venv_on_the_onedl_packages_keeps_pip_check_clean(wheel, tmp_path):
    venv = tmp_path / 'venv'
    run(sys.executable, '-m', 'venv', '--without-pip', venv)
    python = venv / 'bin' / 'python'
    site = run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').strip()
    # the OneDL venv's packages behind this venv's own (torch, onedl-*, ...); its editable ghost_backbones is hidden
    onedl_site = sysconfig.get_paths()['purelib']
    with open(os.path.join(site, 'onedl_stack.pth'), 'w') as f:
        f.write(onedl_site + '\n')
    env = dict(os.environ, GHOST_BACKBONES_STARTUP='1')
    pip = [sys.executable, '-m', 'pip', '--python', python]
    # (--force-reinstall: the OneDL venv's editable install has the same version; pip leaves that one alone,
    # "outside environment")
    run(*pip, 'install', '-q', '--no-deps', '--force-reinstall', wheel, env=env)
    run(*pip, 'install', '-q', f'{wheel}[{ONEDL_EXTRAS}]', env=env)  # a normal install: deps resolved
    listed = {p['name'].lower() for p in json.loads(run(*pip, 'list', '--format', 'json', env=env))}
    assert 'ghost_backbones' in listed or 'ghost-backbones' in listed
    assert not listed & UPSTREAM, listed & UPSTREAM
    assert {'onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection'} <= listed
    own = set(os.listdir(site))
    assert not any(name.split('-')[0].lower() in {'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'} for name in own), own
    run(*pip, 'check', env=env)
    # the installed wheel serves: imported from this venv, GhostNet registered, mmcv ops on torchvision
    out = run(python, '-c', 'import ghost_backbones, mmdet.registry as r, mmcv.ops; '
              'print(ghost_backbones.__file__); print(r.MODELS.get("GhostNet").__name__)', env=env,
              cwd=str(tmp_path))  # (not the checkout: python -c puts the working directory first)
    assert out.split()[0].startswith(site) and out.split()[1] == 'GhostNet', out
