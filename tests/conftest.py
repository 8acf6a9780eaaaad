import http.server
import os
import sys
import threading
import time

import pytest
import torch

# The machine (and CI) has 2 cores: fixed threads make runs comparable and avoid oversubscription.
torch.set_num_threads(int(os.environ.get('GB_TEST_THREADS', '2')))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end training runs (minutes on 2 CPU cores)')


@pytest.fixture(scope='session')
def repo_root():
    from helpers import ROOT
    return ROOT


@pytest.fixture(scope='session')
def synthetic(tmp_path_factory):
    """The built-in synthetic set (200 train / 50 val, 160x160, seed 0), shared by the slow tests."""
    from ghost_backbones.apps.datasets import make_synthetic
    root = str(tmp_path_factory.mktemp('synthetic'))
    make_synthetic(root, num_train=200, num_val=50, image_size=160, seed=0)
    return root


@pytest.fixture(scope='session')
def trained_ssdlite(synthetic, tmp_path_factory):
    """SSDLite-GhostNet trained (15 epochs) and scored with tools/train.py and tools/test.py, once
    per session: the end-to-end training test checks it, the test-tool and deployment tests use it."""
    from ghost_backbones.apps.main_job import data_options, det_schedule_options, train_and_test
    from helpers import DET_CONFIG
    work_dir = str(tmp_path_factory.mktemp('ssdlite'))
    options = data_options('mmdet', synthetic) + det_schedule_options(15, 25) + ['test_evaluator.classwise=True']
    return dict(train_and_test(DET_CONFIG, work_dir, options), work_dir=work_dir, options=options)


@pytest.fixture(scope='session')
def trained_fpn(synthetic, tmp_path_factory):
    """Semantic FPN-GhostNet trained (150 iterations) and scored once per session."""
    from ghost_backbones.apps.main_job import data_options, seg_schedule_options, train_and_test
    from helpers import SEG_CONFIG
    work_dir = str(tmp_path_factory.mktemp('fpn'))
    options = data_options('mmseg', synthetic) + seg_schedule_options(150)
    return dict(train_and_test(SEG_CONFIG, work_dir, options), work_dir=work_dir, options=options)


def _trained_briefly(name, options, synthetic, tmp_path_factory):
    from ghost_backbones.apps.main_job import train_and_test
    from helpers import CONFIGS
    config = os.path.join(CONFIGS, 'synthetic', f'{name}_ghostnet-1.0x_synthetic-160.py')
    work_dir = str(tmp_path_factory.mktemp(name))
    return dict(train_and_test(config, work_dir, options), work_dir=work_dir, options=options, config=config)


@pytest.fixture(scope='session')
def trained_rtmdet(synthetic, tmp_path_factory):
    """RTMDet-GhostNet trained briefly (8 epochs: 7 with mosaic / mix-up, 1 without; EMA) and
    scored with tools/train.py and tools/test.py once per session: an AP well above chance for
    the deployment tests (4 epochs left it at 0.034), not the README's."""
    from ghost_backbones.apps.main_job import data_options, det_schedule_options
    options = data_options('mmdet', synthetic) + det_schedule_options(8, 25) + ['custom_hooks.1.switch_epoch=7']
    return _trained_briefly('rtmdet', options, synthetic, tmp_path_factory)


@pytest.fixture(scope='session')
def trained_yolox(synthetic, tmp_path_factory):
    """YOLOX-GhostNet trained briefly (4 epochs: 1 warm-up, cosine, the last without mosaic) and
    scored once per session, as ``trained_rtmdet``."""
    from ghost_backbones.apps.main_job import data_options
    epochs = 4
    schedule = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}', 'param_scheduler.0.end=1',
                'param_scheduler.1.begin=1', f'param_scheduler.1.T_max={epochs - 2}',
                f'param_scheduler.1.end={epochs - 1}', f'param_scheduler.2.begin={epochs - 1}',
                f'param_scheduler.2.end={epochs}', 'custom_hooks.0.num_last_epochs=1']
    # its training set sits inside a MultiImageMixDataset
    schedule = data_options('mmdet', synthetic, wrapped_train=True) + schedule
    return _trained_briefly('yolox', schedule, synthetic, tmp_path_factory)


class Served(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; under /truncated/ it announces 100,000 bytes, sends the first 1,000 of
    the file and hangs up; /endless streams zeros with no length; /silent never answers (for 30 s)."""

    def do_GET(self):
        if self.path == '/endless':
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(4096):  # 4 GiB at most, in case the client does not stop
                    self.wfile.write(bytes(1 << 20))
            except OSError:
                pass
            return None
        if self.path == '/silent':
            time.sleep(30)
            return None
        if not self.path.startswith('/truncated/'):
            return super().do_GET()
        with open(os.path.join(self.directory, self.path[len('/truncated/'):]), 'rb') as f:
            body = f.read(1000)
        self.send_response(200)
        self.send_header('Content-Length', '100000')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def file_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, stopped after the test."""
    root = tmp_path / 'www'
    root.mkdir()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), lambda *a: Served(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()
