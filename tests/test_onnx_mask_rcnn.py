"""ONNX export of Mask R-CNN (C4 and FPN), checked in onnxruntime against net(x) and
net.detect, and the converters of gluonseg.model_zoo.onnx_detection against MXNet.

onnxruntime: `pip install --no-deps onnxruntime==1.15.1` (see model_checks.import_onnx).
Sessions use onnxruntime's default options, as a deployment would.
"""
import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.data import ShapesInstance
from gluonseg.data.transforms import normalize_image
from gluonseg.model_zoo.rcnn.boxes import iou_matrix
from fixtures_training import instance_trainer, small_net
from model_checks import import_onnx
from spec_utils import golden, spec_layout
from test_mask_rcnn import PUBLISHED, published_file, saved_layout  # noqa: F401  (fixture)

onnx, ort = import_onnx()

from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph  # noqa: E402
from gluonseg.model_zoo.onnx_detection import (  # noqa: E402
    DETECTION_OUTPUTS, detection_converters)
from gluonseg.model_zoo.onnx_export import export_onnx, onnx_converters  # noqa: E402

GOLDEN = ['mask_rcnn_resnet18_v1b_coco', 'mask_rcnn_fpn_resnet18_v1b_coco']


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    model = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])


def assert_same_detections(expected, actual, tol=1e-3):
    """The valid rows (id >= 0) of ``expected`` and ``actual`` (ids, scores, boxes, masks of
    one image) are the same set: each expected row has its own actual row of the same
    class, box IoU > 0.99 (corners within 0.01 for a box without area), score and mask
    within ``tol``. Returns the number of rows."""
    def valid(outputs):
        ids, scores, boxes, masks = [np.asarray(o)[0] for o in outputs]
        keep = ids[:, 0] >= 0
        return ids[keep, 0], scores[keep, 0], boxes[keep], masks[keep]
    e_ids, e_scores, e_boxes, e_masks = valid(expected)
    a_ids, a_scores, a_boxes, a_masks = valid(actual)
    assert len(a_ids) == len(e_ids)
    # a box without area (x1 = x2 or y1 = y2) has IoU 0 with itself: equal corners then
    same_box = (iou_matrix(e_boxes, a_boxes) > 0.99) | (
        np.abs(e_boxes[:, None] - a_boxes[None, :]).max(-1) < 1e-2)
    close = ((e_ids[:, None] == a_ids[None, :]) & same_box &
             (np.abs(e_scores[:, None] - a_scores[None, :]) <= tol))
    free = np.ones(len(a_ids), bool)
    for row in np.argsort(-e_scores, kind='stable'):
        candidates = np.flatnonzero(close[row] & free)
        assert len(candidates), 'expected row %d (class %d, score %.4f, box %s) unmatched' % (
            row, e_ids[row], e_scores[row], e_boxes[row])
        match = candidates[np.argmin(np.abs(a_masks[candidates] - e_masks[row])
                                     .reshape(len(candidates), -1).max(1))]
        free[match] = False
        np.testing.assert_allclose(a_masks[match], e_masks[row], atol=tol)
    return len(e_ids)


# ------------------------------------------------------------------ the converters alone
def export_symbol(symbol, shapes, opset=13):
    """An ONNX model of ``symbol`` through MXNet's exporter and the detection converters,
    every dimension dynamic (inputs named as the symbol's variables)."""
    with onnx_converters(opset, detection_converters()):
        graph = MXNetGraph().create_onnx_graph_proto(
            symbol, {}, list(shapes.values()), [onnx.TensorProto.FLOAT] * len(shapes),
            opset_version=opset, dynamic=True)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', opset)])


def box_nms_rows(rng, batch, count, classes, ties=True):
    """(batch, count, 6) rows ``id, score, x1, y1, x2, y2``: overlapping boxes, equal scores,
    ids -1 .. classes - 1, scores at and below the thresholds, some inverted boxes."""
    corner = rng.randint(0, 20, (batch, count, 2)).astype(np.float32)
    size = rng.randint(1, 12, (batch, count, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + size], axis=-1)
    boxes[:, ::9, 2] = boxes[:, ::9, 0] - 3          # inverted: area 0 in box_nms
    boxes[:, 1::9] = boxes[:, :-1:9]                  # same box as the row before
    scores = rng.choice([0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9] if ties else
                        rng.uniform(0, 1, 1000), (batch, count)).astype(np.float32)
    ids = rng.randint(-1, classes, (batch, count)).astype(np.float32)
    return np.concatenate([ids[..., None], scores[..., None], boxes], axis=-1)


