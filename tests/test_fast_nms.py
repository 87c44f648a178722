"""The numba NMS of the imperative (lean, training) paths gives contrib.box_nms's rows."""
import mxnet as mx
import numpy as np
import pytest

from gluonseg.model_zoo.rcnn import fast_nms
from gluonseg.model_zoo.rcnn.boxes import iou_matrix, nms

needs_numba = pytest.mark.skipif(not fast_nms.numba,
                                 reason='numba is not installed (pip install gluonseg[fast])')


def random_rows(rng, batch, count, classes=3, tied_scores=False):
    """(B, N, 6) rows ``id, score, x1, y1, x2, y2``: overlapping boxes, some degenerate or
    inverted, some of class -1, scores optionally drawn from 6 values (ties)."""
    corner = rng.uniform(0, 100, (batch, count, 2))
    size = rng.uniform(-3, 40, (batch, count, 2))
    size[rng.rand(batch, count) < 0.05] = 0  # no area
    scores = rng.rand(batch, count, 1)
    if tied_scores:
        scores = np.round(scores * 5) / 5
    ids = rng.randint(-1, classes, (batch, count, 1))
    return np.concatenate([ids, scores, corner, corner + size], -1).astype(np.float32)


def contrib(rows, **kwargs):
    return mx.nd.contrib.box_nms(mx.nd.array(rows), **kwargs).asnumpy()


CASES = {  # what the R-CNN calls, and corners of box_nms's options
    'rpn': dict(overlap_thresh=0.7, topk=60, score_index=1, coord_start=2),
    'per-class': dict(overlap_thresh=0.5, topk=-1, score_index=1, coord_start=2, id_index=0,
                      valid_thresh=1e-4, force_suppress=False),
    'classes-together': dict(overlap_thresh=0.3, topk=-1, score_index=1, coord_start=2,
                             id_index=0, force_suppress=True),
    'topk-beyond-rows': dict(overlap_thresh=0.5, topk=10000, score_index=1, coord_start=2),
    'valid-thresh': dict(overlap_thresh=0.5, topk=25, score_index=1, coord_start=2,
                         valid_thresh=0.6),
    'topk-0': dict(overlap_thresh=0.5, topk=0, score_index=1, coord_start=2),
}


@needs_numba
@pytest.mark.parametrize('tied_scores', [False, True], ids=['distinct', 'tied'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_rows_are_contrib_box_nms(case, tied_scores):
    rng = np.random.RandomState(len(case) + tied_scores)
    for batch, count in [(1, 1), (1, 300), (3, 120)]:
        rows = random_rows(rng, batch, count, tied_scores=tied_scores)
        expected = contrib(rows, **CASES[case])
        got = fast_nms.box_nms(mx.nd.array(rows), **CASES[case])
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got.asnumpy(), expected)


@needs_numba
def test_max_out_returns_the_first_kept_rows():
    rows = random_rows(np.random.RandomState(1), 2, 400, tied_scores=True)
    expected = contrib(rows, overlap_thresh=0.7, topk=200, score_index=1, coord_start=2)
    for max_out in (1, 7, 150, 400, 1000):
        got = fast_nms.box_nms(mx.nd.array(rows), 0.7, topk=200, score_index=1,
                               coord_start=2, max_out=max_out).asnumpy()
        np.testing.assert_array_equal(got, expected[:, :max_out])


@needs_numba
def test_kept_rows_do_not_overlap_and_suppressed_rows_did():
    # An independent check of the greedy rule, beside the comparison with box_nms.
    rows = random_rows(np.random.RandomState(2), 1, 200)[0]
    rows[:, 0] = 0
    kept = fast_nms.box_nms(mx.nd.array(rows[None]), 0.5, score_index=1,
                            coord_start=2).asnumpy()[0]
    kept = kept[kept[:, 1] >= 0]
    assert (np.diff(kept[:, 1]) <= 0).all()
    iou = iou_matrix(kept[:, 2:], kept[:, 2:])
    assert (np.triu(iou, 1) <= 0.5 + 1e-6).all()
    kept_set = {tuple(r) for r in kept}
    valid = rows[rows[:, 1] > 0]
    for row in valid:
        if tuple(row) not in kept_set:  # some better kept box overlaps it
            better = kept[kept[:, 1] >= row[1]]
            assert (iou_matrix(row[None, 2:], better[:, 2:]) > 0.5 - 1e-6).any()


@needs_numba
def test_the_threads_split_the_batch_without_changing_it(monkeypatch):
    rows = mx.nd.array(random_rows(np.random.RandomState(3), 5, 150))
    kwargs = CASES['per-class']
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    single = fast_nms.box_nms(rows, **kwargs).asnumpy()
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    np.testing.assert_array_equal(fast_nms.box_nms(rows, **kwargs).asnumpy(), single)


@pytest.mark.parametrize('use_numba', [True, False], ids=['numba', 'contrib'])
def test_boxes_nms_takes_the_kernel_imperatively_and_box_nms_in_a_graph(use_numba,
                                                                        monkeypatch):
    if use_numba and not fast_nms.numba:
        pytest.skip('numba is not installed (pip install gluonseg[fast])')
    if not use_numba:
        monkeypatch.setattr(fast_nms, 'numba', None)
    rows = random_rows(np.random.RandomState(4), 2, 90)
    kwargs = dict(topk=40, score_index=1, coord_start=2, max_out=30)
    imperative = nms(mx.nd, mx.nd.array(rows), 0.6, **kwargs)
    data = mx.sym.var('data')
    graph = nms(mx.sym, data, 0.6, **kwargs).eval(data=mx.nd.array(rows))[0]
    assert imperative.shape == graph.shape == (2, 30, 6)
    np.testing.assert_array_equal(imperative.asnumpy(), graph.asnumpy())


def test_float64_rows_fall_back_to_contrib():
    rows = random_rows(np.random.RandomState(5), 1, 50).astype(np.float64)
    got = fast_nms.box_nms(mx.nd.array(rows, dtype='float64'), 0.5, score_index=1,
                           coord_start=2, max_out=10)
    assert got.dtype == np.float64 and got.shape == (1, 10, 6)
    np.testing.assert_array_equal(got.asnumpy(), mx.nd.contrib.box_nms(
        mx.nd.array(rows, dtype='float64'), overlap_thresh=0.5, score_index=1,
        coord_start=2).asnumpy()[:, :10])
