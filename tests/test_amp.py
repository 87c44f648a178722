"""Mixed precision (AMP): a few bfloat16 steps on the CPU train (finite loss, weights that
change and stay float32), checkpoint and resume exactly, for a segmentation net and for
Mask R-CNN; the pixel loss is computed in float32 from low-precision logits; AMP settings that
cannot run are refused with the reason.

AMP patches MXNet for the whole process, so the training runs in a subprocess: run as
``python tests/test_amp.py OUT_DIR`` this file is that subprocess.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluonseg.engine import mixed_precision
from test_engine import tiny_net, tiny_trainer, weights_of

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def amp_process(out_dir):
    """bfloat16 training runs; prints one JSON line of what they did."""
    from mxnet.contrib.amp.amp import bfloat16
    from gluonseg.engine import init_amp, pixel_cross_entropy_sum
    init_amp('bfloat16')
    report = {}

    # The loss of bfloat16 logits is computed in float32 (NDArray.astype to bfloat16 garbles
    # the integer labels, and a float16 sum over all pixels would overflow).
    logits = mx.nd.random.normal(shape=(2, 4, 8, 8))
    label = mx.nd.array(np.random.RandomState(0).randint(0, 4, size=(2, 8, 8)))
    low = mx.nd.amp_cast(logits, dtype=bfloat16)
    report['loss_bf16'] = float(pixel_cross_entropy_sum(low, label).asscalar())
    report['loss_rounded_f32'] = float(pixel_cross_entropy_sum(
        mx.nd.amp_cast(low, dtype='float32'), label).asscalar())

    def run(save_dir, iterations, resume=False):
        net = tiny_net(seed=0)  # BatchNorm and dropout included
        initial = weights_of(net)
        trainer = tiny_trainer(net, save_dir=save_dir, amp='bfloat16', val_interval=0)
        if resume:
            trainer.resume()
        result = trainer.fit(max_iterations=iterations)
        return net, initial, result

    net, initial, result = run(os.path.join(out_dir, 'split'), 2)
    after = weights_of(net)
    report['stopped'] = {'loss': result['last_loss'], 'iteration': result['iteration'],
                         'max_change': max(float(np.abs(after[k] - initial[k]).max())
                                           for k in initial),
                         'dtypes': sorted({str(p.data().dtype)
                                           for p in net.collect_params().values()})}
    resumed_net, _, resumed = run(os.path.join(out_dir, 'split'), 4, resume=True)
    straight_net, _, straight = run(os.path.join(out_dir, 'straight'), 4)
    a, b = weights_of(resumed_net), weights_of(straight_net)
    report['resume_max_diff'] = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    report['resumed_loss'], report['straight_loss'] = resumed['last_loss'], straight['last_loss']

    # Mask R-CNN through its script (it trains imperatively under AMP on the CPU).
    spec_path = os.path.join(ROOT, 'scripts', 'instance', 'train_mask_rcnn.py')
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_mask_rcnn', spec_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    save_dir = os.path.join(out_dir, 'mask_rcnn')
    code = script.main(['--train-length', '4', '--image-size', '64', '--short', '64',
                        '--max-size', '64', '--batch-size', '2', '--epochs', '1', '--lr', '0.02',
                        '--lr-warmup', '1', '--lr-decay-epoch', '--seed', '1', '--val-interval',
                        '0', '--amp', 'bfloat16', '--no-progress', '--quiet', '--save-dir',
                        save_dir])
    from gluonseg.engine import load_checkpoint
    ckpt = load_checkpoint(os.path.join(save_dir, 'latest.ckpt'))
    with open(os.path.join(save_dir, 'train.log')) as f:
        log = f.read()
    report['mask_rcnn'] = {'code': code, 'iteration': ckpt['iteration'],
                           'amp': ckpt['config']['amp'],
                           'finite': all(np.isfinite(v.asnumpy()).all()
                                         for v in ckpt.weights().values()),
                           'dtypes': sorted({str(v.dtype) for v in ckpt.weights().values()}),
                           'imperative': 'Training imperatively' in log}
    print(json.dumps(report))


def test_bfloat16_training_runs_resumes_and_keeps_float32_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, ROOT, os.environ.get('PYTHONPATH', '')]))
    run = subprocess.run([sys.executable, os.path.abspath(__file__), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert np.isfinite(report['loss_bf16'])
    assert report['loss_bf16'] == pytest.approx(report['loss_rounded_f32'], rel=1e-6)
    stopped = report['stopped']
    assert stopped['iteration'] == 2 and np.isfinite(stopped['loss'])
    assert stopped['max_change'] > 1e-3                     # the weights moved
    assert stopped['dtypes'] == ["<class 'numpy.float32'>"]  # master weights stay float32
    assert np.isfinite(report['straight_loss'])
    assert report['resumed_loss'] == pytest.approx(report['straight_loss'], rel=1e-5)
    assert report['resume_max_diff'] < 1e-5
    mask_rcnn = report['mask_rcnn']
    assert mask_rcnn['code'] == 0 and mask_rcnn['iteration'] == 2
    assert mask_rcnn['amp'] == 'bfloat16' and mask_rcnn['finite'] and mask_rcnn['imperative']
    assert mask_rcnn['dtypes'] == ["<class 'numpy.float32'>"]


def test_amp_settings_that_cannot_run_are_refused(monkeypatch):
    with pytest.raises(ValueError, match=r"amp='bfloat16' needs AMP switched on before the "
                                         r"network is built: call gluonseg.engine.init_amp"):
        tiny_trainer(tiny_net(), amp='bfloat16')
    with pytest.raises(ValueError, match="Unknown AMP dtype 'int8'"):
        mixed_precision.init_amp('int8')
    monkeypatch.setattr(mixed_precision, '_initialized', 'float16')
    with pytest.raises(ValueError, match='float16 AMP needs GPUs: MXNet has no float16 matrix '
                                         'product on the CPU'):
        tiny_trainer(tiny_net(), amp='float16')


if __name__ == '__main__':
    amp_process(sys.argv[1])
