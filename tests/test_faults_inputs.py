"""Faults in the input files of unattended runs: 16-bit PNGs, photos stored sideways with an
EXIF orientation tag, truncated images and labels in the middle of a batch or a validation
set, and weight files given to the wrong option or damaged. Each bad input is named with the
reason, the others are processed, and the run ends with a summary and a non-zero status."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fixtures_data import make_image, make_mask, write_folder, write_palette_png, write_voc
from gluonseg.cli import main as cli
from gluonseg.data import (FolderSegmentation, SegmentationTestValTransform, VOCSegmentation,
                           load_image)
from gluonseg.data.transforms import ImageReadError, image_file_size
from gluonseg.engine import save_checkpoint
from gluonseg.utils.metrics import SegmentationMetric

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_SCRIPT = os.path.join(REPO, 'scripts', 'segmentation', 'test.py')
# EXIF orientation -> the numpy turn that shows the stored pixels upright.
UPRIGHT = {3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


def run_command(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable] + args, cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=timeout)


def gradient_16_bit(height=256, width=256):
    """Every 16-bit value 0..65535 once (for 256x256), row-major."""
    ramp = np.arange(height * width, dtype=np.int64).reshape(height, width)
    return ramp * 65535 // (height * width - 1)


def expected_8_bit(values):
    return np.round(values * 255.0 / 65535).astype(np.uint8)


def save_with_orientation(path, pixels, orientation, **kwargs):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(str(path), exif=exif.tobytes(), **kwargs)


def write_truncated_jpeg(path, height=48, width=64, seed=0):
    """A real JPEG cut to half its bytes: PIL opens it and fails while decoding."""
    Image.fromarray(make_image(height, width, seed)).save(str(path), quality=95)
    with open(str(path), 'rb') as f:
        data = f.read()
    with open(str(path), 'wb') as f:
        f.write(data[:len(data) // 2])


def stored_pixels(path):
    with Image.open(str(path)) as img:
        return np.asarray(img.convert('RGB')).copy()


# --------------------------------------------------------------------------- one image reader
@pytest.mark.fault('16-bit greyscale PNG gradient')
def test_16_bit_png_is_scaled_by_its_range_not_clipped(tmp_path):
    values = gradient_16_bit()
    path = str(tmp_path / 'depth.png')
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as png:
        assert png.mode.startswith('I;16')  # the file really is 16-bit
    image = load_image(path)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], expected_8_bit(values))
    assert (image == 255).mean() < 0.01 and len(np.unique(image)) == 256  # not clipped to white
    # PIL's mode I (how it holds 16-bit files) and uint16 arrays are read the same way
    with Image.open(path) as png:
        np.testing.assert_array_equal(load_image(png.convert('I')), image)
    np.testing.assert_array_equal(load_image(values.astype(np.uint16)), image)
    with pytest.raises(ValueError, match=r'PIL mode I\) holds values in \[0, 70000\]'):
        load_image(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)))
    with pytest.raises(TypeError, match='PIL mode F'):
        load_image(Image.fromarray(np.zeros((2, 2), dtype=np.float32)))


@pytest.mark.fault('photo stored sideways with an EXIF orientation tag')
@pytest.mark.parametrize('orientation', [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = make_image(24, 40, seed=orientation)
    stored[:, :8] = (250, 20, 20)  # a left band, to see where it ends up
    path = tmp_path / 'photo.png'  # lossless, so pixels compare exactly
    save_with_orientation(path, stored, orientation)
    upright = UPRIGHT[orientation](stored)
    image = load_image(str(path))
    np.testing.assert_array_equal(image, upright)
    assert image_file_size(str(path)) == upright.shape[:2]
    with Image.open(str(path)) as img:  # a PIL image straight from the file: the same
        np.testing.assert_array_equal(load_image(img), upright)


@pytest.mark.fault('truncated JPEG read directly, from a PIL image, and pickled by a worker')
def test_truncated_image_error_names_the_file(tmp_path):
    path = str(tmp_path / 'cut.jpg')
    write_truncated_jpeg(path)
    with pytest.raises(ImageReadError, match=r'cannot read the image .*cut\.jpg: image file is '
                                             r'truncated') as caught:
        load_image(path)
    assert caught.value.path == path and isinstance(caught.value, OSError)
    with Image.open(path) as lazy:  # opened fine, fails when decoded
        with pytest.raises(ImageReadError, match=r'cut\.jpg: image file is truncated'):
            load_image(lazy)
    # DataLoader worker processes send errors back pickled
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), str(copy), copy.path) == (ImageReadError, str(caught.value), path)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ImageReadError, match=r'empty\.png: cannot identify image file'):
        load_image(str(empty))


# ------------------------------------------------------------------------------- datasets
@pytest.mark.fault('dataset photo with EXIF orientation 6, labels drawn upright and as stored')
def test_folder_dataset_reads_photos_upright_and_refuses_a_label_of_the_stored_view(tmp_path):
    write_folder(tmp_path, ['a', 'b'], size=(16, 20))
    stored = make_image(16, 40, seed=1)
    save_with_orientation(tmp_path / 'images' / 'a.png', stored, 6)
    upright_mask = make_mask(40, 16, seed=1, num_class=3)  # drawn on the upright photo
    Image.fromarray(upright_mask.astype(np.uint8), 'L').save(str(tmp_path / 'labels' / 'a.png'))
    dataset = FolderSegmentation(str(tmp_path))
    image, mask = dataset[0]
    np.testing.assert_array_equal(image, np.rot90(stored, -1))
    np.testing.assert_array_equal(mask, upright_mask)
    assert dataset.verify() == 2
    # a label drawn on the stored (sideways) pixels: both files and both sizes are named
    Image.fromarray(make_mask(16, 40, seed=1, num_class=3).astype(np.uint8), 'L').save(
        str(tmp_path / 'labels' / 'a.png'))
    message = (r'labels/a\.png: label is 16x40 but its image .*images/a\.png is 40x16 \(HxW; '
               r'images are read upright')
    with pytest.raises(ValueError, match=message):
        dataset[0]
    with pytest.raises(ValueError, match=message):
        dataset.verify()
    # a label carrying an orientation tag itself is refused, not guessed
    save_with_orientation(tmp_path / 'labels' / 'b.png', make_mask(16, 20, 2, num_class=3)
                          .astype(np.uint8), 6)
    with pytest.raises(ValueError, match=r'label .*b\.png carries EXIF orientation 6'):
        dataset[1]


@pytest.mark.fault('truncated image and truncated label PNG in a dataset')
def test_dataset_errors_name_the_damaged_file(tmp_path):
    write_folder(tmp_path, ['a', 'b'], image_ext='.jpg')
    write_truncated_jpeg(tmp_path / 'images' / 'a.jpg', 16, 20)
    label = tmp_path / 'labels' / 'b.png'
    label.write_bytes(label.read_bytes()[:40])
    dataset = FolderSegmentation(str(tmp_path))
    with pytest.raises(ImageReadError, match=r'images/a\.jpg: (?i:.*truncated)'):
        dataset[0]
    with pytest.raises(ImageReadError, match=r'labels/b\.png'):
        dataset[1]


# ------------------------------------------------------------------------ gluonseg predict
@pytest.mark.fault('truncated JPEG in the middle of a gluonseg predict folder')
def test_predict_reports_a_bad_image_and_segments_the_others(shapes_fcn, tmp_path):
    _, params = shapes_fcn
    folder = tmp_path / 'photos'
    folder.mkdir()
    Image.fromarray(make_image(40, 56, 0)).save(str(folder / 'a.png'))
    write_truncated_jpeg(folder / 'b.jpg')
    values = gradient_16_bit(64, 64)
    Image.fromarray(values.astype(np.uint16)).save(str(folder / 'c.png'))
    save_with_orientation(folder / 'd.jpg', make_image(24, 48, 3), 6, quality=95)
    output = tmp_path / 'out'
    # --alpha 0 without legend: each overlay is the picture exactly as it was read
    run = run_command(['-m', 'gluonseg.cli', 'predict', str(folder), '--model',
                       'fcn_resnet18_shapes', '--params', params, '--output', str(output),
                       '--alpha', '0', '--no-legend'], cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr
    bad = str(folder / 'b.jpg')
    assert 'error: cannot read the image %s: image file is truncated' % bad in run.stderr
    assert 'error: 1 of 4 image(s) could not be read and have no results:\n  cannot read the ' \
           'image %s' % bad in run.stderr
    assert '3 image(s) -> %s' % output in run.stdout
    assert sorted(os.listdir(str(output))) == ['a_mask.png', 'a_overlay.png', 'c_mask.png',
                                               'c_overlay.png', 'd_mask.png', 'd_overlay.png']
    gradient = stored_pixels(output / 'c_overlay.png')
    np.testing.assert_array_equal(gradient[..., 1], expected_8_bit(values))
    upright = np.rot90(stored_pixels(folder / 'd.jpg'), -1)
    np.testing.assert_array_equal(stored_pixels(output / 'd_overlay.png'), upright)
    with Image.open(str(output / 'd_mask.png')) as mask:
        assert mask.size == (24, 48)  # (W, H) of the upright photo


# -------------------------------------------------------------------------- gluonseg eval
@pytest.fixture
def damaged_voc(tmp_path):
    """A VOC val split of 4: a truncated JPEG, a label of the wrong size, two good samples."""
    ids = ['2007_000001', '2007_000002', '2007_000003', '2007_000004']
    expected = write_voc(tmp_path, {'val': ids}, size=(20, 28))
    base = tmp_path / 'VOCdevkit' / 'VOC2012'
    write_truncated_jpeg(base / 'JPEGImages' / (ids[1] + '.jpg'), 20, 28)
    write_palette_png(str(base / 'SegmentationClass' / (ids[2] + '.png')), make_mask(5, 5, 0))
    return str(tmp_path), ids, expected, base


@pytest.mark.fault('truncated JPEG and wrong-size label in the validation set of test.py')
def test_eval_scores_the_readable_samples_and_says_how_many(shapes_fcn, damaged_voc, tmp_path):
    net, params = shapes_fcn
    root, ids, expected, base = damaged_voc
    output, folder = tmp_path / 'eval.json', tmp_path / 'pred'
    run = run_command([TEST_SCRIPT, '--model', 'fcn_resnet18_shapes', '--params', params,
                       '--dataset', 'voc', '--root', root, '--split', 'val', '--no-progress',
                       '--output', str(output), '--save-predictions', str(folder),
                       '--batch-size', '2'], cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr
    image = base / 'JPEGImages' / (ids[1] + '.jpg')
    label = base / 'SegmentationClass' / (ids[2] + '.png')
    assert 'error: sample 1 (id %s): cannot read the image %s: ' % (ids[1], image) in run.stderr
    assert 'error: sample 2 (id %s): %s: label is 5x5 but its image %s is 22x30' \
        % (ids[2], label, base / 'JPEGImages' / (ids[2] + '.jpg')) in run.stderr
    assert 'error: 2 of 4 samples could not be read and were not scored: the scores above ' \
           'are over the other 2' in run.stderr
    assert '(testval, 2 of 4 images scored, single scale)' in run.stdout
    with open(str(output)) as f:
        result = json.load(f)
    assert (result['num_images'], result['num_samples']) == (2, 4)
    assert [e['index'] for e in result['excluded']] == [1, 2]
    metric = SegmentationMetric(21)
    for image_id in (ids[0], ids[3]):
        metric.update(expected[image_id][1], net.predict(expected[image_id][0]))
    np.testing.assert_array_equal(result['confusion_matrix'],
                                  metric.state_dict()['confusion_matrix'])
    assert sorted(os.listdir(str(folder))) == [ids[0] + '.png', ids[3] + '.png']


@pytest.mark.fault('bad validation samples read by DataLoader worker processes')
def test_eval_with_workers_excludes_the_same_samples(shapes_fcn, damaged_voc, tmp_path, capsys):
    _, params = shapes_fcn
    root, ids, _, _ = damaged_voc
    output = tmp_path / 'eval.json'
    status = cli(['eval', '--model', 'fcn_resnet18_shapes', '--params', params, '--dataset',
                  'voc', '--root', root, '--split', 'val', '--no-progress', '--workers', '2',
                  '--batch-size', '3', '--output', str(output)])
    assert status == 1
    assert '2 of 4 images scored' in capsys.readouterr().out
    with open(str(output)) as f:
        assert [e['index'] for e in json.load(f)['excluded']] == [1, 2]
    # the engine's own loop (train.py's validation) still stops at a bad sample, naming it
    dataset = VOCSegmentation(root, 'val', transform=SegmentationTestValTransform())
    with pytest.raises(ImageReadError, match=ids[1]):
        [dataset[i] for i in range(len(dataset))]


# ------------------------------------------------------------- weight files of the wrong kind
@pytest.fixture(scope='module')
def weight_files(shapes_fcn, tmp_path_factory):
    """A checkpoint, a truncated copy of it, and a truncated .params file."""
    net, params = shapes_fcn
    base = tmp_path_factory.mktemp('weights')
    checkpoint = save_checkpoint(str(base / 'best.ckpt'), net, meta={
        'model': {'name': 'fcn_resnet18_shapes', 'kwargs': {'nclass': 4, 'aux': False}},
        'args': {'dataset': 'shapes', 'base_size': 32, 'crop_size': 32, 'val_length': 2}})
    cut_checkpoint, cut_params = str(base / 'cut.ckpt'), str(base / 'cut.params')
    for source, target in ((checkpoint, cut_checkpoint), (params, cut_params)):
        with open(source, 'rb') as f:
            data = f.read()
        with open(target, 'wb') as f:
            f.write(data[:len(data) // 2])
    return params, checkpoint, cut_checkpoint, cut_params


@pytest.mark.fault('checkpoint given as --params, .params as checkpoint, to eval and predict')
def test_a_weight_file_given_to_the_wrong_option_is_redirected(weight_files, tmp_path, capsys):
    params, checkpoint, _, _ = weight_files
    picture = str(tmp_path / 'p.png')
    Image.fromarray(make_image(32, 32, 0)).save(picture)
    for argv, advice in (
            (['eval', '--model', 'fcn_resnet18_shapes', '--params', checkpoint],
             'give it as the checkpoint argument (e.g. gluonseg eval %s)' % checkpoint),
            (['predict', picture, '--model', 'fcn_resnet18_shapes', '--params', checkpoint],
             'pass it with --checkpoint %s' % checkpoint)):
        with pytest.raises(SystemExit) as exit_:
            cli(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert '--params %s is a gluonseg checkpoint' % checkpoint in err and advice in err
        assert 'NDArray' not in err
    for argv in (['eval', params], ['predict', picture, '--checkpoint', params]):
        with pytest.raises(SystemExit):
            cli(argv)
        assert '%s is a .params weight file, not a gluonseg checkpoint: pass --model NAME ' \
               '--params %s' % (params, params) in capsys.readouterr().err
    # the checkpoint where it belongs is evaluated
    assert cli(['eval', checkpoint, '--no-progress', '--output', str(tmp_path / 'e.json')]) == 0
    assert '(val, 2 images scored' in capsys.readouterr().out


@pytest.mark.fault('truncated checkpoint and truncated .params file given to test.py and predict')
def test_damaged_weight_files_get_advice_that_fits_the_command(weight_files, tmp_path, capsys):
    _, _, cut_checkpoint, cut_params = weight_files
    run = run_command([TEST_SCRIPT, cut_checkpoint, '--no-progress'], cwd=tmp_path)
    assert run.returncode == 2 and 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert 'error: %s is a damaged gluonseg checkpoint (' % cut_checkpoint in run.stderr
    assert 'use another checkpoint of the run' in run.stderr
    assert '--init-from' not in run.stderr  # an option of train.py only
    picture = str(tmp_path / 'p.png')
    Image.fromarray(make_image(32, 32, 0)).save(picture)
    assert cli(['predict', picture, '--checkpoint', cut_checkpoint]) == 2
    err = capsys.readouterr().err
    assert 'error: %s is a damaged gluonseg checkpoint' % cut_checkpoint in err
    assert '--init-from' not in err
    assert cli(['eval', '--model', 'fcn_resnet18_shapes', '--params', cut_params,
                '--dataset', 'shapes', '--length', '2', '--no-progress']) == 2
    assert 'error: cannot read the weight file %s (' % cut_params in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'runs'))