@pytest.mark.parametrize('kwargs', [
    # the per-class NMS of DetectionPostProcessor (several classes in one row here)
    dict(overlap_thresh=0.5, topk=-1, coord_start=2, score_index=1, id_index=0,
         valid_thresh=0.05, force_suppress=False),
    # the RPN's: top-k of the candidates, every class together
    dict(overlap_thresh=0.7, topk=25, coord_start=2, score_index=1, id_index=-1,
         valid_thresh=0.0, force_suppress=True),
    dict(overlap_thresh=0.3, topk=40, coord_start=2, score_index=1, id_index=0,
         valid_thresh=0.1, force_suppress=True, background_id=1),
])
def test_box_nms_converter_gives_mxnets_rows_exactly(kwargs):
    model = session(export_symbol(mx.sym.contrib.box_nms(mx.sym.var('data'), **kwargs),
                                  {'data': (2, 60, 6)}))
    rng = np.random.RandomState(0)
    kept = dropped = 0
    for batch, count in [(2, 60), (3, 97), (1, 7), (2, 60)]:  # any size, in one session
        rows = box_nms_rows(rng, batch, count, classes=4)
        expected = mx.nd.contrib.box_nms(mx.nd.array(rows), **kwargs).asnumpy()
        (actual,) = model.run(None, {'data': rows})
        np.testing.assert_array_equal(actual, expected)
        kept += (expected[:, :, 1] > 0).sum()
        dropped += (expected[:, :, 1] == -1).sum()
    assert kept > 50 and dropped > 50


def test_box_nms_converter_keeps_row_order_among_equal_scores():
    # 300 equal scores: NonMaxSuppression's queue compares scores only (the order of equal
    # ones is not defined), box_nms goes in row order; the converter scores by rank.
    rows = box_nms_rows(np.random.RandomState(1), 1, 300, classes=1)
    rows[..., 0] = 0
    rows[..., 1] = 0.5
    kwargs = dict(overlap_thresh=0.5, topk=-1, coord_start=2, score_index=1, id_index=0,
                  force_suppress=False)
    expected = mx.nd.contrib.box_nms(mx.nd.array(rows), **kwargs).asnumpy()
    assert 50 < (expected[0, :, 0] == 0).sum() < 250
    model = session(export_symbol(mx.sym.contrib.box_nms(mx.sym.var('data'), **kwargs),
                                  {'data': rows.shape}))
    np.testing.assert_array_equal(model.run(None, {'data': rows})[0], expected)


@pytest.mark.parametrize('opset', [13, 16])
@pytest.mark.parametrize('sample_ratio', [2, -1])
def test_roi_align_converter_pools_as_mxnet_without_the_half_pixel_shift(opset, sample_ratio):
    kwargs = dict(pooled_size=(7, 7), spatial_scale=0.25, sample_ratio=sample_ratio,
                  aligned=False)
    symbol = mx.sym.contrib.ROIAlign(mx.sym.var('data'), mx.sym.var('rois'), **kwargs)
    model = export_symbol(symbol, {'data': (2, 3, 20, 24), 'rois': (6, 5)}, opset)
    (node,) = [n for n in model.graph.node if n.op_type == 'RoiAlign']
    modes = [a.s for a in node.attribute if a.name == 'coordinate_transformation_mode']
    assert modes == ([] if opset < 16 else [b'output_half_pixel'])
    rng = np.random.RandomState(0)
    runner = session(model)
    for height, width in [(20, 24), (13, 31)]:
        data = rng.randn(2, 3, height, width).astype(np.float32)
        corner = rng.uniform(-8, 4 * width, (9, 2))
        rois = np.concatenate([rng.randint(-1, 2, (9, 1)), corner,
                               corner + rng.uniform(0, 50, (9, 2))], axis=1)
        rois[0, 0], rois[:, 3] = 1, rois[:, 1] + 0.5      # a RoI narrower than a cell
        rois = rois.astype(np.float32)
        expected = mx.nd.contrib.ROIAlign(mx.nd.array(data), mx.nd.array(rois),
                                          **kwargs).asnumpy()
        (actual,) = runner.run(None, {'data': data, 'rois': rois})
        pooled = rois[:, 0] >= 0
        np.testing.assert_allclose(actual[pooled], expected[pooled], rtol=1e-5, atol=1e-6)
        assert not actual[~pooled].any()  # skipped RoIs: zeros (MXNet leaves them unwritten)


def test_one_hot_converter_gives_no_class_to_an_index_outside_the_range():
    model = session(export_symbol(mx.sym.one_hot(mx.sym.var('data'), depth=5),
                                  {'data': (2, 3)}))
    index = np.array([[-1, 0, 4], [5, 2, -1]], np.float32)
    np.testing.assert_array_equal(model.run(None, {'data': index})[0],
                                  mx.nd.one_hot(mx.nd.array(index), depth=5).asnumpy())


