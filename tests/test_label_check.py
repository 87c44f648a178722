"""Label checks before training: ``SegmentationDataset.verify`` lists every bad label of a folder
dataset at once, and ``train.py`` runs it before the first iteration (``--no-verify-labels``
skips it)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fixtures_data import write_folder, write_voc
from gluonseg.cli import main as cli_main
from gluonseg.data import FolderSegmentation, VOCSegmentation
from gluonseg.data.base import LabelCheckError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEMS = ['a%d' % i for i in range(10)]
TRAIN_OPTIONS = ['--dataset', 'folder', '--model', 'fcn_resnet18_shapes', '--no-pretrained-base',
                 '--no-aux', '--base-size', '32', '--crop-size', '32', '--epochs', '1',
                 '--batch-size', '4', '--no-progress']


def spoil_labels(root):
    """Two bad labels: a class id out of range (3 classes: 7 is neither a class nor 255) and a
    label smaller than its image. Returns their paths."""
    out_of_range = os.path.join(str(root), 'labels', 'a2.png')
    mask = np.array(Image.open(out_of_range))
    mask[3, 4] = 7
    Image.fromarray(mask).save(out_of_range)
    wrong_size = os.path.join(str(root), 'labels', 'a6.png')
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(wrong_size)
    return out_of_range, wrong_size


@pytest.mark.fault('three bad labels in a folder dataset: value out of range, size, not a PNG')
def test_verify_lists_every_bad_label_with_its_problem(tmp_path, capsys):
    write_folder(tmp_path, STEMS, size=(16, 20))
    out_of_range, wrong_size = spoil_labels(tmp_path)
    not_a_png = tmp_path / 'labels' / 'a9.png'
    not_a_png.write_bytes(b'not a PNG at all')
    dataset = FolderSegmentation(str(tmp_path))
    assert dataset.can_verify
    with pytest.raises(LabelCheckError) as caught:
        dataset.verify(workers=3, progress=True)
    err = caught.value
    assert isinstance(err, ValueError) and err.checked == 10
    assert [path for path, _ in err.problems] == [out_of_range, wrong_size, str(not_a_png)]
    lines = str(err).splitlines()
    assert lines[0].startswith('3 of the 10 labels of Segmentation folder (all images) in ')
    assert lines[1] == ('  %s: label value(s) [7] outside [0, 3) and not the ignore value 255. '
                        'Labels must hold class ids 0..2 (plus 255 for "not scored"); e.g. a '
                        '0/255 binary mask needs 255 mapped to 1 for a 2-class problem'
                        % out_of_range)
    assert lines[2].startswith('  %s: label is 5x5 but its image %s is 16x20 (HxW'
                               % (wrong_size, tmp_path / 'images' / 'a6.png'))
    assert lines[3].startswith('  cannot read the image %s: ' % not_a_png)
    assert 'checking labels (Segmentation folder all images)' in capsys.readouterr().err
    # the same result one thread at a time, and a fixed dataset passes
    with pytest.raises(LabelCheckError) as again:
        dataset.verify(workers=1)
    assert again.value.problems == err.problems
    write_folder(tmp_path, STEMS, size=(16, 20))
    assert dataset.verify() == 10
    with pytest.raises(ValueError, match=r'workers must be >= 1, got 0'):
        dataset.verify(workers=0)


def test_voc_labels_are_checked_and_a_split_without_labels_says_so(tmp_path):
    write_voc(tmp_path, {'train': ['2007_000001', '2007_000002'], 'test': ['2008_000001']})
    voc = VOCSegmentation(str(tmp_path), split='train')
    assert voc.can_verify
    voc.verify()
    label = voc.mask_paths[1]
    mask = np.array(Image.open(label))
    mask[0, 0] = 42  # not a VOC class id
    Image.fromarray(mask, mode='L').save(label)
    with pytest.raises(LabelCheckError) as err:
        voc.verify()
    assert [path for path, _ in err.value.problems] == [label]
    unlabelled = VOCSegmentation(str(tmp_path), split='test')
    assert not unlabelled.can_verify
    with pytest.raises(TypeError, match=r'VOCSegmentation cannot check its labels on their own'):
        unlabelled.verify()


def spoiled_folder(tmp_path):
    """A folder dataset with two bad labels: (root, out-of-range label, wrong-size label,
    a save dir not made yet)."""
    root = tmp_path / 'data'
    write_folder(root, STEMS, size=(32, 32), splits={'train': STEMS[:8], 'val': STEMS[8:]})
    return (root,) + tuple(spoil_labels(root)) + (tmp_path / 'run',)


@pytest.mark.fault('two bad labels in a folder dataset given to train.py')
def test_train_stops_before_the_first_iteration_naming_all_bad_labels(tmp_path):
    root, out_of_range, wrong_size, save_dir = spoiled_folder(tmp_path)
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'segmentation', 'train.py'),
                          '--root', str(root), '--save-dir', str(save_dir)] + TRAIN_OPTIONS,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    assert 'error: bad labels, training not started:' in run.stderr
    header = "2 of the 8 labels of Segmentation folder split 'train' in %s are bad:" % root
    assert header in run.stderr
    assert '%s: label value(s) [7] outside [0, 3)' % out_of_range in run.stderr
    assert '%s: label is 5x5 but its image' % wrong_size in run.stderr
    assert '--no-verify-labels' in run.stderr
    assert 'FINAL' not in run.stdout and not save_dir.exists()  # nothing trained or written


@pytest.mark.fault('bad labels in a folder dataset, train.py --no-verify-labels')
def test_no_verify_labels_skips_the_check(tmp_path):
    root, out_of_range, wrong_size, save_dir = spoiled_folder(tmp_path)
    # Training starts and stops at the first batch holding a bad label, naming that one only.
    with pytest.raises(ValueError) as caught:
        cli_main(['train', '--root', str(root), '--save-dir', str(save_dir), '--quiet',
                  '--no-verify-labels'] + TRAIN_OPTIONS)
    message = str(caught.value)
    assert (out_of_range in message) != (wrong_size in message)
    with open(save_dir / 'train.log') as f:
        assert 'Training ' in f.read()
