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


def test_aux_default_follows_the_model_published_without_one():
    def aux(*argv):
        return train.parse_args(['--dataset', 'citys'] + list(argv)).aux
    assert aux('--model', 'deeplab_resnet50_citys') is True
    assert aux('--model', 'danet_resnet50_citys') is False
    assert aux('--model', 'icnet_resnet50_citys') is False
    assert aux('--model', 'danet_resnet50_citys', '--aux') is True  # asked: the model refuses


def test_gluonseg_train_runs_and_writes_the_run(tmp_path, capsys):
    save_dir = str(tmp_path / 'run')
    assert cli_main(['train'] + TINY + ['--save-dir', save_dir, '--accumulate', '2']) == 0
    out = capsys.readouterr().out
    final = json.loads(re.search(r'^FINAL (.*)$', out, re.M).group(1))
    assert 0 <= final['mIoU'] <= 1 and final['epoch'] == 1
    # The summary names both checkpoints, labelled, and says what its two times count.
    best, latest = os.path.join(save_dir, 'best.ckpt'), os.path.join(save_dir, 'latest.ckpt')
    assert 'best checkpoint (mIoU %.4f at epoch 1): %s\n' % (final['mIoU'], best) in out
    assert 'latest checkpoint (epoch 1, iteration 2; resume with --resume): %s\n' % latest in out
    assert 'wall time %.1f s (this process, set-up to end)\n' % final['wall_seconds'] in out
    assert 'update steps %.1f s (%s)\n' % (final['train_seconds'],
                                           train.UPDATE_STEPS_MEANING) in out
    assert (final['checkpoint'], final['latest_checkpoint'], final['best_checkpoint']) == (
        latest, latest, best)
    assert (final['best_mIoU'], final['best_epoch'], final['iteration']) == (final['mIoU'], 1, 2)
    assert 0 < final['train_seconds'] < final['wall_seconds']  # a part of this process's time
    ckpt = load_checkpoint(os.path.join(save_dir, 'latest.ckpt'))
    assert ckpt['iteration'] == 2                          # 16 scenes / (4 x 2 accumulated)
    assert ckpt['config']['accumulate'] == 2 and ckpt['args']['model'] == 'fcn_resnet18_shapes'
    assert sorted(os.listdir(save_dir)) == ['best.ckpt', 'curves.png', 'latest.ckpt',
                                            'metrics.jsonl', 'train.log']


def test_the_script_is_a_thin_wrapper_with_its_docstring(tmp_path, capsys):
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'segmentation',
                                                       'train.py'), '--help'],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'Train a semantic segmentation model.' in run.stdout
    assert '--accumulate' in run.stdout and '--kvstore' in run.stdout
    with pytest.raises(SystemExit):
        cli_main(['train', '--accumulate', '2', '--kvstore', 'nope'])
    assert "argument --kvstore: invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(['train', '--accumulate', '0'])
    assert 'argument --accumulate: expected an integer >= 1, got 0' in capsys.readouterr().err


def test_voc_aug_trains_on_train_aug_by_default(tmp_path):
    from fixtures_data import write_sbd, write_voc
    write_voc(tmp_path, {'train': ['2007_000001', '2007_000002'], 'val': ['2007_000010']})
    write_sbd(tmp_path, ['2008_000001', '2007_000010'], ['2008_000003'])
    args = train.parse_args(['--dataset', 'voc_aug', '--root', str(tmp_path)])
    assert args.train_split == 'train_aug' and args.model == 'fcn_resnet101_voc'
    train_set, val_set, _ = train.build_datasets(args)
    # SBD train + val + VOC2012 train, without VOC2012 val (not SBD's own 2-image train list)
    assert train_set.ids == ['2007_000001', '2007_000002', '2008_000001', '2008_000003']
    # Validation on VOC2012 val, held out from train_aug, found beside SBD like train_aug's VOC
    assert (args.val_dataset, args.val_split) == ('voc', 'val')
    assert val_set.ids == ['2007_000010'] and train.shared_images(train_set, val_set) == 0
    assert val_set.image_paths[0].startswith(train_set.voc_dir)
    # SBD's own val is mostly inside train_aug: train.py warns when it is chosen
    sbd_val = train.parse_args(['--dataset', 'voc_aug', '--root', str(tmp_path),
                                '--val-dataset', 'voc_aug'])
    train_set, val_set, _ = train.build_datasets(sbd_val)
    assert val_set.ids == ['2008_000003'] and train.shared_images(train_set, val_set) == 1
    explicit = train.parse_args(['--dataset', 'voc_aug', '--train-split', 'train'])
    assert explicit.train_split == 'train'


def test_folder_dataset_trains_with_its_own_classes(tmp_path, capsys):
    from fixtures_data import write_folder
    root = tmp_path / 'data'
    stems = ['a%d' % i for i in range(10)]
    write_folder(root, stems, classes=('background', 'cat', 'dog'), size=(32, 32),
                 splits={'train': stems[:8], 'val': stems[8:]})
    with pytest.raises(SystemExit):
        cli_main(['train', '--dataset', 'folder'])
    assert '--dataset folder needs --root DIR' in capsys.readouterr().err
    save_dir = str(tmp_path / 'run')
    with pytest.raises(SystemExit):  # ResNet-18 models are registered for Shapes only
        cli_main(['train', '--dataset', 'folder', '--root', str(root), '--backbone', 'resnet18'])
    assert "Unknown model 'fcn_resnet18_voc'. Did you mean" in capsys.readouterr().err
    assert cli_main(['train', '--dataset', 'folder', '--root', str(root), '--model',
                     'fcn_resnet18_shapes', '--no-pretrained-base', '--no-aux', '--base-size', '32',
                     '--crop-size', '32', '--epochs', '1', '--batch-size', '4',
                     '--save-dir', save_dir, '--no-progress', '--quiet']) == 0
    final = json.loads(re.search(r'^FINAL (.*)$', capsys.readouterr().out, re.M).group(1))
    assert train.shared_images(*train.build_datasets(train.parse_args(
        ['--dataset', 'folder', '--root', str(root)]))[:2]) == 0
    ckpt = load_checkpoint(os.path.join(save_dir, 'latest.ckpt'))
    assert ckpt['nclass'] == 3 and ckpt['classes'] == ['background', 'cat', 'dog']
    assert ckpt['iteration'] == 2 and ckpt['args']['train_split'] == 'train'
    assert ckpt['model']['name'] == 'fcn_resnet18_shapes'  # the architecture, for 3 classes
    # gluonseg eval reads the run's dataset from the checkpoint: the same mIoU
    out = str(tmp_path / 'eval.json')
    assert cli_main(['eval', os.path.join(save_dir, 'latest.ckpt'), '--output', out,
                     '--no-progress']) == 0
    with open(out) as f:
        assert json.load(f)['mIoU'] == pytest.approx(final['mIoU'], abs=1e-6)
    # or named explicitly, as for any other dataset
    assert cli_main(['eval', os.path.join(save_dir, 'latest.ckpt'), '--dataset', 'folder',
                     '--root', str(root), '--output', out, '--no-progress']) == 0
    with open(out) as f:
        assert json.load(f)['mIoU'] == pytest.approx(final['mIoU'], abs=1e-6)
