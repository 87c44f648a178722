"""The Mask R-CNN building blocks on hand-made inputs whose answers are known."""
import inspect

import mxnet as mx
import numpy as np
import pytest

from gluonseg.model_zoo.rcnn import anchors as anchors_module
from gluonseg.model_zoo.rcnn import (AnchorGenerator, BoxCoder, DetectionPostProcessor,
                                     FeaturePyramid, FPNFeatures, MaskHead, ProposalLayer,
                                     RoIAlignExtractor, box_iou, fpn_box_features, fpn_levels,
                                     grid_anchors, nms, paste_masks, reference_anchors,
                                     select_class_masks)
from gluonseg.model_zoo.resnetv1b import resnet_v1b

# py-faster-rcnn's anchors for base 16, scales (8, 16, 32), ratios (0.5, 1, 2).
DETECTRON_ANCHORS = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
                     [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
                     [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]]


# ---------------------------------------------------------------- anchors

def test_reference_anchors_equal_detectrons_classic_set():
    got = reference_anchors(stride=16, sizes=(128, 256, 512), ratios=(0.5, 1, 2))
    np.testing.assert_array_equal(got, DETECTRON_ANCHORS)


def test_stride_4_window_rounds_differently_from_a_16_pixel_window():
    # size 32 on P2: 4x4 window centred at 1.5; ratio 0.5 -> 6x3 window -> 48x24 anchor
    got = reference_anchors(stride=4, sizes=(32,), ratios=(0.5, 1))
    np.testing.assert_array_equal(got, [[-22, -10, 25, 13], [-14, -14, 17, 17]])
    # the same size on a 16-pixel window is 46x24 (23x12 window times 2)
    np.testing.assert_array_equal(reference_anchors(16, (32,), (0.5,)), [[-15, -4, 30, 19]])


def test_grid_shifts_each_cell_by_the_stride():
    grid = grid_anchors(16, (3, 4), sizes=(32,), ratios=(1,))
    assert grid.shape == (1, 1, 3, 4, 4) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid[0, 0, 0, 0], [-8, -8, 23, 23])
    np.testing.assert_array_equal(grid[0, 0, 1, 2], [-8 + 32, -8 + 16, 23 + 32, 23 + 16])


def test_anchor_code_has_no_removed_numpy_aliases():
    # np.float / np.int were removed in NumPy 1.24; GluonCV's anchors crash there.
    source = inspect.getsource(anchors_module)
    for alias in ('np.float)', 'np.float,', 'np.int)', 'np.int,', 'np.bool'):
        assert alias not in source


def test_anchor_generator_crops_the_grid_to_the_feature_map_row_major():
    gen = AnchorGenerator(16, alloc_size=(8, 8), scales=(2, 4), ratios=(1,))
    gen.initialize()
    out = gen(mx.nd.zeros((1, 5, 3, 2))).asnumpy()
    assert out.shape == (1, 3 * 2 * 2, 4)
    grid = grid_anchors(16, (8, 8), sizes=(32, 64), ratios=(1,))
    np.testing.assert_array_equal(out[0], grid[0, 0, :3, :2].reshape(-1, 4))
    # row 1 of the map, column 0, anchor 1 (size 64)
    np.testing.assert_array_equal(out[0, (1 * 2 + 0) * 2 + 1], [-24, -24 + 16, 39, 39 + 16])
    with pytest.raises(ValueError, match='exceeds the 8x8 precomputed anchor grid'):
        gen(mx.nd.zeros((1, 5, 9, 2)))


def test_anchors_are_a_saved_constant():
    gen = AnchorGenerator(16, alloc_size=(4, 4))
    params = gen._collect_params_with_prefix()
    assert list(params) == ['anchors'] and params['anchors'].shape == (1, 1, 4, 4, 60)
    assert params['anchors'].grad_req == 'null'


def test_anchor_grids_are_freed_with_their_generator():
    # Gluon's get_constant registers an initializer per constant in MXNet's global registry,
    # which keeps its array forever; each FPN model built would leak its anchor grids.
    registry = mx.registry._REGISTRY[mx.init.Initializer]
    before = len(registry)
    for _ in range(3):
        gen = AnchorGenerator(16, alloc_size=(4, 4))
        gen.initialize()
        grid = gen.anchors.data().asnumpy()
    assert len(registry) == before
    np.testing.assert_array_equal(grid, grid_anchors(16, (4, 4), (32, 64, 128, 256, 512),
                                                     (0.5, 1, 2)))
    gen.initialize(mx.init.Constant(7), force_reinit=True)  # a re-initialization keeps them
    np.testing.assert_array_equal(gen.anchors.data().asnumpy(), grid)


