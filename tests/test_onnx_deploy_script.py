"""scripts/deploy/onnx_predict.py: ONNX exports run on image folders where MXNet is absent.

The script runs in a subprocess whose ``import mxnet`` fails. The semantic branch runs an
exported FCN and gives ``net.predict``'s class ids; the instance branch runs a small
hand-built graph with a Mask R-CNN export's input and outputs (boxes that follow the input
size, one score that is the mean of the normalized input), so its resize, normalization,
paste and JSON are checked on their own.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluonseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gluonseg.model_zoo.weights_table import RESIZE_RULES
from gluonseg.utils.paste import paste_detections, paste_masks
from spec_utils import golden_shapes_models
from test_docs import ROOT, load_script

onnx = pytest.importorskip(
    'onnx', reason='onnx is not installed: pip install -e ".[onnx]" (onnx==1.14.1)')
pytest.importorskip('onnxruntime', reason='onnxruntime is not installed: pip install --no-deps '
                                          'onnxruntime==1.15.1')

SCRIPT = os.path.join(ROOT, 'scripts', 'deploy', 'onnx_predict.py')


@pytest.fixture(scope='module')
def script():
    return load_script('scripts/deploy/onnx_predict.py')


def run_without_mxnet(tmp_path, *args, python_args=(SCRIPT,)):
    """Run the script (or ``python_args``) where ``import mxnet`` raises ImportError;
    (exit status, stdout, stderr)."""
    fake = tmp_path / 'no_mxnet' / 'mxnet'
    fake.mkdir(parents=True, exist_ok=True)
    (fake / '__init__.py').write_text('raise ImportError("MXNet is not installed here")\n')
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(fake.parent), ROOT]))
    done = subprocess.run([sys.executable, *python_args] + [str(a) for a in args], env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_script_loads_neither_mxnet_nor_gluonsegs_other_dependencies(tmp_path):
    code = ('import runpy, sys; runpy.run_path(%r); import onnxruntime; '
            'print(sorted(m for m in ("mxnet", "requests", "tqdm", "scipy") if m in sys.modules))'
            % SCRIPT)
    status, out, err = run_without_mxnet(tmp_path, python_args=('-c', code))
    assert status == 0, err
    assert out.strip() == '[]'


def read_png(path):
    image = Image.open(path)
    assert image.mode == 'P'  # a palette PNG: the pixel values are the labels
    return np.array(image)


def test_semantic_export_gives_net_predicts_class_ids_without_mxnet(tmp_path):
    from gluonseg.model_zoo.onnx_export import export_onnx
    net = golden_shapes_models(['fcn'])['fcn']
    model = export_onnx(net, str(tmp_path / 'fcn.onnx'), input_shape=(1, 3, 64, 64))
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.RandomState(0)
    images = {'a': rng.randint(0, 256, (48, 64, 3)).astype(np.uint8),
              'b': rng.randint(0, 256, (37, 53, 3)).astype(np.uint8)}
    for name, image in images.items():
        Image.fromarray(image).save(str(folder / (name + '.png')))
    status, out, err = run_without_mxnet(tmp_path, '--model', model, '--input', folder,
                                         '--out-dir', tmp_path / 'out',
                                         '--providers', 'CPUExecutionProvider')
    assert status == 0, err
    assert out.count('_mask.png') == 2 and '2 image(s)' in out
    for name, image in images.items():
        labels = read_png(tmp_path / 'out' / (name + '_mask.png'))
        expected = net.predict(image)
        assert labels.shape == image.shape[:2]
        np.testing.assert_array_equal(labels, expected)


# The hand-built Mask R-CNN stand-in: 4 rows, 4x4 masks.
BOX_FRACTIONS = np.array([[-0.1, 0.2, 0.5, 0.9],    # sticks out on the left: clipped
                          [0.3, 0.3, 0.6, 0.6],     # score below the threshold
                          [0.0, 0.0, 1.0, 1.0],     # empty row (id -1)
                          [0.4, 0.1, 0.9, 0.5]], np.float32)
IDS = np.array([0, 2, -1, 1], np.float32)
SCORES = np.array([0.9, 0.3, 0.0], np.float32)      # the last row's: mean of the input
MASKS = np.random.RandomState(1).uniform(0, 1, (4, 4, 4)).astype(np.float32)


def instance_stand_in(path):
    """An ONNX graph with a Mask R-CNN export's input (data) and outputs (ids, scores, boxes,
    masks): boxes are BOX_FRACTIONS of the input's width and height, the last score is the
    mean of the input."""
    from onnx import TensorProto, helper, numpy_helper
    const = {'fractions': BOX_FRACTIONS[None], 'id_rows': IDS.reshape(1, 4, 1),
             'scores3': SCORES.reshape(1, 3, 1), 'mask_rows': MASKS[None],
             'start': np.array([2]), 'end': np.array([4]), 'xyxy': np.array([1, 0, 1, 0]),
             'one': np.array([1, 1, 1])}
    nodes = [
        helper.make_node('Shape', ['data'], ['shape']),
        helper.make_node('Slice', ['shape', 'start', 'end'], ['hw']),
        helper.make_node('Gather', ['hw', 'xyxy'], ['whwh_int']),
        helper.make_node('Cast', ['whwh_int'], ['whwh'], to=TensorProto.FLOAT),
        helper.make_node('Mul', ['fractions', 'whwh'], ['boxes']),
        helper.make_node('ReduceMean', ['data'], ['mean'], keepdims=0),
        helper.make_node('Reshape', ['mean', 'one'], ['mean3']),
        helper.make_node('Concat', ['scores3', 'mean3'], ['scores'], axis=1),
        helper.make_node('Identity', ['id_rows'], ['ids']),
        helper.make_node('Identity', ['mask_rows'], ['masks']),
    ]
    graph = helper.make_graph(
        nodes, 'mask_rcnn_stand_in',
        [helper.make_tensor_value_info('data', TensorProto.FLOAT, [1, 3, 'height', 'width'])],
        [helper.make_tensor_value_info('ids', TensorProto.FLOAT, [1, 4, 1]),
         helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 4, 1]),
         helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 4, 4]),
         helper.make_tensor_value_info('masks', TensorProto.FLOAT, [1, 4, 4, 4])],
        [numpy_helper.from_array(value, name) for name, value in const.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_instance_outputs_become_detections_in_original_pixels(tmp_path):
    model = instance_stand_in(tmp_path / 'stand_in.onnx')
    folder = tmp_path / 'images'
    folder.mkdir()
    colour = np.array([250, 240, 230], np.uint8)
    # (H, W) -> the network input's (H', W') under --resize 100 300: the short side 100, or
    # the long side 300 when the short side's scale would make it longer.
    sizes = {'wide': ((30, 200), (45, 300)), 'small': ((45, 70), (100, 156))}
    for name, ((height, width), _) in sizes.items():
        Image.fromarray(np.broadcast_to(colour, (height, width, 3)).copy()).save(
            str(folder / (name + '.png')))
    status, out, err = run_without_mxnet(tmp_path, '--model', model, '--input', folder,
                                         '--out-dir', tmp_path / 'out', '--resize', 100, 300)
    assert status == 0, err
    assert out.count('_detections.json') == 2
    normalized_mean = np.mean((colour / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)
    for name, ((height, width), (new_h, new_w)) in sizes.items():
        found = json.loads((tmp_path / 'out' / (name + '_detections.json')).read_text())
        assert (found['height'], found['width']) == (height, width)
        rows = found['detections']
        assert [r['class_id'] for r in rows] == [0, 1]  # rows 1 (score 0.3) and 2 (empty) go
        np.testing.assert_allclose([r['score'] for r in rows], [0.9, normalized_mean],
                                   rtol=1e-4)  # a float32 mean of 3 H' W' values
        in_input = BOX_FRACTIONS[[0, 3]] * [new_w, new_h, new_w, new_h]
        in_image = in_input / np.array([new_w / width, new_h / height] * 2, np.float32)
        np.testing.assert_allclose([r['box'] for r in rows],
                                   np.clip(in_image, 0, [width, height, width, height]),
                                   rtol=1e-5, atol=1e-4)
        assert rows[0]['box'][0] == 0  # clipped
        masks = paste_masks(MASKS[[0, 3]], in_image, (height, width))
        labels = read_png(tmp_path / 'out' / (name + '_instances.png'))
        expected = np.where(masks[0], 1, np.where(masks[1], 2, 0))
        assert masks[0].any() and masks[1].any()
        np.testing.assert_array_equal(labels, expected)


def test_paste_detections_keeps_scales_clips_and_pastes_unclipped():
    ids = np.array([[3], [-1], [1], [0]], np.float32)
    scores = np.array([[0.8], [0.9], [0.6], [0.2]], np.float32)
    boxes = np.array([[-4, 2, 10, 8], [0, 0, 5, 5], [6, 6, 30, 12], [1, 1, 2, 2]], np.float32)
    masks = np.random.RandomState(0).uniform(0, 1, (4, 6, 6)).astype(np.float32)
    class_ids, kept_scores, kept_boxes, full = paste_detections(
        ids, scores, boxes, masks, (10, 12), scales=(1.0, 2.0), score_thresh=0.5, max_dets=2)
    assert class_ids.tolist() == [3, 1] and np.array_equal(kept_scores, scores[[0, 2], 0])
    unclipped = boxes[[0, 2]] / [2, 1, 2, 1]
    np.testing.assert_array_equal(kept_boxes, np.clip(unclipped, 0, [12, 10, 12, 10]))
    np.testing.assert_array_equal(full, paste_masks(masks[[0, 2]], unclipped, (10, 12)))
    with pytest.raises(ValueError, match='as many ids, scores, boxes and masks'):
        paste_detections(ids, scores, boxes[:3], masks, (10, 12))


@pytest.mark.parametrize('size, new_size', [((97, 131), (200, 270)),    # up
                                            ((120, 90), (53, 40)),      # down
                                            ((64, 64), (800, 800))])
def test_numpy_resize_is_mxnets_within_one_grey_level(script, size, new_size):
    image = np.random.RandomState(0).randint(0, 256, size + (3,)).astype(np.uint8)
    mxnet_resized = mx.image.imresize(mx.nd.array(image, dtype='uint8'), new_size[1],
                                      new_size[0], interp=1).asnumpy()
    resized = script.resize_bilinear(image, *new_size)
    assert resized.shape == mxnet_resized.shape and resized.dtype == np.uint8
    difference = np.abs(resized.astype(int) - mxnet_resized)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.2


def test_defaults_and_bad_input_are_clear(script, tmp_path, capsys):
    args = script.parse_args(['--model', 'm.onnx', '--input', 'x', '--out-dir', 'o'])
    assert args.resize is None and args.score_thresh == 0.5 and args.max_dets == 100
    assert script.INSTANCE_RESIZE == RESIZE_RULES['instance'] == {'short': 800, 'max_size': 1333}
    with pytest.raises(SystemExit):
        script.parse_args(['--model', 'm', '--input', 'x', '--out-dir', 'o', '--resize',
                           '1', '2', '3'])
    assert '--resize takes SHORT [MAX_SIZE]' in capsys.readouterr().err
    image = tmp_path / 'a.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(image))
    assert script.main(['--model', str(tmp_path / 'none.onnx'), '--input', str(image),
                        '--out-dir', str(tmp_path / 'out')]) == 2
    assert 'no ONNX file' in capsys.readouterr().err
    assert script.main(['--model', 'm.onnx', '--input', str(tmp_path / 'nothing'),
                        '--out-dir', str(tmp_path / 'out')]) == 2
    assert 'no file or folder' in capsys.readouterr().err
