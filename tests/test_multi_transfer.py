"""The multi-transfer recipe of docs/training.md (COCO -> VOC-Aug -> VOC, each stage starting
from the last with ``--init-from``) end to end on Shapes stand-ins: three tiny runs of
scripts/segmentation/train.py, invoked by path as a user would.

Each stage is a fresh Python process: ~7 s (3 s of it importing MXNet) on the shared 2-core
machine under load 4-5, 29 s for the module; kept in the default run as the only quick guard of
the ``--init-from`` chain (tutorial 3 runs the same chain larger, marked slow).
"""
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.engine import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'scripts', 'segmentation', 'train.py')

# Three Shapes streams play COCO, VOC-Aug and VOC (Shapes has one label set, so the class
# count stays 4); the learning rate falls tenfold per stage as in the recipe.
STAGES = [('coco', 'coco_standin', 0.02), ('voc_aug', 'aug_standin', 0.002),
          ('voc', 'voc_standin', 0.0002)]
TINY = ['--dataset', 'shapes', '--model', 'fcn_resnet18_shapes', '--aux', '--train-length',
        '16', '--val-length', '8', '--base-size', '32', '--crop-size', '32', '--epochs', '1',
        '--batch-size', '4', '--no-progress']


def learned_arrays(path):
    """The trained parameters of a checkpoint (BatchNorm running statistics left out: they
    follow the data, not the optimizer)."""
    return {k: v.asnumpy() for k, v in load_checkpoint(path).weights().items()
            if not k.endswith(('running_mean', 'running_var'))}


def relative_distance(a, b):
    keys = sorted(a)
    assert keys == sorted(b)
    return np.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in keys)
                   / sum((b[k] ** 2).sum() for k in keys))


@pytest.fixture(scope='module')
def stages(tmp_path_factory):
    """Run the three stages; ``[(save_dir, output of the run)]``."""
    base = tmp_path_factory.mktemp('recipe')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    runs, previous = [], None
    for name, split, lr in STAGES:
        save_dir = str(base / name)
        command = [sys.executable, TRAIN] + TINY + ['--train-split', split, '--lr', str(lr),
                                                    '--save-dir', save_dir]
        if previous:
            command += ['--init-from', os.path.join(previous, 'best.ckpt')]
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(base))
        assert run.returncode == 0, run.stderr[-3000:]
        runs.append((save_dir, run.stdout + run.stderr))
        previous = save_dir
    return runs


def test_every_stage_writes_its_checkpoints(stages):
    for (save_dir, output), (_, split, lr) in zip(stages, STAGES):
        for name in ('best.ckpt', 'latest.ckpt', 'metrics.jsonl'):
            assert os.path.isfile(os.path.join(save_dir, name)), (save_dir, name)
        ckpt = load_checkpoint(os.path.join(save_dir, 'best.ckpt'))
        assert ckpt['epoch'] == 1
        assert ckpt['args']['train_split'] == split and ckpt['args']['lr'] == lr
        assert 'FINAL ' in output


def test_each_stage_starts_from_the_previous_one(stages):
    first = load_checkpoint(os.path.join(stages[0][0], 'best.ckpt'))
    assert first['args']['init_from'] is None
    arrays = len(first.weights())
    for (previous, _), (save_dir, output) in zip(stages, stages[1:]):
        source = os.path.join(previous, 'best.ckpt')
        ckpt = load_checkpoint(os.path.join(save_dir, 'best.ckpt'))
        assert ckpt['args']['init_from'] == source
        # the run says it loaded every array of the previous stage (same classes: none
        # re-initialized)
        loaded = re.search(r'Initialized from %s: (\d+) arrays loaded, class layers '
                           r're-initialized: none' % re.escape(source), output)
        assert loaded and int(loaded.group(1)) == arrays, output[-2000:]


def test_each_stage_moves_little_from_where_it_started(stages):
    # 4 steps at a small learning rate leave the weights near the previous stage's; a stage
    # that had started from fresh random weights would be as far from them as two random
    # initializations are from each other.
    mx.random.seed(1)
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False, aux=True)
    net(mx.nd.zeros((1, 3, 32, 32)))
    fresh = {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()
             if not k.endswith(('running_mean', 'running_var'))}
    first = learned_arrays(os.path.join(stages[0][0], 'best.ckpt'))
    unrelated = relative_distance(fresh, first)
    assert unrelated > 0.5
    for (previous, _), (save_dir, _) in zip(stages, stages[1:]):
        before = learned_arrays(os.path.join(previous, 'best.ckpt'))
        after = learned_arrays(os.path.join(save_dir, 'best.ckpt'))
        assert relative_distance(after, before) < 0.05 * unrelated
