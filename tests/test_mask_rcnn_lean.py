"""Lean Mask R-CNN inference (MaskRCNN.detect): the kept detections of the raw forward,
with the mask head run on them only; checked on the golden weights against the raw path."""
import json
import types

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.model_zoo.rcnn import inference as lean_module
from gluonseg.model_zoo.rcnn import mask_rcnn
from gluonseg.model_zoo.rcnn.heads import MaskHead
from gluonseg.model_zoo.optimize import mask_rcnn as optimized_module
from gluonseg.model_zoo.optimize import OptimizedMaskRCNN, SubpixelMaskFeatures
from gluonseg.model_zoo.rcnn.inference import LeanDetector
from spec_utils import golden
from test_mask_rcnn import published_file  # noqa: F401,F811  (fixture)

GOLDEN = ['mask_rcnn_resnet18_v1b_coco', 'mask_rcnn_fpn_resnet18_v1b_coco']


def assert_rows_equal(raw, lean, rows, rtol=1e-5):
    """The first ``rows`` rows of the raw outputs equal the lean ones (``rtol``: of the
    scores and boxes)."""
    ids, scores, boxes, masks = [o.asnumpy()[0] for o in raw]
    l_ids, l_scores, l_boxes, l_masks = [o.asnumpy()[0] for o in lean]
    np.testing.assert_array_equal(l_ids[:rows], ids[:rows])
    np.testing.assert_allclose(l_scores[:rows], scores[:rows], rtol=rtol)
    np.testing.assert_allclose(l_boxes[:rows], boxes[:rows], rtol=rtol, atol=1e-3)
    np.testing.assert_allclose(l_masks[:rows], masks[:rows], atol=1e-4)


def fused_nodes(block, op):
    """The nodes of MXNet operator ``op`` in ``block``'s cached (optimized) graph."""
    nodes = json.loads(block._cached_graph[1].tojson())['nodes']
    return [n for n in nodes if n['op'] == op]


def quantized(node):
    return node.get('attrs', {}).get('quantized', '').lower() == 'true'


def check_lean_against_raw(name, published_file, **kwargs):  # noqa: F811
    published_file(name)
    net = gluonseg.get_model(name, pretrained=True, **kwargs)
    net.hybridize()
    x = mx.nd.array(golden(name)['input'])
    raw = net(x)
    lean = net.detect(x, score_thresh=0.0, max_dets=100)
    assert [o.shape for o in lean] == [(1, 100, 1), (1, 100, 1), (1, 100, 4),
                                       (1, 100, 14, 14)]
    assert_rows_equal(raw, lean, 100)
    return net, x, raw, lean


@pytest.mark.parametrize('name', GOLDEN)
def test_lean_detections_are_the_raw_ones_on_the_golden_weights(name, published_file):  # noqa
    # 150 proposals instead of the published 1000 keep this under a minute (the raw C4 path
    # runs stage 4 on every proposal twice); the full setting is the slow test below.
    net, x, raw, _ = check_lean_against_raw(name, published_file, rpn_test_post_nms=150)
    # a score threshold keeps a prefix of the rows; the rest is empty
    thresh = float(raw[1].asnumpy()[0, 30, 0])
    ids, scores, boxes, masks = [o.asnumpy()[0] for o in net.detect(x, thresh, 100)]
    kept = int((raw[1].asnumpy()[0, :100, 0] >= thresh).sum())
    assert kept >= 31 and (scores[:kept, 0] >= thresh).all()  # rows 0..30 at least
    assert (ids[kept:] == -1).all() and (scores[kept:] == -1).all() and not masks[kept:].any()
    assert_rows_equal(raw, [mx.nd.array(a[None]) for a in (ids, scores, boxes, masks)], kept)


@pytest.fixture(scope='module')
def small_fpn():
    mx.random.seed(3)
    net = mask_rcnn(18, 'v1b', fpn=True, classes=('a', 'b'), rpn_test_post_nms=60,
                    fpn_channels=32, rpn_channels=32, box_units=64, mask_channels=32)
    net.initialize(mx.init.Xavier())
    return net


def test_a_batch_gives_each_images_own_lean_detections(small_fpn):
    rng = np.random.RandomState(4)
    images = [mx.nd.array(rng.randn(1, 3, 64, 80)) for _ in range(2)]
    batch = [o.asnumpy() for o in small_fpn.detect(mx.nd.concat(*images, dim=0), 0.0, 20)]
    for i, image in enumerate(images):
        for one, both in zip(small_fpn.detect(image, 0.0, 20), batch):
            np.testing.assert_allclose(one.asnumpy()[0], both[i], rtol=1e-4, atol=1e-4)