@pytest.mark.parametrize('shape', [(-4, -1, 5, -2), (0, -3), (0, 0, -4, 4, 2), (-3, 0),
                                   (0, 0, -4, -1, 2), (-3, -2)])
def test_reshape_converter_follows_the_input_size(shape):
    model = session(export_symbol(mx.sym.reshape(mx.sym.var('data'), shape=shape),
                                  {'data': (10, 3, 8)}))
    for size in [(10, 3, 8), (20, 7, 8)]:
        data = np.arange(np.prod(size), dtype=np.float32).reshape(size)
        np.testing.assert_array_equal(model.run(None, {'data': data})[0],
                                      mx.nd.array(data).reshape(shape).asnumpy())


# ------------------------------------------------------------------ whole models
def assert_detect_rows(net, x, actual):
    """net.detect's detections (score >= 0.001, at most 100) are onnxruntime's first rows
    scoring at least 0.001 (as a set; detect may hold more rows than the raw K, which the
    raw contract never has: its first K are compared). Returns their number."""
    rows = actual[0].shape[1]
    detected = [o.asnumpy()[:, :rows] for o in net.detect(mx.nd.array(x), 0.001, 100)]
    first = np.flatnonzero(actual[1][0, :, 0] >= 0.001)[:100]
    return assert_same_detections(detected, [a[:, first] for a in actual])


@pytest.fixture(scope='module')
def golden_exports(tmp_path_factory):
    """The two golden models with 100 proposals, and their exports, built once."""
    cache = {}

    def make(name, published_file, post_nms=100):  # noqa: F811
        if (name, post_nms) not in cache:
            published_file(name)
            net = gluonseg.get_model(name, pretrained=True, rpn_test_post_nms=post_nms)
            net.hybridize()
            path = str(tmp_path_factory.mktemp('onnx') / (name + '.onnx'))
            export_onnx(net, path, input_shape=golden(name)['input'].shape)
            cache[name, post_nms] = net, path
        return cache[name, post_nms]
    return make


@pytest.mark.parametrize('name', GOLDEN)
def test_onnxruntime_gives_the_detections_of_the_golden_weights(
        name, golden_exports, published_file):  # noqa: F811
    net, path = golden_exports(name, published_file)
    x = golden(name)['input']
    runner = session(path)
    for image in (x, x[:, :, 5:204, 7:270]):  # two sizes, one session
        actual = runner.run(list(DETECTION_OUTPUTS), {'data': image})
        raw = [o.asnumpy() for o in net(mx.nd.array(image))]
        assert [a.shape for a in actual] == [r.shape for r in raw]
        assert assert_same_detections(raw, actual) > 20
        assert assert_detect_rows(net, image, actual) > 20


@pytest.mark.parametrize('name', GOLDEN)
def test_the_graph_declares_one_image_of_any_size_and_the_four_outputs(
        name, golden_exports, published_file):  # noqa: F811
    net, path = golden_exports(name, published_file)
    model = onnx.load(path)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    assert [(i.name, dims(i)) for i in model.graph.input] == [('data', [1, 3, 'height',
                                                                        'width'])]
    m = net.mask_size
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ('ids', [1, 100, 1]), ('scores', [1, 100, 1]), ('boxes', [1, 100, 4]),
        ('masks', [1, 100, m, m])]
    ops = {node.op_type for node in model.graph.node}
    assert {'NonMaxSuppression', 'RoiAlign', 'TopK', 'GatherND', 'ScatterND'} <= ops
    # Every node feeds the outputs: with one that does not (a converter's unused Slice),
    # onnxruntime 1.15.1's memory patterns (on by default) failed every run after the first.
    consumed = {name for node in model.graph.node for name in node.input}
    consumed.update(DETECTION_OUTPUTS)
    assert [n.name for n in model.graph.node if not consumed.intersection(n.output)] == []
    assert [o.version for o in model.opset_import] == [13]


def test_export_refuses_a_batch_and_an_old_opset(golden_exports, published_file,  # noqa: F811
                                                 tmp_path):
    net, _ = golden_exports(GOLDEN[0], published_file)
    with pytest.raises(ValueError, match=r'one image at a time: input_shape must be '
                                         r'\(1, 3, H, W\), got \(2, 3, 64, 64\)'):
        export_onnx(net, str(tmp_path / 'a.onnx'), input_shape=(2, 3, 64, 64))
    with pytest.raises(ValueError, match='opset 13 or later, got 12'):
        export_onnx(net, str(tmp_path / 'a.onnx'), input_shape=(1, 3, 64, 64), opset=12)


