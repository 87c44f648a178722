"""SegmentationMetric: hand-computed values, ignore label, absent classes, input forms, merging."""
import json
import math

import mxnet as mx
import numpy as np
import pytest

from gluonseg.utils.metrics import SegmentationMetric

# A 2x4 image, 3 classes, one ignored pixel (255).
#   gt   = 0 0 1   1        pred = 0 1 1 1
#          2 2 255 1               2 0 2 0
# Scored (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,0)   -> 7 pixels, 4 correct.
# Confusion matrix (rows gt, cols pred):
#   gt0: [1, 1, 0]
#   gt1: [1, 2, 0]
#   gt2: [1, 0, 1]
# IoU_c = TP / (row_c + col_c - TP):
#   class 0: 1 / (2 + 3 - 1) = 1/4
#   class 1: 2 / (3 + 3 - 2) = 1/2
#   class 2: 1 / (2 + 1 - 1) = 1/2
# pixAcc = 4/7, mIoU = (1/4 + 1/2 + 1/2) / 3 = 5/12
# per-class acc (recall) = 1/2, 2/3, 1/2; fwIoU = (2*1/4 + 3*1/2 + 2*1/2) / 7 = 3/7
GT = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.int32)
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 0]], dtype=np.int32)
CM = [[1, 1, 0], [1, 2, 0], [1, 0, 1]]


def test_hand_computed_three_class_example():
    metric = SegmentationMetric(3)
    metric.update(GT, PRED)
    assert metric.confusion_matrix.tolist() == CM
    pix_acc, miou = metric.get()
    assert pix_acc == pytest.approx(4 / 7)
    assert miou == pytest.approx(5 / 12)
    np.testing.assert_allclose(metric.per_class_iou(), [1 / 4, 1 / 2, 1 / 2])
    np.testing.assert_allclose(metric.per_class_acc(), [1 / 2, 2 / 3, 1 / 2])
    assert metric.fw_iou() == pytest.approx(3 / 7)
    assert metric.mean_acc() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)


def test_ignored_pixels_do_not_count_whatever_is_predicted():
    base = SegmentationMetric(3)
    base.update(GT, PRED)
    other = SegmentationMetric(3)
    pred = PRED.copy()
    pred[1, 2] = 1  # change the prediction under the ignored pixel only
    other.update(GT, pred)
    assert other.confusion_matrix.tolist() == base.confusion_matrix.tolist()
    # GluonCV-style ignore value -1 works the same way.
    gt_minus1 = np.where(GT == 255, -1, GT)
    minus1 = SegmentationMetric(3, ignore_index=-1)
    minus1.update(gt_minus1, PRED)
    assert minus1.confusion_matrix.tolist() == CM


def test_absent_class_conventions():
    # With nclass=4, class 3 is in neither gt nor pred: undefined IoU.
    nan_metric = SegmentationMetric(4)
    nan_metric.update(GT, PRED)
    assert math.isnan(nan_metric.per_class_iou()[3])
    assert math.isnan(nan_metric.per_class_acc()[3])
    assert nan_metric.get()[1] == pytest.approx(5 / 12)        # mean over the 3 defined classes
    zero_metric = SegmentationMetric(4, absent_class='zero')
    zero_metric.update(GT, PRED)
    assert zero_metric.per_class_iou()[3] == 0.0
    assert zero_metric.get()[1] == pytest.approx((5 / 4) / 4)  # GluonCV: mean over all 4 classes
    # pixAcc does not depend on the convention
    assert nan_metric.get()[0] == zero_metric.get()[0] == pytest.approx(4 / 7)


def test_class_predicted_but_absent_from_gt_counts_as_zero_in_both_conventions():
    gt = np.zeros((2, 2), dtype=np.int32)
    pred = np.array([[0, 0], [0, 2]])
    for absent in ('nan', 'zero'):
        metric = SegmentationMetric(3, absent_class=absent)
        metric.update(gt, pred)
        iou = metric.per_class_iou()
        assert iou[0] == pytest.approx(3 / 4)
        assert iou[2] == 0.0
        if absent == 'nan':
            assert math.isnan(iou[1])
            assert metric.get()[1] == pytest.approx((3 / 4 + 0) / 2)
        else:
            assert metric.get()[1] == pytest.approx((3 / 4 + 0 + 0) / 3)


def test_zero_convention_matches_gluoncv_formula_on_random_data():
    # GluonCV (notes 2.5): per class intersection/union summed over the dataset, mean over all classes,
    # an absent class contributing 0; pixAcc = correct / labeled.
    rng = np.random.RandomState(0)
    nclass = 6
    labels = rng.randint(0, nclass - 1, size=(3, 17, 23))   # class 5 never in gt ...
    labels[:, :2] = 255
    preds = rng.randint(0, nclass - 2, size=(3, 17, 23))    # ... nor predicted
    metric = SegmentationMetric(nclass, absent_class='zero')
    for lab, prd in zip(labels, preds):
        metric.update(lab[None], prd[None])
    valid = labels != 255
    ious = []
    for c in range(nclass):
        inter = np.sum((labels == c) & (preds == c) & valid)
        union = np.sum(((labels == c) | (preds == c)) & valid)
        ious.append(inter / union if union else 0.0)
    assert metric.get()[1] == pytest.approx(np.mean(ious))
    assert metric.get()[0] == pytest.approx(np.sum((labels == preds) & valid) / valid.sum())