def test_predict_lean_and_raw_give_the_same_instances(small_fpn):
    image = np.random.RandomState(5).randint(0, 256, (50, 70, 3)).astype(np.uint8)
    kwargs = dict(short=64, max_size=100, score_thresh=0.0, max_dets=15)
    lean = small_fpn.predict(image, **kwargs)
    raw = small_fpn.predict(image, raw=True, **kwargs)
    assert len(lean) == len(raw) == 15
    np.testing.assert_array_equal(lean.class_ids, raw.class_ids)
    np.testing.assert_allclose(lean.scores, raw.scores, rtol=1e-5)
    np.testing.assert_allclose(lean.boxes, raw.boxes, atol=1e-3)
    assert (lean.masks != raw.masks).mean() < 1e-3  # probabilities equal to ~1e-6


@pytest.mark.slow  # minutes: the raw C4 path runs stage 4 on 1000 proposals twice
@pytest.mark.parametrize('name', GOLDEN)
def test_lean_detections_match_gluoncvs_golden_rows_with_1000_proposals(
        name, published_file):  # noqa: F811
    _, _, _, lean = check_lean_against_raw(name, published_file)
    ref = golden(name)  # the raw path is checked against these as a set
    np.testing.assert_allclose(lean[1].asnumpy()[0, :, 0], ref['scores'][0, :, 0], rtol=1e-4)


