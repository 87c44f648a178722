"""``gluonseg train`` and scripts/segmentation/train.py: one code (gluonseg.tools.train), the
README's default command's settings, a tiny run through the console command, and the dataset
defaults (VOC-Aug's train_aug split, folder datasets)."""
import json
import os
import re
import subprocess
import sys

import pytest

from gluonseg.cli import main as cli_main
from gluonseg.engine import load_checkpoint
from gluonseg.tools import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--train-length', '16', '--val-length', '8', '--base-size', '32', '--crop-size', '32',
        '--epochs', '1', '--batch-size', '4', '--no-progress', '--quiet']


def test_no_arguments_is_the_readme_shapes_run():
    args = train.parse_args([])
    assert (args.model, args.dataset, args.train_split) == ('fcn_resnet18_shapes', 'shapes',
                                                            'train')
    assert (args.epochs, args.batch_size, args.lr, args.crop_size) == (5, 8, 0.04, 64)
    assert (args.train_length, args.aux, args.pretrained_base) == (2000, False, False)
    assert args.save_dir == os.path.join('runs', 'shapes', 'fcn_resnet18_shapes')
    assert (args.kvstore, args.amp, args.accumulate) == (None, None, 1)


def test_gluonseg_train_runs_and_writes_the_run(tmp_path, capsys):
    save_dir = str(tmp_path / 'run')
    assert cli_main(['train'] + TINY + ['--save-dir', save_dir, '--accumulate', '2']) == 0
    final = json.loads(re.search(r'^FINAL (.*)$', capsys.readouterr().out, re.M).group(1))
    assert 0 <= final['mIoU'] <= 1 and final['epoch'] == 1
    ckpt = load_checkpoint(os.path.join(save_dir, 'latest.ckpt'))
    assert ckpt['iteration'] == 2                          # 16 scenes / (4 x 2 accumulated)
    assert ckpt['config']['accumulate'] == 2 and ckpt['args']['model'] == 'fcn_resnet18_shapes'
    assert sorted(os.listdir(save_dir)) == ['best.ckpt', 'curves.png', 'latest.ckpt',
                                            'metrics.jsonl', 'train.log']


def test_the_script_is_a_thin_wrapper_with_its_docstring(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'segmentation',
                                                       'train.py'), '--help'],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'Train a semantic segmentation model.' in run.stdout
    assert '--accumulate' in run.stdout and '--kvstore' in run.stdout
    with pytest.raises(SystemExit):
        cli_main(['train', '--accumulate', '2', '--kvstore', 'nope'])
