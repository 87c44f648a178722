"""scripts/segmentation/demo.py, scripts/instance/demo_mask_rcnn.py and ``gluonseg predict``
(gluonseg/tools/predict.py) on tiny random-weight models: the files each writes, what is in
them, and the errors for wrong inputs or models."""
import importlib.util
import os
import re

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluonseg.cli import main as cli
from gluonseg.data import ShapesInstance
from gluonseg.engine import save_checkpoint
from gluonseg.engine.instance_trainer import mask_rcnn_model_info
from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn
from gluonseg.tools.predict import expand_inputs
from gluonseg.utils.viz import voc_palette

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A narrow Mask R-CNN with few proposals: a forward on a 64-pixel image takes well under a second.
TINY_MASK_RCNN = dict(fpn=True, frozen_bn=False, fpn_channels=16, rpn_channels=16,
                      box_units=32, mask_channels=16, rpn_test_pre_nms=100,
                      rpn_test_post_nms=10)


def load_script(*parts):
    spec = importlib.util.spec_from_file_location(parts[-1][:-3],
                                                  os.path.join(ROOT, 'scripts', *parts))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def pictures(tmp_path_factory):
    """Three pictures of different sizes: two in a folder (plus a non-image file), one apart."""
    base = tmp_path_factory.mktemp('pictures')
    os.makedirs(base / 'folder')
    rng = np.random.RandomState(0)
    paths = [str(base / 'folder' / 'a.jpg'), str(base / 'folder' / 'b.png'),
             str(base / 'c.png')]
    for path, (height, width) in zip(paths, [(40, 56), (48, 36), (33, 47)]):
        Image.fromarray(rng.randint(0, 256, (height, width, 3)).astype(np.uint8)).save(path)
    (base / 'folder' / 'notes.txt').write_text('not an image')
    return str(base), paths


@pytest.fixture(scope='module')
def semantic(shapes_fcn, tmp_path_factory):
    """The random-weight fcn_resnet18_shapes as a .params file and as a train.py checkpoint."""
    net, params = shapes_fcn
    path = str(tmp_path_factory.mktemp('semantic') / 'best.ckpt')
    checkpoint = save_checkpoint(path, net, meta={
        'model': {'name': 'fcn_resnet18_shapes', 'kwargs': {'nclass': 4, 'aux': False}},
        'args': {'dataset': 'shapes'}})
    return net, params, checkpoint


@pytest.fixture(scope='module')
def instance_checkpoint(tmp_path_factory):
    """A random-weight Mask R-CNN checkpoint as train_mask_rcnn.py writes it (Shapes classes,
    64-pixel resize)."""
    mx.random.seed(0)
    kwargs = dict(TINY_MASK_RCNN, depth=18, variant='v1b', classes=list(ShapesInstance.CLASSES))
    net = mask_rcnn(**kwargs)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 64, 64)))
    path = str(tmp_path_factory.mktemp('instance') / 'best.ckpt')
    return save_checkpoint(path, net, meta={'model': mask_rcnn_model_info(**kwargs),
                                            'args': {'short': 64, 'max_size': 64}})


def test_expand_inputs_takes_files_folders_and_wildcards(pictures):
    base, paths = pictures
    assert expand_inputs([os.path.join(base, 'folder')]) == paths[:2]  # notes.txt left out
    assert expand_inputs([os.path.join(base, '*.png'), paths[0], paths[2]]) == \
        [paths[2], paths[0]]  # each once, in the given order
    with pytest.raises(FileNotFoundError, match='no file matches .*nothing'):
        expand_inputs([os.path.join(base, 'nothing*.jpg')])
    with pytest.raises(FileNotFoundError, match='no file .*missing.jpg'):
        expand_inputs([os.path.join(base, 'missing.jpg')])


def test_demo_writes_masks_and_overlays(pictures, semantic, tmp_path, capsys):
    base, paths = pictures
    net, params, _ = semantic
    output = str(tmp_path / 'out')
    demo = load_script('segmentation', 'demo.py')
    assert demo.main([os.path.join(base, 'folder'), paths[2], '--model', 'fcn_resnet18_shapes',
                      '--params', params, '--output', output]) == 0
    assert sorted(os.listdir(output)) == ['a_mask.png', 'a_overlay.png', 'b_mask.png',
                                          'b_overlay.png', 'c_mask.png', 'c_overlay.png']
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        with Image.open(path) as picture:
            image = np.asarray(picture.convert('RGB'))
        labels = net.predict(image)
        with Image.open(os.path.join(output, name + '_mask.png')) as mask:
            assert mask.mode == 'P'
            np.testing.assert_array_equal(np.array(mask), labels)
            np.testing.assert_array_equal(
                np.array(mask.getpalette(), dtype=np.uint8).reshape(-1, 3), voc_palette())
        with Image.open(os.path.join(output, name + '_overlay.png')) as overlay:
            assert overlay.mode == 'RGB'
            assert_overlay_of(np.asarray(overlay), image, labels)
    assert '3 image(s) -> %s' % output in capsys.readouterr().out