@pytest.mark.benchmark
def test_benchmark_script_times_the_paths_and_stages(tmp_path, capsys):
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'scripts', 'benchmark', 'mask_rcnn.py')
    spec = importlib.util.spec_from_file_location('bench_mask_rcnn', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(['--models', 'mask_rcnn_fpn_resnet18_v1b_coco', '--sizes', '96x128',
                       '64', '--warmup', '0', '--repeat', '1', '--rpn-test-post-nms', '30',
                       '--max-dets', '10', '--paths', 'raw', 'lean', 'fused',
                       '--csv', str(tmp_path / 'm.csv'), '--in-process'])
    assert [(r['height'], r['width'], r['path']) for r in rows] == [
        (96, 128, 'raw'), (96, 128, 'lean'), (96, 128, 'fused'),
        (64, 64, 'raw'), (64, 64, 'lean'), (64, 64, 'fused')]
    for row in rows:
        assert row['total_s'] > 0
        if row['path'] != 'raw':
            assert 0 < row['dets'] <= 10 and row['speedup_vs_raw'].endswith('x')
            shares = [row['%s_share' % s] for s in bench.STAGES]
            assert all(0 <= s <= 1 for s in shares) and abs(sum(shares) - 1) < 1e-6
            # the stages of one run add up to its total (the paste is timed separately)
            stages = sum(row['%s_s' % s] for s in bench.STAGES[:-1])
            assert abs(stages - row['total_s']) < 1e-6
    assert (tmp_path / 'm.csv').read_text().splitlines()[0].startswith('model,height')
    assert 'backbone' in capsys.readouterr().out
    # By default each path runs in a process of its own, with the same kind of row.
    isolated = bench.main(['--models', 'mask_rcnn_fpn_resnet18_v1b_coco', '--sizes', '64',
                           '--warmup', '0', '--repeat', '1', '--rpn-test-post-nms', '30',
                           '--max-dets', '10', '--paths', 'raw', 'fused'])
    assert [r['path'] for r in isolated] == ['raw', 'fused']
    assert set(isolated[1]) == set(rows[5]) and 0 < isolated[1]['dets'] <= 10
    assert isolated[1]['speedup_vs_raw'].endswith('x')
    assert 'a process per model, size and path' in capsys.readouterr().out
    with pytest.raises(RuntimeError, match='mask_rcnn_no_such_model fused at 64 failed'):
        bench.main(['--models', 'mask_rcnn_no_such_model', '--sizes', '64', '--paths',
                    'fused'])


@pytest.mark.parametrize('name', GOLDEN)
def test_fused_detections_are_the_lean_ones_on_the_golden_weights(name, published_file):
    published_file(name)
    net = gluonseg.get_model(name, pretrained=True, rpn_test_post_nms=150)
    net.hybridize()
    x = mx.nd.array(golden(name)['input'])
    lean = net.detect(x, score_thresh=0.0, max_dets=100)
    fast = gluonseg.optimize(net)
    assert fast.dtype == 'float32' and fast.classes == net.classes
    # BatchNorm folded into the weights rounds differently: scores agree to 4e-5 (FPN)
    assert_rows_equal(lean, fast.detect(x, score_thresh=0.0, max_dets=100), 100, rtol=1e-4)
    # the network is not modified: its own lean path gives the same detections again
    assert_rows_equal(lean, net.detect(x, score_thresh=0.0, max_dets=100), 100)


def test_fused_predict_gives_the_networks_instances(small_fpn):
    image = np.random.RandomState(5).randint(0, 256, (50, 70, 3)).astype(np.uint8)
    kwargs = dict(short=64, max_size=100, score_thresh=0.0, max_dets=15)
    small_fpn.hybridize()
    try:
        fast = gluonseg.optimize(small_fpn)
        mine, theirs = fast.predict(image, **kwargs), small_fpn.predict(image, **kwargs)
    finally:
        small_fpn.hybridize(False)
    np.testing.assert_array_equal(mine.class_ids, theirs.class_ids)
    np.testing.assert_allclose(mine.boxes, theirs.boxes, atol=1e-3)
    assert (mine.masks != theirs.masks).mean() < 1e-3
    with pytest.raises(ValueError, match='raw=True'):
        fast.predict(image, raw=True)


def test_int8_quantizes_the_backbone_calibrated_on_images(published_file):
    """int8 is opt-in: it changes the detections. On the golden (synthetic, untrained)
    weights the C4 backbone features stay within ~4% mean relative error of float32 (the
    detections, whose scores all lie near 0.12 there, reorder; see docs/deploy.md)."""
    name = 'mask_rcnn_resnet18_v1b_coco'
    published_file(name)
    net = gluonseg.get_model(name, pretrained=True, rpn_test_post_nms=50)
    net.hybridize()
    data = golden(name)['input']
    calib = [mx.nd.array(np.random.RandomState(0).normal(data.mean(), data.std(), data.shape))]
    x = mx.nd.array(data)
    fast = gluonseg.optimize(net, dtype='int8', calib_data=calib)
    assert fast.dtype == 'int8'
    ids, scores, boxes, masks = fast.detect(x, 0.0, 20)
    assert ids.shape == (1, 20, 1) and masks.shape == (1, 20, 14, 14)
    assert (ids.asnumpy() >= 0).all() and np.isfinite(boxes.asnumpy()).all()
    with mx.autograd.predict_mode():
        ref, out = net.features(x).asnumpy(), fast.features(x).asnumpy()
    assert 1e-3 < np.abs(out - ref).mean() / np.abs(ref).mean() < 0.1
    # All the RPN's convs run in int8: kept in float32, the objectness and box convs and the
    # float copy of the 3x3 conv's output they read took 80 ms of FPN ResNet-50's RPN.
    # The RPN head has three convolutions (3x3, objectness, boxes).
    convs = fused_nodes(fast.rpn, '_sg_mkldnn_conv')
    assert len(convs) == 3 and all(quantized(n) for n in convs), convs
    with mx.autograd.predict_mode():  # the objectness of every anchor, before NMS
        features = net.features(x)
        ref_scores = net.rpn.proposal_candidates(mx.nd, x, features)[..., 0].asnumpy()
        scores = fast.rpn(x, features)[..., 0].asnumpy()
    assert 0 < np.abs(scores - ref_scores).mean() < 1e-2
    with pytest.raises(ValueError, match='calibrated on images'):
        gluonseg.optimize(net, dtype='int8', calib_mode='none')
    with pytest.raises(ValueError, match='calib_data'):
        gluonseg.optimize(net, dtype='int8')
    with pytest.raises(ValueError, match="'float32' or 'int8'"):
        gluonseg.optimize(net, dtype='bfloat16')


def test_fpn_box_heads_average_pool_runs_in_the_roi_pooling():
    """FPN ResNet-50/101 box heads start with a 3x3/2 average pool, which the lean and fused
    paths do inside the RoI pooling: the detections stay the raw forward's."""
    mx.random.seed(4)
    net = mask_rcnn(50, 'v1b', fpn=True, classes=('a', 'b'), rpn_test_post_nms=60,
                    fpn_channels=16, rpn_channels=16, box_units=32, mask_channels=16)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    head, pooled = lean_module.box_head(net)
    assert pooled and len(head) == len(net.box_features) - 1 and head[0] is net.box_features[1]
    x = mx.nd.array(np.random.RandomState(8).randn(1, 3, 96, 128))
    raw = net(x)
    assert_rows_equal(raw, net.detect(x, 0.0, 20), 20)
    assert_rows_equal(raw, gluonseg.optimize(net).detect(x, 0.0, 20), 20, rtol=1e-4)
    net.roi_align.gluoncv_quirk = True  # GluonCV's RoIAlign: the whole head after it
    assert lean_module.box_head(net) == (net.box_features, False)


def test_int8_fpn_quantizes_the_box_fcs_and_keeps_the_predictors_float(small_fpn):
    """FPN's box head: its two FCs run in int8 (C4's is stage 4, quantized too); the
    class and box predictors after them stay float32."""
    x = mx.nd.array(np.random.RandomState(7).randn(1, 3, 64, 80))
    small_fpn.hybridize()
    try:
        fast = gluonseg.optimize(small_fpn, dtype='int8', calib_data=[x * 0.9])
        with mx.autograd.predict_mode():
            pooled = small_fpn.roi_align(mx.nd.array([[0, 4, 4, 40, 30], [0, 1, 1, 60, 50]]),
                                         *small_fpn.features(x)[:4])
            ref = small_fpn.box_features(pooled).asnumpy()
        out = fast.box_features(pooled).asnumpy()
        ids = fast.detect(x, 0.0, 5)[0].asnumpy()
    finally:
        small_fpn.hybridize(False)
    # The FPN box head's two fully connected layers.
    fcs = fused_nodes(fast.box_features, '_sg_mkldnn_fully_connected')
    assert len(fcs) == 2 and all(quantized(n) for n in fcs), fcs
    assert 0 < np.abs(out - ref).mean() / np.abs(ref).mean() < 0.1
    assert fast.class_predictor is small_fpn.class_predictor
    assert (ids >= 0).all()


def test_heads_run_on_the_valid_proposals_and_the_kept_detections_only(small_fpn):
    x = mx.nd.array(np.random.RandomState(7).randn(1, 3, 64, 80))
    detector = LeanDetector(small_fpn)
    rows = {}

    def spy(part, block):
        def run(pooled, *args):
            rows[part] = pooled.shape[0]
            return block(pooled, *args)
        return run
    detector.box_features = spy('box', detector.box_features)
    detector.class_mask_logits = spy('mask', detector.class_mask_logits)
    features = detector.backbone(x)
    proposals, counts = detector.propose(x, features)
    assert counts.tolist() == [60]
    proposals[:, 25:] = -1  # as when the RPN keeps fewer than its 60: padding rows
    counts = np.array([25])
    ids, scores, _, _ = detector.detect_boxes(features, proposals, counts, 0.0, 100)
    fourth_best = float(np.sort(scores.asnumpy().ravel())[-4])
    for score_thresh, max_dets in ((0.0, 7), (fourth_best, 100)):
        rows.clear()
        ids, scores, boxes, kept = detector.detect_boxes(features, proposals, counts,
                                                         score_thresh, max_dets)
        detector.detect_masks(features, ids, boxes, kept)
        assert rows['box'] == 25
        kept_rows = int((ids.asnumpy() >= 0).sum())
        assert kept_rows == sum(k for _, k in kept) == (7 if max_dets == 7 else 4)
        assert rows['mask'] == kept_rows
        assert (scores.asnumpy()[ids.asnumpy() >= 0] >= score_thresh).all()


def test_a_single_kept_detection_and_a_single_roi(small_fpn):
    x = mx.nd.array(np.random.RandomState(6).randn(1, 3, 64, 80))
    small_fpn.hybridize()
    try:
        ids, scores, boxes, masks = [o.asnumpy() for o in small_fpn.detect(x, 0.0, 1)]
        roi = mx.nd.array([[0, 4, 4, 40, 30]])
        features = small_fpn.features(x)
        pooled = small_fpn.roi_align(roi, *features[:4]).asnumpy()
    finally:
        small_fpn.hybridize(False)
    assert ids.shape == (1, 1, 1) and ids[0, 0, 0] >= 0 and masks[0, 0].max() > 0
    # one RoI pools as the first of two (the first RoI is re-pooled on its own)
    two = small_fpn.roi_align(mx.nd.array([[0, 4, 4, 40, 30], [0, 1, 1, 9, 9]]),
                              *small_fpn.features(x)[:4]).asnumpy()
    np.testing.assert_allclose(pooled[0], two[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('num_convs', [0, 2], ids=['c4-head', 'fpn-head'])
def test_subpixel_mask_head_gives_each_rois_class_logits(num_convs):
    """The optimized paths' mask head (transposed conv as a 1x1 conv to sub-pixels, the
    predictor applied for each RoI's class only) equals MaskHead's logits of that class."""
    mx.random.seed(num_convs)
    head = MaskHead(5, channels=8, num_convs=num_convs, in_channels=6)
    head.initialize(mx.init.Normal(0.5))
    for param in head.collect_params('.*bias').values():
        param.set_data(mx.nd.random.normal(shape=param.shape))
    net = types.SimpleNamespace(mask=head)
    pooled = mx.nd.random.normal(shape=(7, 6, 4, 4))
    class_ids = mx.nd.array([0, 4, 2, 2, 1, 3, 0])
    expected = LeanDetector.class_mask_logits(types.SimpleNamespace(mask=head), pooled,
                                              class_ids).asnumpy()
    assert expected.shape == (7, 8, 8)
    for fused in (False, True):
        features = SubpixelMaskFeatures(head)
        if fused:
            features = optimized_module._fused(features, [pooled])
        optimized = types.SimpleNamespace(mask=features, net=net)
        got = OptimizedMaskRCNN.class_mask_logits(optimized, pooled, class_ids).asnumpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