def test_perfect_prediction():
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 5, size=(2, 9, 11))
    metric = SegmentationMetric(5)
    metric.update(labels, labels.copy())
    assert metric.get() == (1.0, 1.0)
    assert metric.fw_iou() == 1.0
    assert np.all(metric.per_class_acc() == 1.0)


def test_logits_equal_ids_numpy_and_ndarray():
    rng = np.random.RandomState(2)
    labels = rng.randint(0, 4, size=(2, 6, 7))
    logits = rng.randn(2, 4, 6, 7).astype(np.float32)
    ids = logits.argmax(axis=1)
    by_ids = SegmentationMetric(4)
    by_ids.update(labels, ids)
    for lab, pred in [(labels, logits), (mx.nd.array(labels), mx.nd.array(logits)),
                      (mx.nd.array(labels), mx.nd.array(ids)), (labels[0], logits[0])]:
        metric = SegmentationMetric(4)
        metric.update(lab, pred)
        if pred.shape[0] == 2:
            assert metric.confusion_matrix.tolist() == by_ids.confusion_matrix.tolist()
        else:  # single (C,H,W) logits with an (H,W) label
            single = SegmentationMetric(4)
            single.update(labels[0], ids[0])
            assert metric.confusion_matrix.tolist() == single.confusion_matrix.tolist()
            assert metric.confusion_matrix.sum() == 6 * 7


def test_list_of_per_device_batches_equals_one_batch():
    rng = np.random.RandomState(3)
    labels = rng.randint(0, 3, size=(4, 5, 5))
    preds = rng.randint(0, 3, size=(4, 5, 5))
    whole = SegmentationMetric(3)
    whole.update(labels, preds)
    split = SegmentationMetric(3)
    split.update([mx.nd.array(labels[:2]), labels[2:]], [preds[:2], mx.nd.array(preds[2:])])
    assert split.confusion_matrix.tolist() == whole.confusion_matrix.tolist()
    with pytest.raises(ValueError, match='2 label arrays but 1 prediction'):
        split.update([labels[:2], labels[2:]], [preds])


def test_merge_state_dict_and_reset():
    a, b, both = SegmentationMetric(3), SegmentationMetric(3), SegmentationMetric(3)
    a.update(GT, PRED)
    b.update(PRED, PRED)
    both.update([GT, PRED], [PRED, PRED])
    a.merge(b)
    assert a.confusion_matrix.tolist() == both.confusion_matrix.tolist()
    state = json.loads(json.dumps(a.state_dict()))  # plain python all the way
    restored = SegmentationMetric.from_state_dict(state)
    assert restored.get() == a.get()
    c = SegmentationMetric(3).merge(state)
    assert c.confusion_matrix.tolist() == a.confusion_matrix.tolist()
    with pytest.raises(ValueError, match='nclass=4'):
        a.merge(SegmentationMetric(4))
    a.reset()
    assert a.confusion_matrix.sum() == 0
    assert math.isnan(a.get()[1])
    summary = restored.summary(['bg', 'x', 'y'])
    assert set(summary['per_class_iou']) == {'bg', 'x', 'y'}
    json.dumps(summary)


def test_bad_labels_and_shapes_raise_clear_errors():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match=r'\[7\] outside \[0, 3\).*ignore value 255'):
        metric.update(np.array([[0, 7]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match=r'predictions contain class ids \[5\]'):
        metric.update(np.array([[0, 1]]), np.array([[0, 5]]))
    with pytest.raises(ValueError, match='shape'):
        metric.update(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match='valid class id'):
        SegmentationMetric(3, ignore_index=1)
    assert metric.confusion_matrix.sum() == 0  # failed updates left no partial counts


def test_a_480_batch_of_ndarrays_counts_every_scored_pixel_pair():
    rng = np.random.RandomState(4)
    labels = rng.randint(0, 21, size=(16, 480, 480)).astype(np.int32)
    labels[:, :10] = 255
    preds = rng.randint(0, 21, size=(16, 480, 480)).astype(np.int32)
    metric = SegmentationMetric(21)
    metric.update(mx.nd.array(labels, dtype='int32'), mx.nd.array(preds, dtype='int32'))
    scored = labels != 255
    expected = np.zeros((21, 21), dtype=np.int64)
    np.add.at(expected, (labels[scored], preds[scored]), 1)
    np.testing.assert_array_equal(metric.confusion_matrix, expected)
    assert expected.sum() == 16 * 470 * 480
