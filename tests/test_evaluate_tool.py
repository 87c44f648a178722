"""scripts/segmentation/test.py and ``gluonseg eval`` (gluonseg/tools/evaluate.py) on a tiny VOC
tree in the real on-disk format: test-split predictions as VOC palette PNGs at the original
image sizes (single- and multi-scale), scores and PNGs of a labelled split, and the errors."""
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from fixtures_data import write_voc
from gluonseg.cli import main as cli
from gluonseg.data import SegmentationTestValTransform, VOCSegmentation
from gluonseg.engine import evaluate_segmentation
from gluonseg.utils.metrics import SegmentationMetric
from gluonseg.utils.viz import voc_palette

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VAL_IDS = ['2007_000032', '2007_000039', '2007_000063']
TEST_IDS = ['2008_000001', '2008_000004', '2008_000007']
SUBMISSION = os.path.join('results', 'VOC2012', 'Segmentation', 'comp6_test_cls')


def load_test_script():
    path = os.path.join(ROOT, 'scripts', 'segmentation', 'test.py')
    spec = importlib.util.spec_from_file_location('segmentation_test_script', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    """A VOC2012 tree with labelled val images and unlabelled test images of several sizes,
    and what VOCSegmentation reads from it."""
    root = tmp_path_factory.mktemp('voc')
    expected = write_voc(root, {'val': VAL_IDS, 'test': TEST_IDS}, size=(20, 28))
    return str(root), expected


def model_args(params, root):
    return ['--model', 'fcn_resnet18_shapes', '--params', params, '--dataset', 'voc',
            '--root', root, '--no-progress']


def read_png(path):
    with Image.open(path) as png:
        return png.mode, np.array(png.getpalette(), dtype=np.uint8), np.array(png)


def test_script_writes_the_voc_test_server_submission(voc, shapes_fcn, tmp_path, monkeypatch,
                                                      capsys):
    root, expected = voc
    net, params = shapes_fcn
    monkeypatch.chdir(tmp_path)
    status = load_test_script().main(model_args(params, root) + [
        '--split', 'test', '--save-predictions', SUBMISSION])
    assert status == 0
    assert 'no labels, predictions only' in capsys.readouterr().out
    assert sorted(os.listdir(SUBMISSION)) == sorted(i + '.png' for i in TEST_IDS)
    assert not os.path.exists('runs')  # nothing scored, no JSON
    sizes = set()
    for image_id in TEST_IDS:
        image = expected[image_id][0]
        mode, palette, labels = read_png(os.path.join(SUBMISSION, image_id + '.png'))
        assert mode == 'P'
        np.testing.assert_array_equal(palette.reshape(-1, 3), voc_palette(256))
        assert labels.shape == image.shape[:2]
        sizes.add(labels.shape)
        np.testing.assert_array_equal(labels, net.predict(image))
    assert len(sizes) == len(TEST_IDS)  # the images differ in size, each PNG has its own


def test_multi_scale_submission_has_the_original_sizes(voc, shapes_fcn, tmp_path, monkeypatch):
    root, expected = voc
    _, params = shapes_fcn
    monkeypatch.chdir(tmp_path)
    # crop 24 < the 28-32 pixel widths: sliding windows at scale 1.0
    status = load_test_script().main(model_args(params, root) + [
        '--split', 'test', '--multi-scale', '--scales', '0.75', '1.0', '--base-size', '32',
        '--crop-size', '24', '--save-predictions', 'ms'])
    assert status == 0
    for image_id in TEST_IDS:
        mode, _, labels = read_png(os.path.join('ms', image_id + '.png'))
        assert mode == 'P' and labels.shape == expected[image_id][0].shape[:2]
        assert labels.max() < 4


def test_cli_scores_val_and_writes_the_predictions_it_scored(voc, shapes_fcn, tmp_path, capsys):
    root, expected = voc
    net, params = shapes_fcn
    folder, output = str(tmp_path / 'val_png'), str(tmp_path / 'val.json')
    # batches of 2 images of different sizes on 2 contexts: padded, split, cropped back
    status = cli(['eval'] + model_args(params, root) + [
        '--split', 'val', '--batch-size', '2', '--ctx-cpus', '2', '--save-predictions', folder,
        '--output', output])
    assert status == 0
    with open(output) as f:
        result = json.load(f)
    assert result['num_images'] == 3 and result['mode'] == 'testval'
    assert result['predictions'] == folder
    metric = SegmentationMetric(21)
    for image_id in VAL_IDS:
        _, _, labels = read_png(os.path.join(folder, image_id + '.png'))
        metric.update(expected[image_id][1], labels)
    np.testing.assert_allclose(metric.state_dict()['confusion_matrix'],
                               result['confusion_matrix'])
    assert 'pixAcc %.4f' % result['pixAcc'] in capsys.readouterr().out
    # the same numbers as the engine's evaluation loop (train.py's validation)
    dataset = VOCSegmentation(root, 'val', transform=SegmentationTestValTransform())
    engine = evaluate_segmentation(net, dataset, batch_size=2)
    np.testing.assert_array_equal(engine.state_dict()['confusion_matrix'],
                                  result['confusion_matrix'])


def test_unlabelled_split_without_save_predictions_is_an_error(voc, shapes_fcn, tmp_path,
                                                               monkeypatch, capsys):
    root, _ = voc
    _, params = shapes_fcn
    monkeypatch.chdir(tmp_path)
    assert cli(['eval'] + model_args(params, root) + ['--split', 'test']) == 2
    assert 'test split of voc has no labels' in capsys.readouterr().err
    assert not os.path.exists('runs')


def test_bad_command_lines_are_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        cli(['eval', '--model', 'fcn_resnet18_shapes', '--params', 'x.params', '--mode', 'val',
             '--save-predictions', 'out'])
    assert 'use --mode testval' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_test_script().main(['--model', 'fcn_resnet18_shapes'])
    assert 'needs --pretrained' in capsys.readouterr().err