# ---------------------------------------------------------------- boxes, coder, NMS

def test_box_coder_known_offsets_and_round_trip():
    coder = BoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    ref = mx.nd.array([[0, 0, 10, 10]])
    box = mx.nd.array([[5, 5, 15, 25]])  # centre moves by (0.5w, 1.0h), height x2
    deltas = coder.encode(mx.nd, box, ref).asnumpy()
    np.testing.assert_allclose(deltas, [[5.0, 10.0, 0.0, np.log(2) / 0.2]], rtol=1e-6)
    rng = np.random.RandomState(0)
    xy = rng.uniform(0, 100, (50, 2))
    refs = mx.nd.array(np.hstack([xy, xy + rng.uniform(1, 60, (50, 2))]))
    boxes = mx.nd.array(np.hstack([xy + 3, xy + rng.uniform(2, 80, (50, 2))]))
    back = coder.decode(mx.nd, coder.encode(mx.nd, boxes, refs), refs)
    np.testing.assert_allclose(back.asnumpy(), boxes.asnumpy(), atol=1e-3)


def test_box_coder_clips_log_scale_offsets():
    ref = mx.nd.array([[0, 0, 10, 10]])
    huge = mx.nd.array([[0, 0, 100, 100]])
    clipped = BoxCoder(clip=4.42).decode(mx.nd, huge, ref).asnumpy()[0]
    np.testing.assert_allclose(clipped[2] - clipped[0], 10 * np.exp(4.42), rtol=1e-5)
    assert np.isinf(BoxCoder().decode(mx.nd, huge, ref).asnumpy()).any()
    with pytest.raises(ValueError, match='4 stds'):
        BoxCoder(stds=(1, 1))


def test_iou_of_half_overlapping_squares_is_one_third():
    iou = box_iou(mx.nd, mx.nd.array([[0, 0, 10, 10]]),
                  mx.nd.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])).asnumpy()
    np.testing.assert_allclose(iou, [[1 / 3, 0, 1]], rtol=1e-6)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class():
    # rows: class, score, box. B overlaps A with IoU 0.6; C is elsewhere; D is B in class 1
    rows = mx.nd.array([[[0, .9, 0, 0, 10, 10],
                         [0, .8, 0, 0, 10, 6],
                         [0, .7, 50, 50, 60, 60],
                         [1, .6, 0, 0, 10, 6]]])
    out = nms(mx.nd, rows, 0.5, score_index=1, coord_start=2, id_index=0,
              force_suppress=False).asnumpy()[0]
    np.testing.assert_allclose(out[:3, 1], [.9, .7, .6])
    assert (out[3] == -1).all()
    everything = nms(mx.nd, rows, 0.5, score_index=1, coord_start=2, id_index=0,
                     force_suppress=True).asnumpy()[0]
    np.testing.assert_allclose(everything[:2, 1], [.9, .7])


# ---------------------------------------------------------------- proposals

def test_proposals_decode_clip_sort_suppress_and_pad():
    layer = ProposalLayer(nms_thresh=0.7, test_pre_nms=10, test_post_nms=4, min_size=4)
    anchors = mx.nd.array([[[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 40, 40], [0, 0, 2, 2]]])
    logits = mx.nd.array([[[2.0], [1.0], [0.5], [3.0]]])
    deltas = mx.nd.zeros((1, 4, 4))
    image = mx.nd.zeros((1, 3, 32, 32))
    candidates = layer.candidates(mx.nd, anchors, logits, deltas, image)
    scores, boxes = layer.select(mx.nd, candidates)
    scores, boxes = scores.asnumpy()[0, :, 0], boxes.asnumpy()[0]
    sigmoid = 1 / (1 + np.exp(-np.array([2.0, 0.5])))
    # the 3x3 anchor is below min_size 4; the second overlaps the first (IoU 0.68 < 0.7
    # keeps it? no: 81/119 = 0.68 -> kept); the third is clipped to the 32x32 image
    np.testing.assert_allclose(boxes[0], [0, 0, 9, 9])
    np.testing.assert_allclose(boxes[1], [1, 1, 10, 10])
    np.testing.assert_allclose(boxes[2], [20, 20, 32, 32])
    np.testing.assert_allclose(scores[[0, 2]], sigmoid, rtol=1e-6)
    assert (boxes[3] == -1).all() and scores[3] == -1