def assert_overlay_of(overlay, image, labels, alpha=0.5):
    """The picture at the top-left, its background (label 0) pixels unchanged and the others
    tinted in the VOC colours; the legend in a strip to the right, not touching its edges."""
    height, width = image.shape[:2]
    background = labels == 0
    assert background.any() and (~background).any()  # both kinds are checked
    assert overlay.shape[0] == height and overlay.shape[1] > width
    picture = overlay[:height, :width].astype(int)
    np.testing.assert_array_equal(picture[background], image[background])
    tinted = np.round((1 - alpha) * image[~background]
                      + alpha * voc_palette()[labels[~background]])
    assert np.abs(picture[~background] - tinted).max() <= 1
    ink = np.argwhere((overlay[:, width:] != 255).any(axis=-1))
    assert len(ink) and ink[:, 0].max() < height - 1 and ink[:, 1].max() < \
        overlay.shape[1] - width - 1


def test_predict_short_side_resizes_before_and_back_after(semantic, tmp_path, capsys):
    # A 128x128 photo made of 2x2 blocks: resized to a 64-pixel short side it is exactly
    # the 64x64 picture, so the prediction must be that picture's, doubled.
    net, _, checkpoint = semantic
    small = np.random.RandomState(5).randint(0, 256, (64, 64, 3)).astype(np.uint8)
    big = small.repeat(2, axis=0).repeat(2, axis=1)
    path = str(tmp_path / 'big.png')
    Image.fromarray(big).save(path)
    expected = net.predict(small).repeat(2, axis=0).repeat(2, axis=1)
    assert not np.array_equal(net.predict(big), expected)  # the size matters to the model
    output = str(tmp_path / 'out')
    assert cli(['predict', path, '--checkpoint', checkpoint, '--short', '64',
                '--output', output]) == 0
    assert '128x128 predicted with the short side at 64, classes' in capsys.readouterr().out
    with Image.open(os.path.join(output, 'big_mask.png')) as mask:
        np.testing.assert_array_equal(np.array(mask), expected)
    with Image.open(os.path.join(output, 'big_overlay.png')) as overlay:
        assert_overlay_of(np.asarray(overlay.convert('RGB')), big, expected)
    # --draw-background colours label 0 too; --no-legend keeps the picture's size.
    assert cli(['predict', path, '--checkpoint', checkpoint, '--short', '64', '--output',
                output, '--draw-background', '--no-legend']) == 0
    with Image.open(os.path.join(output, 'big_overlay.png')) as overlay:
        drawn = np.asarray(overlay.convert('RGB')).astype(int)
    assert drawn.shape == big.shape
    tinted = np.round(0.5 * big + 0.5 * voc_palette()[expected])
    assert np.abs(drawn - tinted).max() <= 1


def test_cli_predict_with_a_checkpoint_names_the_shapes_classes(pictures, semantic, tmp_path,
                                                                capsys):
    _, paths = pictures
    net, _, checkpoint = semantic
    output = str(tmp_path / 'out')
    assert cli(['predict', paths[2], '--checkpoint', checkpoint, '--output', output,
                '--no-legend']) == 0
    with Image.open(paths[2]) as picture:
        labels = net.predict(np.asarray(picture.convert('RGB')))
    names = [('background', 'circle', 'square', 'triangle')[c] for c in np.unique(labels)]
    assert 'classes %s ->' % ', '.join(names) in capsys.readouterr().out
    assert sorted(os.listdir(output)) == ['c_mask.png', 'c_overlay.png']


