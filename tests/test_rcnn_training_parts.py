"""Mask R-CNN training parts on hand-made inputs whose answers are known: RPN targets,
R-CNN sampling, mask targets, losses."""
import math

import mxnet as mx
import numpy as np
import pytest

from gluonseg.model_zoo.rcnn.boxes import iou_matrix
from gluonseg.model_zoo.rcnn.losses import (MaskRCNNLoss, mask_loss, rcnn_loss, rpn_loss,
                                            smooth_l1)
from gluonseg.model_zoo.rcnn.mask_target import MaskTargetGenerator
from gluonseg.model_zoo.rcnn.rcnn_target import RCNNTargetSampler
from gluonseg.model_zoo.rcnn.rpn_target import RPNTargetGenerator, inside_image

GT = np.array([[0, 0, 10, 10],     # box 0, area 100
               [20, 0, 30, 4]])    # box 1, area 40: no anchor reaches 0.7 with it
ANCHORS = np.array([
    [0, 0, 10, 10],    # 0: IoU 1.0 with box 0          -> positive
    [0, 0, 10, 8],     # 1: IoU 0.8                     -> positive
    [0, 0, 10, 5],     # 2: IoU 0.5                     -> ignored (0.3 <= IoU < 0.7)
    [0, 0, 10, 2],     # 3: IoU 0.2                     -> negative
    [20, 20, 30, 30],  # 4: IoU 0                       -> negative
    [-5, 0, 5, 10],    # 5: crosses the image border    -> ignored
    [20, 0, 30, 10],   # 6: IoU 0.4 with box 1, its best -> positive
], dtype=np.float32)
IMAGE = (40, 40)


def test_iou_matrix_known_values():
    iou = iou_matrix(ANCHORS, GT)
    np.testing.assert_allclose(iou[:5, 0], [1.0, 0.8, 0.5, 0.2, 0.0])
    np.testing.assert_allclose(iou[6], [0.0, 0.4])
    assert iou_matrix(np.zeros((0, 4)), GT).shape == (0, 2)
    assert iou_matrix([[3, 3, 3, 8]], GT)[0, 0] == 0  # no area: IoU 0, not NaN


