"""Unattended training runs repeat exactly: the default command (``scripts/segmentation/
train.py``, FCN ResNet-18 on Shapes, CPU) with short settings, in real processes.

Two runs with one seed end with the same weights, bit for bit, with and without DataLoader
worker processes; and a run killed with SIGKILL in the middle of an epoch, then continued with
``--resume``, ends with the weights of the run that was never interrupted.

Both need every gradient to repeat exactly. MXNet's ``BilinearResize2D`` backward adds into
its input gradient in the order its OpenMP threads arrive; the runs use 4 threads (the most
the script picks by itself), which on a small machine makes that order vary from run to run,
as a busy machine does: one thread would hide the fault.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from gluonseg.engine import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO, 'scripts', 'segmentation', 'train.py')
# 2 epochs of 6 iterations (48 scenes, batches of 8).
SHORT_RUN = ['--epochs', '2', '--train-length', '48', '--val-length', '8', '--seed', '7',
             '--no-progress']


def train_command(save_dir, *options):
    return [sys.executable, TRAIN_SCRIPT, '--save-dir', str(save_dir)] + SHORT_RUN + \
        list(options)


def train_env():
    return dict(os.environ, OMP_NUM_THREADS='4')


def run_training(save_dir, *options):
    result = subprocess.run(train_command(save_dir, *options), cwd=str(save_dir),
                            env=train_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def final_weights(save_dir):
    weights = load_checkpoint(os.path.join(str(save_dir), 'latest.ckpt')).weights()
    return {name: array.asnumpy() for name, array in weights.items()}


def assert_bit_identical(weights, expected):
    assert weights.keys() == expected.keys()
    differing = [name for name in expected if not np.array_equal(weights[name], expected[name])]
    assert not differing, '%d of %d arrays differ, e.g. %s by up to %g' % (
        len(differing), len(expected), differing[0],
        np.abs(weights[differing[0]] - expected[differing[0]]).max())


def validation_records(save_dir):
    """metrics.jsonl without its timings."""
    with open(os.path.join(str(save_dir), 'metrics.jsonl')) as f:
        return [{key: value for key, value in json.loads(line).items()
                 if not key.endswith('_seconds')} for line in f if line.strip()]


def checkpoint_iteration(path):
    """The iteration of the checkpoint at ``path``, read from its meta.json alone; None while
    there is none."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read('meta.json').decode('utf-8'))['iteration']
    except (FileNotFoundError, KeyError, zipfile.BadZipFile):
        return None


@pytest.fixture(scope='module')
def uninterrupted_run(tmp_path_factory):
    """The short run with the default settings (no worker processes), start to end."""
    save_dir = tmp_path_factory.mktemp('uninterrupted')
    run_training(save_dir)
    return save_dir


def test_same_seed_gives_the_same_weights_bit_for_bit_with_or_without_workers(
        uninterrupted_run, tmp_path):
    run_training(tmp_path, '--workers', '2')
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))
    # The epochs' mean losses (to the last bit) and the validation scores.
    assert validation_records(tmp_path) == validation_records(uninterrupted_run)


@pytest.mark.fault('SIGKILL in the middle of an epoch, then --resume')
def test_run_killed_mid_epoch_and_resumed_ends_with_the_uninterrupted_weights(
        uninterrupted_run, tmp_path):
    # Checkpoints every 2 iterations; the process is killed as soon as the one of iteration 8
    # (2 into the second epoch) is on disk, while it works on iterations 9 and 10.
    latest = str(tmp_path / 'latest.ckpt')
    options = ('--workers', '2', '--checkpoint-interval', '2')
    log_path = str(tmp_path / 'killed_run.log')
    with open(log_path, 'w') as log:
        killed = subprocess.Popen(train_command(tmp_path, *options), cwd=str(tmp_path),
                                  env=train_env(), stdout=log, stderr=log,
                                  start_new_session=True)
    try:
        deadline = time.time() + 600
        while (checkpoint_iteration(latest) or 0) < 8 and killed.poll() is None \
                and time.time() < deadline:
            time.sleep(0.02)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        # Its DataLoader workers, orphaned by the kill.
        try:
            os.killpg(killed.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open(log_path) as log:
        assert killed.returncode == -signal.SIGKILL, log.read()[-3000:]
    stopped_at = checkpoint_iteration(latest)
    assert stopped_at in (8, 10), stopped_at  # inside the second epoch

    resumed = run_training(tmp_path, *options, '--resume')
    assert re.search(r'Resumed from \S*latest\.ckpt at iteration %d/' % stopped_at,
                     resumed.stderr), resumed.stderr[-3000:]
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))
    assert validation_records(tmp_path) == validation_records(uninterrupted_run)