def test_predict_names_the_classes_a_checkpoint_was_trained_on(pictures, semantic, tmp_path,
                                                                 capsys):
    # A folder dataset's run: the architecture's registered name (Shapes) with 4 classes of
    # its own names, which the checkpoint keeps.
    _, paths = pictures
    net, params, _ = semantic
    own = ['sky', 'road', 'car', 'tree']
    checkpoint = save_checkpoint(str(tmp_path / 'folder.ckpt'), net, meta={
        'model': {'name': 'fcn_resnet18_shapes', 'kwargs': {'nclass': 4, 'aux': False}},
        'args': {'dataset': 'folder'}, 'classes': own})
    assert cli(['predict', paths[2], '--checkpoint', checkpoint, '--output',
                str(tmp_path / 'out'), '--no-legend']) == 0
    with Image.open(paths[2]) as picture:
        labels = net.predict(np.asarray(picture.convert('RGB')))
    names = [own[c] for c in np.unique(labels)]
    assert 'classes %s ->' % ', '.join(names) in capsys.readouterr().out


def test_demo_mask_rcnn_draws_a_checkpoints_detections(pictures, instance_checkpoint,
                                                       tmp_path, capsys):
    _, paths = pictures
    output = str(tmp_path / 'out')
    demo = load_script('instance', 'demo_mask_rcnn.py')
    assert demo.main([paths[0], '--checkpoint', instance_checkpoint, '--score-thresh', '0',
                      '--output', output]) == 0
    assert os.listdir(output) == ['a_instances.png']
    with Image.open(os.path.join(output, 'a_instances.png')) as drawn:
        # the 56x40 picture with the legend in a strip beside it (taller for many entries)
        assert drawn.mode == 'RGB' and drawn.width > 56 and drawn.height >= 40
        assert (np.asarray(drawn)[40:, :56] == 255).all()
    line = capsys.readouterr().out.splitlines()[0]
    # random weights, every score kept: 1 to 10 proposals x 3 classes, counted per class
    match = re.search(r': 56x40, (\d+) detections (.*) -> ', line)
    assert match and 1 <= int(match.group(1)) <= 30, line
    counts = dict((name, int(n)) for name, n in
                  (item.split() for item in match.group(2).split(', ')))
    assert set(counts) <= set(ShapesInstance.CLASSES), line
    assert sum(counts.values()) == int(match.group(1)), line


def test_cli_predict_dispatches_on_the_checkpoints_task(pictures, instance_checkpoint,
                                                        tmp_path):
    _, paths = pictures
    output = str(tmp_path / 'out')
    assert cli(['predict', paths[1], '--checkpoint', instance_checkpoint, '--output',
                output]) == 0
    assert os.listdir(output) == ['b_instances.png']


def test_each_demo_refuses_the_other_task(pictures, semantic, instance_checkpoint, capsys):
    _, paths = pictures
    _, params, _ = semantic
    semantic_demo = load_script('segmentation', 'demo.py')
    assert semantic_demo.main([paths[0], '--checkpoint', instance_checkpoint]) == 2
    assert 'for instance segmentation; use scripts/instance/demo_mask_rcnn.py' in \
        capsys.readouterr().err
    # a registered name is dispatched on the registry's task, before anything is built
    assert semantic_demo.main([paths[0], '--model', 'mask_rcnn_resnet18_v1b_coco',
                               '--params', params]) == 2
    assert 'mask_rcnn_resnet18_v1b_coco is a model for instance segmentation' in \
        capsys.readouterr().err
    instance_demo = load_script('instance', 'demo_mask_rcnn.py')
    assert instance_demo.main([paths[0], '--model', 'fcn_resnet18_shapes', '--params',
                               params]) == 2
    assert 'for semantic segmentation; use scripts/segmentation/demo.py' in \
        capsys.readouterr().err


def test_bad_inputs_are_named(pictures, semantic, capsys):
    base, _ = pictures
    _, params, _ = semantic
    assert cli(['predict', os.path.join(base, 'none*.jpg'), '--model', 'fcn_resnet18_shapes',
                '--params', params]) == 2
    assert 'no file matches' in capsys.readouterr().err
    assert cli(['predict', base, '--model', 'no_such_model', '--params', params]) == 2
    assert 'no_such_model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(['predict', base, '--model', 'fcn_resnet18_shapes'])  # no weights
    with pytest.raises(SystemExit):
        cli(['predict', base, '--model', 'fcn_resnet18_shapes', '--params', params,
             '--alpha', '2'])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli(['predict', base, '--model', 'fcn_resnet18_shapes', '--params', params,
             '--short', '0'])
    assert '--short must be a positive number of pixels, got 0' in capsys.readouterr().err