def test_inside_image_uses_the_allowed_border():
    np.testing.assert_array_equal(inside_image(ANCHORS, IMAGE), [1, 1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(inside_image(ANCHORS, IMAGE, allowed_border=5),
                                  [1, 1, 1, 1, 1, 1, 1])
    # x2 must be < W: a box ending exactly on the border column is outside
    assert not inside_image(np.array([[0, 0, 40, 10.]]), IMAGE)[0]


def test_rpn_labels_thresholds_border_and_best_anchor_per_box():
    generator = RPNTargetGenerator()
    labels, matches = generator.labels(ANCHORS, GT, IMAGE)
    np.testing.assert_array_equal(labels, [1, 1, -1, 0, 0, -1, 1])
    assert matches[6] == 1 and matches[1] == 0


def test_rpn_best_anchor_wins_even_below_the_negative_threshold():
    # the only inside anchor overlapping the box has IoU 0.1: it is still the box's anchor
    labels, _ = RPNTargetGenerator().labels(np.array([[0, 0, 10, 10], [30, 30, 39, 39.]]),
                                            np.array([[0, 0, 10, 1.]]), IMAGE)
    np.testing.assert_array_equal(labels, [1, 0])


def test_rpn_targets_offsets_and_masks_without_subsampling():
    cls, box, mask = RPNTargetGenerator(num_sample=256)(ANCHORS, GT, IMAGE)
    np.testing.assert_array_equal(cls, [1, 1, -1, 0, 0, -1, 1])
    np.testing.assert_array_equal(mask[:, 0], [1, 1, 0, 0, 0, 0, 1])
    # anchor 1 (centre (5, 4), 10 x 8) -> box 0 (centre (5, 5), 10 x 10), stds 1
    np.testing.assert_allclose(box[1], [0, 1 / 8., 0, math.log(10 / 8.)], rtol=1e-5)
    # anchor 6 (centre (25, 5), 10 x 10) -> box 1 (centre (25, 2), 10 x 4)
    np.testing.assert_allclose(box[6], [0, -0.3, 0, math.log(0.4)], rtol=1e-5)
    np.testing.assert_array_equal(box[0], 0)
    assert (box[[2, 3, 4, 5]] == 0).all()


def test_rpn_subsampling_caps_positives_and_fills_with_negatives():
    generator = RPNTargetGenerator(num_sample=4, pos_fraction=0.5)
    for seed in range(5):
        cls, _, mask = generator(ANCHORS, GT, IMAGE, rng=np.random.RandomState(seed))
        assert (cls == 1).sum() == 2 and (cls == 0).sum() == 2
        np.testing.assert_array_equal(cls[[3, 4]], 0)  # the only two negatives
        np.testing.assert_array_equal(mask[:, 0], cls == 1)
    # a seeded generator makes the choice reproducible
    first = generator(ANCHORS, GT, IMAGE, rng=np.random.RandomState(3))[0]
    np.testing.assert_array_equal(first, generator(ANCHORS, GT, IMAGE,
                                                   rng=np.random.RandomState(3))[0])


def test_rpn_targets_of_an_image_without_objects_are_all_negative_inside():
    cls, box, mask = RPNTargetGenerator(num_sample=256)(ANCHORS, np.zeros((0, 4)), IMAGE)
    np.testing.assert_array_equal(cls, [0, 0, 0, 0, 0, -1, 0])
    assert not box.any() and not mask.any()


def test_rpn_refuses_inverted_thresholds():
    with pytest.raises(ValueError, match='neg .* <= pos'):
        RPNTargetGenerator(pos_iou_thresh=0.3, neg_iou_thresh=0.7)


# ---------------------------------------------------------------- R-CNN sampling

PROPOSALS = np.array([[0, 0, 10, 8],     # IoU 0.8 -> positive
                      [0, 0, 10, 5],     # IoU 0.5 -> positive (>= 0.5)
                      [0, 0, 10, 4],     # IoU 0.4 -> background
                      [30, 30, 40, 40]],  # IoU 0  -> background
                     dtype=np.float32)


def test_sampler_appends_the_boxes_and_labels_by_iou():
    sampler = RCNNTargetSampler(num_sample=16, pos_ratio=0.5)
    samples = sampler(PROPOSALS, GT[:1], [2])
    # positives: proposals 0 and 1 and the appended box itself; background: 2 and 3
    assert samples.num_pos == 3 and len(samples) == 5
    np.testing.assert_array_equal(samples.labels, [3, 3, 3, 0, 0])
    np.testing.assert_array_equal(samples.matches, [0, 0, 0, -1, -1])
    rows = {tuple(r) for r in samples.rois[:3]}
    assert rows == {(0, 0, 10, 8), (0, 0, 10, 5), (0, 0, 10, 10)}
    assert {tuple(r) for r in samples.rois[3:]} == {(0, 0, 10, 4), (30, 30, 40, 40)}
    # offsets with stds (0.1, 0.1, 0.2, 0.2): the appended box has none
    for roi, target in zip(samples.rois[:3], samples.box_targets):
        height = roi[3] - roi[1]
        expected = [0, (5 - height / 2) / height / 0.1, 0, math.log(10 / height) / 0.2]
        np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)


def test_sampler_caps_positives_at_the_ratio_and_fills_up_to_num_sample():
    sampler = RCNNTargetSampler(num_sample=8, pos_ratio=0.25)  # at most 2 positives
    samples = sampler(PROPOSALS, GT[:1], [0], rng=np.random.RandomState(0))
    assert samples.num_pos == 2 and len(samples) == 4  # only two background RoIs exist
    np.testing.assert_array_equal(samples.labels, [1, 1, 0, 0])
    many = np.tile(np.array([[30, 30, 40, 40]], np.float32), (20, 1))
    samples = sampler(np.concatenate([PROPOSALS, many]), GT[:1], [0])
    assert samples.num_pos == 2 and len(samples) == 8


def test_sampler_without_objects_gives_background_only():
    samples = RCNNTargetSampler(num_sample=3)(PROPOSALS, np.zeros((0, 4)), [])
    assert samples.num_pos == 0 and len(samples) == 3 and not samples.labels.any()
    assert samples.box_targets.shape == (0, 4)


# ---------------------------------------------------------------- mask targets

def test_mask_target_of_a_box_filled_mask_is_all_ones():
    masks = mx.nd.zeros((2, 40, 50))
    masks[1, 5:21, 10:31] = 1  # pixels 10..30 x 5..20: the inclusive box (10, 5, 30, 20)
    targets = MaskTargetGenerator(14)(masks, mx.nd.array([[10, 5, 30, 20]]), [1])
    assert targets.shape == (1, 14, 14)
    np.testing.assert_allclose(targets.asnumpy(), 1.0, atol=1e-6)


def test_mask_target_of_half_a_box_is_its_half_with_a_soft_edge():
    masks = mx.nd.zeros((1, 40, 40))
    masks[0, 0:11, 0:6] = 1  # columns 0..5 of the box (0, 0, 10, 10)
    target = MaskTargetGenerator(10)(masks, mx.nd.array([[0, 0, 10, 10]]), [0]).asnumpy()[0]
    # sampling points x = (k + 0.25) and (k + 0.75) for cell k (width 1): 1 up to x 5
    np.testing.assert_allclose(target[:, :5], 1.0)
    np.testing.assert_allclose(target[:, 6:], 0.0)
    np.testing.assert_allclose(target[:, 5], 0.5)  # (1 - 0.25 + 1 - 0.75) / 2


def test_mask_target_errors_name_the_shape():
    with pytest.raises(ValueError, match=r'\(K, H, W\)'):
        MaskTargetGenerator(14)(mx.nd.zeros((1, 1, 4, 4)), mx.nd.zeros((1, 4)), [0])


# ---------------------------------------------------------------- losses

def test_smooth_l1_matches_the_huber_definition():
    x = mx.nd.array([0.05, -1.0, 1 / 9.])
    np.testing.assert_allclose(smooth_l1(mx.nd, x, 1 / 9.).asnumpy(),
                               [0.5 * 9 * 0.0025, 1 - 1 / 18., 1 / 18.], rtol=1e-5)


def test_rpn_loss_by_hand():
    logits = mx.nd.array([[0, 2, -1, 5]])
    cls_targets = mx.nd.array([[1, 0, -1, 1]])
    deltas = mx.nd.array([[[0.05, 0, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9], [1, 0, 0, 0]]])
    box_targets = mx.nd.zeros((1, 4, 4))
    box_masks = mx.nd.array([[[1] * 4, [0] * 4, [0] * 4, [1] * 4]])
    cls, box = rpn_loss(logits, deltas, cls_targets, box_targets, box_masks)
    sampled = 3  # the -1 anchor is not sampled
    expected_cls = (math.log(2) + math.log(1 + math.exp(2)) + math.log(1 + math.exp(-5))) / 3
    expected_box = (0.5 * 9 * 0.05 ** 2 + (1 - 0.5 / 9)) / sampled
    np.testing.assert_allclose(cls.asscalar(), expected_cls, rtol=1e-5)
    np.testing.assert_allclose(box.asscalar(), expected_box, rtol=1e-5)


def test_rcnn_loss_by_hand():
    logits = mx.nd.array([[0, 0, 0], [1, 0, 0], [5, 5, 5]])
    labels = mx.nd.array([2, 0, -1])  # the third row is ignored
    box_pred = mx.nd.array([[0.5, 0, 0, 2]])
    cls, box = rcnn_loss(logits, labels, box_pred, mx.nd.zeros((1, 4)))
    expected_cls = (math.log(3) - math.log(math.e / (math.e + 2))) / 2
    np.testing.assert_allclose(cls.asscalar(), expected_cls, rtol=1e-5)
    np.testing.assert_allclose(box.asscalar(), (0.125 + 1.5) / 2, rtol=1e-5)
    _, none = rcnn_loss(logits, labels, None, None)
    assert none.asscalar() == 0


def test_mask_loss_is_the_mean_pixel_bce():
    logits = mx.nd.array([[[0, 0], [3, -3]]])
    targets = mx.nd.array([[[0.5, 1], [1, 0]]])
    bce = [math.log(2), math.log(2), math.log(1 + math.exp(-3)), math.log(1 + math.exp(-3))]
    np.testing.assert_allclose(mask_loss(logits, targets).asscalar(), np.mean(bce), rtol=1e-5)
    assert mask_loss(None, None).asscalar() == 0


def test_total_loss_sums_weighted_terms_and_rejects_unknown_terms():
    from gluonseg.model_zoo.rcnn.mask_rcnn import MaskRCNNTrainOutput
    outputs = MaskRCNNTrainOutput(
        mx.nd.zeros((1, 2)), mx.nd.zeros((1, 2, 4)), mx.nd.array([[1, 0]]),
        mx.nd.zeros((1, 2, 4)), mx.nd.zeros((1, 2, 4)), mx.nd.zeros((2, 3)),
        mx.nd.array([1, 0]), None, None, mx.nd.zeros((1, 2, 2)), mx.nd.ones((1, 2, 2)))
    total, terms = MaskRCNNLoss(weights={'mask': 2.0})(outputs)
    assert list(terms) == ['rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box', 'mask']
    expected = math.log(2) + math.log(3) + 2 * math.log(2)
    np.testing.assert_allclose(total.asscalar(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match='Unknown loss terms'):
        MaskRCNNLoss(weights={'rpn': 1.0})
