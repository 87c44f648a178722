"""Faults a training run meets unattended: a learning rate that overflows, a NaN in the data,
a checkpoint of NaN weights, two runs in one folder, kills during checkpoint writes, a torn
metrics file. Each either stops with an error that names the cause or goes on correctly, and
nothing written is lost or non-finite."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from fixtures_training import instance_trainer, same_start, tiny_net, tiny_trainer

from gluonseg.data import ShapesSegmentation
from gluonseg.engine import (CheckpointError, FiniteInputs, NonFiniteError, RunDirectory,
                             RunDirectoryInUse, SegmentationTrainer, TrainConfig,
                             load_checkpoint, save_checkpoint)
from gluonseg.engine.run_dir import LOCK_FILE
from gluonseg.utils.atomic import temp_path_beside

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, 'scripts', 'segmentation', 'train.py')
TINY_RUN = ['--epochs', '1', '--train-length', '16', '--val-length', '4', '--crop-size', '32',
            '--base-size', '32', '--batch-size', '4', '--no-progress', '--checkpoint-interval', '1']


def all_finite_checkpoint(path):
    ckpt = load_checkpoint(path)
    return all(np.isfinite(v.asnumpy()).all() for v in ckpt.weights().values())


def run_train(*args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, TRAIN] + list(args), cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)


class NaNPixelShapes(gluon.data.Dataset):
    """Shapes scenes as ``(float32 CHW, int32 HW)`` with one NaN pixel in sample ``bad``."""

    def __init__(self, bad, length=24, size=24):
        self.scenes = ShapesSegmentation('train', length=length, size=size)
        self.bad = bad
        self.ids = ['scene%02d' % i for i in range(length)]

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, index):
        image, mask = self.scenes[index]
        image = (image.astype(np.float32).transpose(2, 0, 1) - 128.0) / 64.0
        if index == self.bad:
            image[1, 5, 7] = np.nan
        return image, mask.astype(np.int32)


def nan_pixel_trainer(save_dir, **overrides):
    settings = dict(epochs=2, batch_size=4, lr=0.05, warmup_epochs=0.5, progress=False, seed=3)
    settings.update(overrides)
    val = ShapesSegmentation('val', length=4, size=24)
    from gluonseg.data import SegmentationValTransform
    val.transform = SegmentationValTransform(24)
    return SegmentationTrainer(tiny_net(), NaNPixelShapes(bad=5), val, ctx=[mx.cpu()],
                               config=TrainConfig(**settings), save_dir=str(save_dir))


# ---------------------------------------------------------------------------- non-finite
@pytest.mark.fault('learning rate 1e6 on the command line')
def test_huge_learning_rate_stops_and_leaves_only_finite_checkpoints(tmp_path):
    run = run_train('--lr', '1e6', '--save-dir', 'run', *TINY_RUN, cwd=tmp_path)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert 'training stopped' in run.stderr.lower(), run.stderr[-2000:]
    latest = tmp_path / 'run' / 'latest.ckpt'
    if latest.exists():  # what the message calls the last good checkpoint is finite
        assert all_finite_checkpoint(str(latest))
        assert 'the last good checkpoint' in run.stderr and 'all weights finite' in run.stderr
    else:
        assert 'no checkpoint had been written' in run.stderr
    for name in os.listdir(tmp_path / 'run'):
        if name.endswith('.ckpt'):
            assert all_finite_checkpoint(str(tmp_path / 'run' / name)), name


@pytest.mark.fault('a NaN pixel in one training sample (MXNet ReLU hides it from the loss)')
def test_nan_pixel_update_is_skipped_and_weights_stay_finite(tmp_path, caplog):
    trainer = nan_pixel_trainer(tmp_path)
    result = trainer.fit()
    # The batch holding the bad sample is met once per epoch; each time its update is refused.
    assert trainer.skipped_updates == 2
    assert result['iteration'] == trainer.total_iters
    warnings = [r.getMessage() for r in caplog.records if 'update skipped' in r.getMessage()]
    assert len(warnings) == 2 and 'gradients are not finite' in warnings[0], warnings
    assert '--check-inputs' in warnings[0]
    # BatchNorm's running statistics, moved by the bad forward pass, were put back.
    for param in trainer.net.collect_params().values():
        assert np.isfinite(param.data().asnumpy()).all(), param.name
    for name in ('latest.ckpt', 'best.ckpt'):
        assert all_finite_checkpoint(str(tmp_path / name)), name


@pytest.mark.fault('a NaN pixel found by --check-inputs')
def test_check_inputs_names_the_sample(tmp_path):
    trainer = nan_pixel_trainer(tmp_path, check_inputs=True)
    assert isinstance(trainer.train_data, FiniteInputs)
    with pytest.raises(ValueError, match=r'Training sample index 5 \(id scene05\) of epoch 1 '
                                         r'has 1 NaN or infinite value\(s\)'):
        trainer.fit()


@pytest.mark.fault('every batch non-finite: skipped a bounded number of times, then stop')
def test_nonfinite_updates_in_a_row_stop_the_run(tmp_path):
    trainer = tiny_trainer(tiny_net(), save_dir=str(tmp_path), val_interval=0, lr=1e8,
                           warmup_epochs=0, checkpoint_interval=1, max_nonfinite_steps=2)
    with pytest.raises(NonFiniteError, match='training stopped|Training stopped'):
        trainer.fit()
    assert all_finite_checkpoint(trainer.latest_path)


@pytest.mark.fault('saving a checkpoint of NaN weights')
def test_save_checkpoint_refuses_nonfinite_weights_and_keeps_the_old_file(tmp_path):
    net = tiny_net()
    net(mx.nd.zeros((1, 3, 8, 8)))
    path = str(tmp_path / 'latest.ckpt')
    save_checkpoint(path, net, meta={'iteration': 1})
    before = open(path, 'rb').read()
    weight = net.trunk[0].weight
    values = weight.data().asnumpy()
    values[0, 0, 0, 0] = np.inf
    weight.set_data(mx.nd.array(values))
    with pytest.raises(NonFiniteError, match=r'Refused to write the checkpoint .*latest.ckpt: '
                                             r'1 array\(s\).*trunk.0.weight on cpu\(0\) \(1 of'):
        save_checkpoint(path, net, meta={'iteration': 2})
    assert open(path, 'rb').read() == before
    assert sorted(os.listdir(tmp_path)) == ['latest.ckpt']


@pytest.mark.fault('resuming a checkpoint with NaN weights written by an older version')
def test_resume_refuses_a_checkpoint_with_nonfinite_weights(tmp_path):
    trainer = tiny_trainer(tiny_net(), save_dir=str(tmp_path / 'run'), val_interval=0)
    trainer.fit(max_iterations=2)
    path = trainer.latest_path
    # Replace the weights inside the zip by NaN ones, as a checkpoint written unchecked.
    bad = str(tmp_path / 'bad.params')
    weights = {k: v * np.nan for k, v in load_checkpoint(path).weights().items()}
    mx.nd.save(bad, weights)
    with zipfile.ZipFile(path) as zin:
        entries = {name: zin.read(name) for name in zin.namelist()}
    entries['weights.params'] = open(bad, 'rb').read()
    with zipfile.ZipFile(path, 'w') as zout:
        for name, data in entries.items():
            zout.writestr(name, data)
    resumed = tiny_trainer(tiny_net(seed=1), save_dir=str(tmp_path / 'run'), val_interval=0)
    with pytest.raises(CheckpointError, match='holds non-finite weights .*cannot be resumed'):
        resumed.resume()


# ---------------------------------------------------------------------------- run folder
HOLD_LOCK = '''
import sys, time
from gluonseg.engine import RunDirectory
held = RunDirectory(sys.argv[1])
held.claim()
print('held', flush=True)
time.sleep(60)
'''


def hold_run_dir(path):
    child = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == 'held'
    return child


@pytest.mark.fault('a second run started on the same --save-dir')
def test_second_run_in_a_busy_folder_refuses_naming_folder_and_pid(tmp_path):
    run_dir = tmp_path / 'run'
    holder = hold_run_dir(run_dir)
    try:
        second = run_train('--save-dir', 'run', *TINY_RUN, cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    assert 'in use by another training run (pid %d)' % holder.pid in second.stderr
    assert str(run_dir) in second.stderr
    assert not (run_dir / 'latest.ckpt').exists()  # the second run wrote nothing


@pytest.mark.fault('the lock of a run killed with SIGKILL')
def test_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path, caplog):
    run_dir = tmp_path / 'run'
    holder = hold_run_dir(run_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (run_dir / LOCK_FILE).exists()  # left behind by the killed process
    trainer = tiny_trainer(tiny_net(), save_dir=str(run_dir), val_interval=0)
    trainer.fit(max_iterations=1)
    assert 'from process %d, which is no longer running' % holder.pid in caplog.text
    assert not (run_dir / LOCK_FILE).exists()  # released at the end of fit
    with pytest.raises(RunDirectoryInUse):  # and a live holder is still refused
        held = RunDirectory(str(run_dir))
        held.claim()
        try:
            RunDirectory(str(run_dir)).claim()
        finally:
            held.release()


WRITE_CHECKPOINTS = '''
import sys
import mxnet as mx
from mxnet.gluon import nn
from gluonseg.engine import save_checkpoint
net = nn.Dense(2048, in_units=2048)
net.initialize()
save_checkpoint(sys.argv[1], net, meta={'iteration': 0})
print('ready', flush=True)
i = 0
while True:
    i += 1
    save_checkpoint(sys.argv[1], net, meta={'iteration': i})
'''


@pytest.mark.fault('kill -9 during checkpoint writes, five times')
def test_temp_files_of_killed_writers_are_removed_when_the_run_starts(tmp_path, caplog):
    run_dir = tmp_path / 'run'
    latest = run_dir / 'latest.ckpt'
    rng = np.random.default_rng(0)
    for _ in range(5):
        child = subprocess.Popen([sys.executable, '-c', WRITE_CHECKPOINTS, str(latest)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == 'ready'
        time.sleep(float(rng.uniform(0.0, 0.4)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert load_checkpoint(str(latest))['iteration'] >= 0  # whole, never torn
    # What a kill mid-write leaves, made by the writer's own naming (in case no kill above
    # landed inside a write): the zip being written and the weights spilled beside it.
    left = temp_path_beside(str(latest))
    with open(left + '.part', 'wb') as f:
        f.write(b'\0' * 1000)
    user_file = run_dir / 'notes.tmp'
    user_file.write_text('mine')
    trainer = tiny_trainer(tiny_net(), save_dir=str(run_dir), val_interval=0)
    trainer.fit(max_iterations=1)
    names = sorted(os.listdir(run_dir))
    assert not [n for n in names if n.endswith(('.tmp', '.part')) and n != 'notes.tmp'], names
    assert 'notes.tmp' in names
    assert 'left in %s by killed runs' % run_dir in caplog.text


@pytest.mark.fault('a torn last line in metrics.jsonl')
def test_torn_metrics_line_is_dropped_with_a_warning_and_resume_goes_on(tmp_path, caplog):
    run_dir = str(tmp_path / 'run')
    trainer = tiny_trainer(tiny_net(), save_dir=run_dir, epochs=3)
    trainer.fit(max_iterations=12)  # two epochs validated
    metrics = os.path.join(run_dir, 'metrics.jsonl')
    with open(metrics) as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 2
    with open(metrics, 'a') as f:
        f.write('{"epoch": 3, "iteration": 18, "mIoU": 0.2')  # killed mid-line
    resumed = tiny_trainer(tiny_net(seed=1), save_dir=run_dir, epochs=3)
    resumed.resume()
    assert 'Dropped the torn last line of %s' % metrics in caplog.text
    resumed.fit()
    with open(metrics) as f:
        after = [json.loads(line) for line in f]
    assert [r['epoch'] for r in after] == [1, 2, 3] and after[:2] == records


@pytest.mark.fault('a damaged line in the middle of metrics.jsonl')
def test_damaged_metrics_line_is_an_error_naming_file_and_line(tmp_path):
    run_dir = str(tmp_path / 'run')
    trainer = tiny_trainer(tiny_net(), save_dir=run_dir, epochs=3)
    trainer.fit(max_iterations=12)
    metrics = os.path.join(run_dir, 'metrics.jsonl')
    with open(metrics) as f:
        lines = f.readlines()
    with open(metrics, 'w') as f:
        f.writelines(['{"epoch": 1, "iter\n'] + lines[1:])
    resumed = tiny_trainer(tiny_net(seed=1), save_dir=run_dir, epochs=3)
    with pytest.raises(ValueError, match=r'metrics.jsonl: line 1 is not a JSON record'):
        resumed.resume()


@pytest.mark.fault('learning rate 1e6 in the Mask R-CNN trainer')
def test_mask_rcnn_trainer_stops_on_overflow_with_finite_checkpoints(tmp_path):
    trainer = instance_trainer(same_start(1, tmp_path)[0], lr=1e6, warmup_iters=0,
                               epochs=2, checkpoint_interval=1)
    trainer.save_dir = str(tmp_path / 'run')
    with pytest.raises(NonFiniteError, match='[Tt]raining stopped') as err:
        trainer.fit()
    assert 'learning rate' in str(err.value)
    latest = tmp_path / 'run' / 'latest.ckpt'
    if latest.exists():
        assert all_finite_checkpoint(str(latest))
        assert 'the last good checkpoint' in str(err.value)
    else:
        assert 'no checkpoint had been written' in str(err.value)
