"""COCOInstanceMetric on hand-made cases whose AP can be worked out by hand.

Ground truth (categories in file order 7 'widget', 3 'gadget': class 0 -> 7, class 1 -> 3):
image 1 (40x50): widget rows 5-19 x cols 10-29 (COCO box [10, 5, 20, 15]),
                 gadget rows 25-34 x cols 0-9  ([0, 25, 10, 10]);
image 2 (40x50): widget rows 0-9 x cols 0-9    ([0, 0, 10, 10]).
Every object is "small" (area < 32^2), so APm and APl are undefined (NaN).
"""
import json
import math

import mxnet as mx
import numpy as np
import pytest

pytest.importorskip('pycocotools', reason='pycocotools is not installed: pip install -e ".[coco]"')
from pycocotools import mask as mask_utils  # noqa: E402

from fixtures_data import rle_of, write_coco  # noqa: E402
from gluonseg.data import COCOInstance  # noqa: E402
from gluonseg.utils.coco_metric import COCOInstanceMetric  # noqa: E402

H, W = 40, 50


def rect(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


OBJECTS = {  # image id -> [(category id, mask, COCO box)]
    1: [(7, rect(5, 20, 10, 30), [10, 5, 20, 15]), (3, rect(25, 35, 0, 10), [0, 25, 10, 10])],
    2: [(7, rect(0, 10, 0, 10), [0, 0, 10, 10])],
}


@pytest.fixture(scope='module')
def gt(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_gt')
    anns = [{'image_id': i, 'category_id': c, 'segmentation': rle_of(m), 'area': float(m.sum()), 'bbox': b}
            for i, objects in OBJECTS.items() for c, m, b in objects]
    write_coco(root, 'val', [{'id': 1, 'height': H, 'width': W}, {'id': 2, 'height': H, 'width': W}],
               [(7, 'widget'), (3, 'gadget')], anns)
    return root


def path_of(root):
    return str(root / 'annotations' / 'instances_val2017.json')


def assert_stats(values, iou_type, ap, ap50, ap75):
    assert values['%s/AP' % iou_type] == pytest.approx(ap, abs=1e-9)
    assert values['%s/AP50' % iou_type] == pytest.approx(ap50, abs=1e-9)
    assert values['%s/AP75' % iou_type] == pytest.approx(ap75, abs=1e-9)
    assert values['%s/APs' % iou_type] == pytest.approx(ap, abs=1e-9)  # all objects are small
    assert math.isnan(values['%s/APm' % iou_type]) and math.isnan(values['%s/APl' % iou_type])


def test_perfect_predictions_give_ap_1(gt):
    metric = COCOInstanceMetric(path_of(gt))
    # image 1: full-size binary masks; continuous-frame boxes x2 = x + w
    metric.update(1, [0, 1], [0.9, 0.8], [[10, 5, 30, 20], [0, 25, 10, 35]],
                  np.stack([OBJECTS[1][0][1], OBJECTS[1][1][1]]))
    # image 2: a 28x28 box-mask probability, pasted by the default paste
    metric.update(2, [0], [0.7], [[0, 0, 10, 10]], np.full((1, 28, 28), 0.9, dtype=np.float32))
    values = metric.get()
    assert list(values)[:6] == ['bbox/AP', 'bbox/AP50', 'bbox/AP75', 'bbox/APs', 'bbox/APm', 'bbox/APl']
    assert_stats(values, 'bbox', 1.0, 1.0, 1.0)
    assert_stats(values, 'segm', 1.0, 1.0, 1.0)


def test_perfect_predictions_from_dataset_batches_and_ndarrays(gt):
    dataset = COCOInstance(str(gt), 'val')
    metric = COCOInstanceMetric(dataset)
    # batch form, NDArrays, GluonCV-style (N, 1) ids/scores with -1 padding rows
    ids = [mx.nd.array([[0], [1], [-1]]), mx.nd.array([[0], [-1], [-1]])]
    scores = [mx.nd.array([[0.9], [0.8], [-1]]), mx.nd.array([[0.7], [-1], [-1]])]
    boxes = [mx.nd.array([[10, 5, 30, 20], [0, 25, 10, 35], [-1] * 4]),
             mx.nd.array([[0, 0, 10, 10], [-1] * 4, [-1] * 4])]
    masks = [mx.nd.array(np.stack([o[1] for o in OBJECTS[1]] + [np.zeros((H, W))])),
             mx.nd.array(np.stack([OBJECTS[2][0][1], np.zeros((H, W)), np.zeros((H, W))]))]
    metric.update(dataset.image_ids, ids, scores, boxes, masks)
    assert [r['category_id'] for r in metric.results('bbox')] == [7, 3, 7]
    values = metric.get()
    assert values['bbox/AP'] == pytest.approx(1.0) and values['segm/AP'] == pytest.approx(1.0)


def test_empty_predictions_give_ap_0(gt):
    metric = COCOInstanceMetric(path_of(gt))
    values = metric.get()  # nothing at all: every image evaluated, no crash
    assert_stats(values, 'bbox', 0.0, 0.0, 0.0)
    assert_stats(values, 'segm', 0.0, 0.0, 0.0)
    metric.update([1, 2], [[], []], [[], []], [np.zeros((0, 4)), np.zeros((0, 4))], [None, None])
    values = metric.get()
    assert values['bbox/AP'] == 0.0 and values['segm/AP'] == 0.0


def test_shifted_box_counts_only_up_to_its_iou(gt):
    # Box and mask moved 2 px right: IoU = 80 / 120 = 2/3, a match at IoU thresholds
    # 0.50, 0.55, 0.60, 0.65 and a miss at 0.70..0.95, so AP = 4/10, AP50 = 1, AP75 = 0.
    metric = COCOInstanceMetric(path_of(gt))
    metric.update(2, [0], [0.9], [[2, 0, 12, 10]], rect(0, 10, 2, 12)[None])
    values = metric.get()  # only image 2 was updated, so only it is evaluated
    assert_stats(values, 'bbox', 0.4, 1.0, 0.0)
    assert_stats(values, 'segm', 0.4, 1.0, 0.0)


def test_false_positive_ranked_first_halves_ap(gt):
    # Detections in score order: a false positive, then the exact box. Precision at recall 1
    # is 1/2, and the interpolated precision is 1/2 at every recall, so AP = 0.5 everywhere.
    metric = COCOInstanceMetric(path_of(gt), iou_types=('bbox',))
    metric.update(2, [0, 0], [0.9, 0.8], [[30, 30, 40, 40], [0, 0, 10, 10]])
    values = metric.get()
    assert list(values) == ['bbox/AP', 'bbox/AP50', 'bbox/AP75', 'bbox/APs', 'bbox/APm', 'bbox/APl']
    assert_stats(values, 'bbox', 0.5, 0.5, 0.5)


def test_results_json_files(gt, tmp_path):
    prefix = str(tmp_path / 'out' / 'run1')
    metric = COCOInstanceMetric(path_of(gt), results_prefix=prefix)
    metric.update(2, [0, 1], [0.9, 0.1], [[2.5, 0, 12.25, 10], [0, 0, 5, 5]],
                  np.stack([rect(0, 10, 2, 12), rect(0, 5, 0, 5)]))
    metric.get()
    with open(prefix + '_bbox.json') as f:
        bbox = json.load(f)
    with open(prefix + '_segm.json') as f:
        segm = json.load(f)
    assert bbox[0] == {'image_id': 2, 'category_id': 7, 'score': 0.9, 'bbox': [2.5, 0.0, 9.75, 10.0]}
    assert bbox[1]['category_id'] == 3
    assert segm[1]['category_id'] == 3 and 'bbox' not in segm[0]
    decoded = mask_utils.decode({'size': segm[0]['segmentation']['size'],
                                 'counts': segm[0]['segmentation']['counts'].encode('ascii')})
    np.testing.assert_array_equal(decoded, rect(0, 10, 2, 12))


def test_score_threshold_and_custom_paste(gt):
    calls = []

    def paste(masks, boxes, size):
        calls.append((masks.shape, size))
        return np.stack([OBJECTS[2][0][1]] * len(masks))

    metric = COCOInstanceMetric(path_of(gt), paste=paste, score_threshold=0.5)
    metric.update(2, [0, 1], [0.9, 0.2], [[0, 0, 10, 10], [0, 0, 5, 5]], np.ones((2, 14, 14)))
    assert calls == [((1, 14, 14), (H, W))]  # the low-scoring detection never reaches paste
    assert len(metric.results('segm')) == 1
    assert metric.get()['segm/AP'] == pytest.approx(1.0)


def test_bad_inputs_are_named(gt):
    metric = COCOInstanceMetric(path_of(gt))
    with pytest.raises(ValueError, match='image id 99 is not in the ground truth'):
        metric.update(99, [0], [0.5], [[0, 0, 1, 1]], np.zeros((1, H, W)))
    with pytest.raises(ValueError, match=r'class id\(s\) \[5\] >= the number of classes 2'):
        metric.update(1, [5], [0.5], [[0, 0, 1, 1]], np.zeros((1, H, W)))
    with pytest.raises(ValueError, match=r'neither full-size \(40, 50\) nor square'):
        metric.update(1, [0], [0.5], [[0, 0, 1, 1]], np.zeros((1, 20, 30)))
    with pytest.raises(ValueError, match='masks are needed'):
        metric.update(1, [0], [0.5], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r'category_ids \[4\] are not categories'):
        COCOInstanceMetric(path_of(gt), category_ids=[7, 4])
