"""Mixed precision (AMP): a few bfloat16 steps on the CPU train (finite loss, weights that
change and stay float32), checkpoint and resume exactly, for a segmentation net and for
Mask R-CNN; the pixel loss is computed in float32 from low-precision logits; float16's dynamic
loss scaling (on float32 CPU gradients) undoes itself and skips overflowing updates; AMP
settings that cannot run are refused with the reason.

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

from gluonseg.engine import load_checkpoint, mixed_precision
from fixtures_training import install_loss_scaler, tiny_net, tiny_trainer, weights_of

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

    # Mask R-CNN through gluonseg train (it trains imperatively under AMP on the CPU).
    from gluonseg.tools import train
    save_dir = os.path.join(out_dir, 'mask_rcnn')
    code = train.main(['--task', 'instance', '--train-length', '4', '--image-size', '64',
                       '--short', '64', '--max-size', '64', '--batch-size', '2', '--epochs', '1',
                       '--lr', '0.02', '--lr-warmup', '1', '--lr-decay-epoch', '--seed', '1',
                       '--val-interval', '0', '--amp', 'bfloat16', '--no-progress', '--quiet',
                       '--save-dir', save_dir])
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


def test_loss_scaling_skips_overflowing_updates_and_resumes_its_scale(tmp_path):
    net = tiny_net(seed=0, batchnorm=False, dropout=0)
    trainer = tiny_trainer(net, save_dir=str(tmp_path), val_interval=0)
    # An infinite scale overflows the first gradients; MXNet applies the pending scale (1)
    # from the next update on.
    install_loss_scaler(trainer, float('inf'), 1.0)
    initial = weights_of(net)
    trainer.fit(max_iterations=1)
    assert trainer.skipped_updates == 1 and np.isfinite(trainer.last_loss)
    after_skip = weights_of(net)
    assert all(np.array_equal(initial[k], after_skip[k]) for k in initial)  # not applied
    trainer.fit(max_iterations=2)
    assert trainer.skipped_updates == 1                   # scale 1 does not overflow
    moved = weights_of(net)
    assert max(np.abs(moved[k] - initial[k]).max() for k in initial) > 1e-4
    with open(tmp_path / 'train.log') as f:
        assert ('AMP: the gradients of iteration 0 overflowed float16 with loss scale inf: '
                'update skipped (1 so far); loss scale 1 for the next iteration, 0.5 after it'
                in f.read())
    ckpt = load_checkpoint(str(tmp_path / 'latest.ckpt'))
    state = {'loss_scale': 0.5, 'next_loss_scale': 0.5, 'unskipped': 1}
    assert ckpt['loss_scaler'] == state and ckpt['skipped_updates'] == 1
    resumed = tiny_trainer(tiny_net(seed=5, batchnorm=False, dropout=0),
                           save_dir=str(tmp_path), val_interval=0)
    scaler = install_loss_scaler(resumed, 2.0 ** 16, 2.0 ** 16)
    resumed.resume()
    assert {'loss_scale': scaler._loss_scale, 'next_loss_scale': scaler._next_loss_scale,
            'unskipped': scaler._unskipped} == state and resumed.skipped_updates == 1


def test_loss_scaling_without_overflow_gives_the_unscaled_updates():
    # The scale multiplies the loss and divides the gradients again, with accumulation too
    plain_net = tiny_net(seed=0, batchnorm=False, dropout=0)
    tiny_trainer(plain_net, batch_size=2, accumulate=2, val_interval=0).fit(max_iterations=2)
    scaled_net = tiny_net(seed=0, batchnorm=False, dropout=0)
    scaled = tiny_trainer(scaled_net, batch_size=2, accumulate=2, val_interval=0)
    install_loss_scaler(scaled, 1024.0, 1024.0)
    scaled.fit(max_iterations=2)
    assert scaled.skipped_updates == 0
    a, b = weights_of(plain_net), weights_of(scaled_net)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)


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