def test_proposals_have_post_nms_rows_even_with_fewer_anchors():
    layer = ProposalLayer(test_post_nms=6)
    anchors = mx.nd.array([[[0, 0, 9, 9], [30, 30, 39, 39]]])
    candidates = layer.candidates(mx.nd, anchors, mx.nd.zeros((1, 2, 1)),
                                  mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 3, 64, 64)))
    scores, boxes = layer.select(mx.nd, candidates)
    assert boxes.shape == (1, 6, 4) and (boxes.asnumpy()[0, 2:] == -1).all()


# ---------------------------------------------------------------- RoIAlign

def _rois_of_side(sides):
    """RoIs at the origin whose width/height, counted with +1, are ``sides``."""
    return mx.nd.array([[0, 0, 0, s - 1, s - 1] for s in sides])


def test_fpn_levels_of_boxes_of_known_size():
    levels = fpn_levels(mx.nd, _rois_of_side([224, 112, 448, 56, 10, 2000, 223, 111]))
    np.testing.assert_array_equal(levels.asnumpy(), [4, 3, 5, 2, 2, 5, 3, 2])


@pytest.mark.parametrize('hybridize', [False, True])
def test_roi_align_on_constant_maps_returns_the_constant_of_the_assigned_level(hybridize):
    strides = (4, 8, 16, 32)
    features = [mx.nd.full((1, 2, 256 // s, 256 // s), float(level))
                for s, level in zip(strides, (2, 3, 4, 5))]
    extractor = RoIAlignExtractor(7, strides)
    if hybridize:  # a reused buffer once leaked NaN into skipped RoIs here
        extractor.hybridize()
    rois = mx.nd.array([[0, 10, 10, 60, 60],     # side 51 -> P2
                        [0, 20, 20, 139, 139],   # side 120 -> P3
                        [0, 0, 0, 223, 223],     # side 224 -> P4
                        [0, 0, 0, 250, 250]])    # side 251 -> P4
    for _ in range(2):
        pooled = extractor(rois, *features).asnumpy()
        assert pooled.shape == (4, 2, 7, 7)
        np.testing.assert_allclose(pooled.reshape(4, -1).max(1), [2, 3, 4, 4])
        np.testing.assert_allclose(pooled.reshape(4, -1).min(1), [2, 3, 4, 4])
    single = RoIAlignExtractor(14, (16,))
    out = single(mx.nd.array([[0, 3, 5, 40, 30]]), mx.nd.full((1, 3, 8, 8), 7.0)).asnumpy()
    assert out.shape == (1, 3, 14, 14) and np.allclose(out, 7.0)
    if not hybridize:
        with pytest.raises(ValueError, match='has 4 strides but got 1'):
            extractor(rois, features[0])


def test_first_roi_is_not_corrupted_by_skipped_rois_unless_asked_to():
    # ROIAlign writes a zero at element n for each skipped RoI n: GluonCV's first RoI has
    # holes; gluonseg re-pools it.
    features = [mx.nd.full((1, 2, 512 // s, 512 // s), 1.0) for s in (4, 8, 16, 32)]
    rois = mx.nd.array([[0, 0, 0, 9, 9]] + [[0, 0, 0, 499, 499]] * 5)  # P2, then P5 x5
    fixed = RoIAlignExtractor(7, (4, 8, 16, 32))(rois, *features).asnumpy()
    np.testing.assert_array_equal(fixed, np.ones_like(fixed))
    quirk = RoIAlignExtractor(7, (4, 8, 16, 32), gluoncv_quirk=True)(rois, *features)
    np.testing.assert_array_equal(quirk.asnumpy()[0, 0, 0, :7], [1, 0, 0, 0, 0, 0, 1])


# ---------------------------------------------------------------- FPN

def _identity_pyramid(width=4):
    fpn = FeaturePyramid([width] * 4, channels=width)
    fpn.initialize()
    eye1 = np.eye(width).reshape(width, width, 1, 1)
    eye3 = np.zeros((width, width, 3, 3))
    eye3[:, :, 1, 1] = np.eye(width)
    for name, param in fpn._collect_params_with_prefix().items():
        if name.endswith('bias'):
            param.set_data(mx.nd.zeros(param.shape))
        else:
            param.set_data(mx.nd.array(eye1 if 'lat' in name else eye3))
    return fpn


def test_fpn_top_down_sum_nearest_upsampling_crop_and_p6_on_the_lateral():
    fpn = _identity_pyramid()
    rng = np.random.RandomState(1)
    # odd sizes: the upsampled map is one row/column too large and gets cropped
    shapes = [(25, 19), (13, 10), (7, 5), (4, 3)]
    c2, c3, c4, c5 = [rng.randn(1, 4, h, w).astype(np.float32) for h, w in shapes]
    p2, p3, p4, p5, p6 = [p.asnumpy() for p in fpn(*map(mx.nd.array, (c2, c3, c4, c5)))]

    def up(x, like):
        return x.repeat(2, axis=2).repeat(2, axis=3)[:, :, :like.shape[2], :like.shape[3]]

    np.testing.assert_allclose(p5, c5, atol=1e-6)
    np.testing.assert_allclose(p4, c4 + up(c5, c4), atol=1e-5)
    np.testing.assert_allclose(p3, c3 + up(c4 + up(c5, c4), c3), atol=1e-5)
    assert p2.shape[2:] == (25, 19)
    np.testing.assert_allclose(p6, c5[:, :, ::2, ::2], atol=1e-6)  # stride-2 3x3, centre tap


def test_fpn_features_save_under_gluoncv_symbol_names_and_load_back(tmp_path):
    features = FPNFeatures(resnet_v1b(18, 'v1b', dilated=False), 'resnetv1b_', channels=8)
    names = features.symbol_names()
    assert names['body.conv1.weight'] == 'resnetv1b_conv0_weight'
    assert names['body.bn1.running_var'] == 'resnetv1b_batchnorm0_running_var'
    assert names['body.layer1.1.conv2.weight'] == 'resnetv1b_layers1_conv3_weight'
    assert names['body.layer2.0.downsample.0.weight'] == 'resnetv1b_down2_conv0_weight'
    assert names['body.layer4.1.bn2.gamma'] == 'resnetv1b_layers4_batchnorm3_gamma'
    assert names['fpn.P6_conv1.bias'] == 'P6_conv1_bias'
    assert len(set(names.values())) == len(names)
    # inside a model, as in Mask R-CNN's ``features``
    model = mx.gluon.nn.HybridSequential()
    model.add(features)
    model.initialize()
    path = str(tmp_path / 'fpn.params')
    model.save_parameters(path)
    saved = mx.nd.load(path)
    assert set(saved) == {'0.' + name for name in names.values()}
    assert saved['0.P2_conv_lat_weight'].shape == (8, 64, 1, 1)
    again = mx.gluon.nn.HybridSequential()
    again.add(FPNFeatures(resnet_v1b(18, 'v1b', dilated=False), 'resnetv1b_', channels=8))
    again.load_parameters(path)
    np.testing.assert_array_equal(again[0].body.layer3[1].conv1.weight.data().asnumpy(),
                                  saved['0.resnetv1b_layers3_conv2_weight'].asnumpy())


def test_deep_stem_symbol_names_count_the_stem_norms_first():
    names = FPNFeatures(resnet_v1b(50, 'v1d', dilated=False), 'resnetv1d_').symbol_names()
    assert names['body.conv1.6.weight'] == 'resnetv1d_conv2_weight'
    assert names['body.bn1.gamma'] == 'resnetv1d_batchnorm2_gamma'
    assert names['body.layer1.0.downsample.1.weight'] == 'resnetv1d_down1_conv0_weight'
    assert names['body.layer1.2.conv3.weight'] == 'resnetv1d_layers1_conv8_weight'


# ---------------------------------------------------------------- heads, post-processing

def test_mask_head_doubles_the_size_and_class_selection_picks_the_channel():
    for convs, keys in ((0, {'deconv.weight'}), (2, {'deconv.0.weight', 'deconv.4.weight'})):
        head = MaskHead(5, channels=8, num_convs=convs, in_channels=6)
        assert keys <= set(head._collect_params_with_prefix())
        head.initialize()
        assert head(mx.nd.ones((3, 6, 7, 7))).shape == (3, 5, 14, 14)
    logits = mx.nd.array(np.arange(2 * 5 * 4).reshape(1, 2, 5, 2, 2))
    picked = select_class_masks(mx.nd, logits, mx.nd.array([[[3], [-1]]]), 5).asnumpy()
    np.testing.assert_array_equal(picked[0, 0], logits.asnumpy()[0, 0, 3])
    assert (picked[0, 1] == 0).all()  # no class: logit 0, probability 0.5


def test_fpn_box_features_pool_14_to_7_before_the_dense_layers():
    head = fpn_box_features(pool=True, in_units=2 * 7 * 7)
    head.initialize()
    assert head(mx.nd.ones((3, 2, 14, 14))).shape == (3, 1024)
    assert set(head._collect_params_with_prefix()) == {'1.weight', '1.bias', '3.weight',
                                                       '3.bias'}


def test_post_processing_thresholds_suppresses_per_class_and_ranks():
    proposals = mx.nd.array([[[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]])
    # class probabilities (background, class 0, class 1) given as log-probability logits
    probs = np.array([[0.1, 0.7, 0.2], [0.1, 0.6, 0.3], [0.095, 0.005, 0.9]])
    post = DetectionPostProcessor(2, max_dets=4)
    ids, scores, boxes = [o.asnumpy()[0] for o in post(
        mx.nd, mx.nd.array(np.log(probs)[None]), mx.nd.zeros((1, 3, 8)), proposals)]
    # class 0: P1 overlaps P0 (IoU 0.68) and goes; P2's 0.005 is below 0.01.
    # class 1: P0 overlaps the better P1 and goes.
    np.testing.assert_array_equal(ids[:, 0], [1, 0, 1, -1])
    np.testing.assert_allclose(scores[:3, 0], [0.9, 0.7, 0.3], rtol=1e-5)
    np.testing.assert_allclose(boxes[:3], proposals.asnumpy()[0, [2, 0, 1]], atol=1e-4)
    assert (boxes[3] == -1).all()


# ---------------------------------------------------------------- mask pasting

@pytest.mark.parametrize('box', [(10, 10, 20, 20), (10.3, 5.6, 19.49, 30.51),
                                 (-3.2, 30.7, 12.45, 45.0), (35.4, 0.2, 48.9, 9.9)])
def test_a_full_box_mask_ends_at_the_box_edges_to_the_sub_pixel(box):
    pasted = paste_masks(np.ones((1, 14, 14)), np.array([box]), (40, 44))[0]
    centres_y, centres_x = np.mgrid[0:40, 0:44] + 0.5
    x1, y1, x2, y2 = box
    inside = (centres_x >= x1) & (centres_x <= x2) & (centres_y >= y1) & (centres_y <= y2)
    assert not pasted[~inside].any()
    # Away from the corners (where the two edge ramps multiply) the mask is exactly the
    # pixels whose centre is inside the box.
    cell_w, cell_h = (x2 - x1) / 14, (y2 - y1) / 14
    not_corner = (((centres_y - y1 >= cell_h) & (y2 - centres_y >= cell_h))
                  | ((centres_x - x1 >= cell_w) & (x2 - centres_x >= cell_w)))
    np.testing.assert_array_equal(pasted[not_corner], inside[not_corner])
    assert pasted.sum() >= inside.sum() - 4 * (1 + max(cell_w, cell_h)) ** 2


def test_paste_equals_bilinear_sampling_of_the_padded_mask():
    from scipy import interpolate   # scipy is a dependency of gluonseg: no skip
    rng = np.random.RandomState(3)
    masks = rng.rand(3, 14, 14)
    boxes = np.array([[3.3, 4.1, 30.7, 22.9], [-5.5, 10.2, 20.1, 50.0], [20, 1, 21.5, 3]])
    pasted = paste_masks(masks, boxes, (36, 40))
    for mask, box, got in zip(masks, boxes, pasted):
        # independent reference: SciPy's grid interpolator on the enlarged box
        padded = np.pad(mask, 1)
        x1, y1, x2, y2 = box
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * 16 / 14, \
            (y2 - y1) / 2 * 16 / 14
        grid = np.arange(16) + 0.5
        reference = interpolate.RegularGridInterpolator((grid, grid), padded,
                                                        bounds_error=False, fill_value=0)
        ys, xs = np.mgrid[0:36, 0:40] + 0.5
        points = np.stack([(ys - cy + hh) / (2 * hh) * 16, (xs - cx + hw) / (2 * hw) * 16], -1)
        np.testing.assert_array_equal(got, reference(points) >= 0.5)


def test_paste_skips_empty_boxes_and_checks_shapes():
    pasted = paste_masks(np.ones((2, 7, 7)), np.array([[5, 5, 5, 9], [np.nan, 0, 3, 3]]),
                         (10, 10))
    assert pasted.shape == (2, 10, 10) and not pasted.any()
    with pytest.raises(ValueError, match=r'\(2, 4\) boxes'):
        paste_masks(np.ones((2, 7, 7)), np.zeros((3, 4)), (10, 10))