@pytest.mark.slow  # about 2.5 minutes: 1000 proposals (C4: stage 4 on each, twice)
@pytest.mark.parametrize('name', GOLDEN)
def test_published_proposal_count_gives_the_same_detections(name, published_file,  # noqa
                                                            tmp_path):
    published_file(name)
    net = gluonseg.get_model(name, pretrained=True)
    net.hybridize()
    x = golden(name)['input']
    path = export_onnx(net, str(tmp_path / 'model.onnx'), input_shape=(1, 3, 160, 192),
                       opset=16)
    runner = session(path)
    images = (x, x[:, :, 5:204, 7:270])
    outputs = [runner.run(list(DETECTION_OUTPUTS), {'data': image}) for image in images]
    del runner  # its memory, before MXNet's (3.2 GB at the peak otherwise)
    for image, actual in zip(images, outputs):
        assert actual[0].shape == (1, 1000, 1)
        assert assert_same_detections([o.asnumpy() for o in net(mx.nd.array(image))],
                                      actual) > 100
        assert assert_detect_rows(net, image, actual) == 100


@pytest.mark.parametrize('fpn', [
    pytest.param(False, marks=pytest.mark.slow),  # 13 s: stage 4 on every proposal
    True])
def test_a_trained_shapes_model_gives_the_same_detections(fpn, tmp_path):
    # scores at least 0.001 (instead of 0.01): after 2 epochs on 4 images the classes score low
    net = small_net(fpn=fpn, classes=ShapesInstance.CLASSES, score_thresh=0.001)
    instance_trainer(net, epochs=2).fit()
    path = export_onnx(net, str(tmp_path / 'shapes.onnx'), input_shape=(1, 3, 64, 64))
    runner = session(path)
    for size in [(64, 64), (72, 90)]:
        image = ShapesInstance('val', length=1, size=size, seed=2)[0][0]
        x = normalize_image(np.asarray(image))[None]
        actual = runner.run(list(DETECTION_OUTPUTS), {'data': x})
        raw = [o.asnumpy() for o in net(mx.nd.array(x))]
        assert assert_same_detections(raw, actual) > 0
        assert_detect_rows(net, x, actual)


# The R18 models are checked by the default tests above (golden weights); these are the
# other four published architectures, with golden-rule weights in the published layout.
DEEPER = [name for name in PUBLISHED if 'resnet18' not in name]


def tied_at_the_cut(outputs):
    """How many last rows of a full output (every row valid) share its last score: which of
    equally scored candidates fill those places is not defined (MXNet's ``topk`` takes them
    in std::partial_sort's order, ONNX's ``TopK`` in index order). Golden-rule weights give
    such ties: every RoI whose box-head features are all zero (ReLU) scores the same.
    0 when the last score is unique or the output is not full."""
    scores = np.asarray(outputs[1])[0, :, 0]
    tied = int((scores == scores[-1]).sum()) if scores[-1] >= 0 else 0
    return tied if tied > 1 else 0


@pytest.mark.slow  # about 18 s each, 1.5 to 2.3 GB (R101 FPN) at the peak
@pytest.mark.parametrize('name', DEEPER)
def test_every_published_architecture_exports_and_gives_its_detections(
        name, published_file, tmp_path):  # noqa: F811
    published_file(name)  # golden-rule arrays, anchors computed; loaded strictly below
    # 100 proposals, as the default tests above: with the published 1000 the R101 models
    # pass 3 GB in onnxruntime's run (C4: stage 4 on every proposal; FPN: 3.6 GB)
    net = gluonseg.get_model(name, pretrained=True, rpn_test_post_nms=100)
    assert saved_layout(net) == spec_layout(name)
    net.hybridize()
    x = golden(GOLDEN[0])['input']  # 224 x 288
    runner = session(export_onnx(net, str(tmp_path / 'model.onnx'), input_shape=x.shape))
    actual = runner.run(list(DETECTION_OUTPUTS), {'data': x})
    del runner  # its memory, before MXNet's
    raw = [o.asnumpy() for o in net(mx.nd.array(x))]
    assert [a.shape for a in actual] == [r.shape for r in raw]
    tied = tied_at_the_cut(raw)
    assert tied_at_the_cut(actual) == tied
    rows = raw[0].shape[1] - tied
    assert assert_same_detections([r[:, :rows] for r in raw],
                                  [a[:, :rows] for a in actual]) > 20
    # the tied rows: the same classes and score (their boxes: other proposals')
    np.testing.assert_array_equal(np.sort(actual[0][0, rows:, 0]),
                                  np.sort(raw[0][0, rows:, 0]))
    np.testing.assert_allclose(actual[1][0, rows:], raw[1][0, rows:], atol=1e-3)
