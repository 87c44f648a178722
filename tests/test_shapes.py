"""Synthetic shapes datasets: determinism, split separation, instance/semantic consistency, coverage."""
import time

import numpy as np
import pytest

from gluonseg.data import ShapesInstance, ShapesSegmentation


def test_same_seed_same_scene_different_seed_or_split_different_scene():
    a = ShapesSegmentation('train', length=10, size=(64, 80), seed=3)
    b = ShapesSegmentation('train', length=10, size=(64, 80), seed=3)
    for i in (0, 7):
        img_a, mask_a = a[i]
        img_b, mask_b = b[i]
        assert np.array_equal(img_a, img_b) and np.array_equal(mask_a, mask_b)
    # Access order does not matter (each scene is seeded by its own index).
    assert np.array_equal(b[7][0], a[7][0])
    assert not np.array_equal(a[0][0], a[1][0])
    other_seed = ShapesSegmentation('train', length=10, size=(64, 80), seed=4)
    assert not np.array_equal(a[0][0], other_seed[0][0])


def test_splits_use_different_scenes():
    train = ShapesSegmentation('train', length=50, size=(48, 48))
    val = ShapesSegmentation('val', length=50, size=(48, 48))
    train_images = {train[i][0].tobytes() for i in range(50)}
    assert not any(val[i][0].tobytes() in train_images for i in range(50))
    assert len(train) == 50 and len(ShapesSegmentation('train')) == 2000 and len(ShapesSegmentation('val')) == 200


def test_sample_format_and_index_errors():
    ds = ShapesSegmentation('val', length=5, size=(40, 56))
    image, mask = ds[-1]
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    assert mask.shape == (40, 56) and mask.dtype == np.int32
    assert set(np.unique(mask)) <= {0, 1, 2, 3}
    assert ds.classes == ['background', 'circle', 'square', 'triangle'] and ds.num_class == 4
    with pytest.raises(IndexError):
        ds[5]
    assert len(list(ds)) == 5  # iteration stops on IndexError


def test_all_classes_appear_and_shapes_are_sizeable():
    ds = ShapesSegmentation('train', length=60, size=(64, 64))
    counts = np.zeros(4, dtype=np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds[i][1].ravel(), minlength=4)
    fractions = counts / counts.sum()
    assert np.all(fractions[1:] > 0.02), fractions       # every shape class is well represented
    assert 0.5 < fractions[0] < 0.97, fractions           # and background dominates but not totally


def test_colour_is_not_a_shortcut():
    # The mean colour of shapes must not separate the classes: compare per-class mean RGB.
    ds = ShapesSegmentation('train', length=150, size=(48, 48))
    sums = np.zeros((4, 3))
    counts = np.zeros(4)
    for i in range(len(ds)):
        image, mask = ds[i]
        for c in range(1, 4):
            sel = mask == c
            sums[c] += image[sel].sum(axis=0)
            counts[c] += sel.sum()
    means = sums[1:] / counts[1:, None]
    assert np.ptp(means, axis=0).max() < 30, means


def test_instances_consistent_with_semantic_mask():
    sem = ShapesSegmentation('train', length=40, size=(64, 64), seed=1)
    inst = ShapesInstance('train', length=40, size=(64, 64), seed=1)
    saw_overlap = False
    for i in range(len(inst)):
        image, boxes, class_ids, masks = inst[i]
        sem_image, sem_mask = sem[i]
        assert np.array_equal(image, sem_image)
        assert masks.dtype == np.uint8 and masks.shape == (len(class_ids), 64, 64)
        assert boxes.shape == (len(class_ids), 4) and class_ids.dtype == np.int32
        assert set(class_ids.tolist()) <= {0, 1, 2}
        # Instances do not overlap, and painting them gives the semantic mask.
        assert masks.sum(axis=0).max() <= 1
        rebuilt = (masks * (class_ids[:, None, None] + 1)).max(axis=0)
        assert np.array_equal(rebuilt, sem_mask)
        for box, m in zip(boxes, masks):
            ys, xs = np.nonzero(m)
            assert len(ys) > 0
            assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        # Overlapping shapes show up as instances whose visible masks touch.
        saw_overlap |= any(_touch(masks[a], masks[b]) for a in range(len(masks)) for b in range(a))
    assert saw_overlap


def _touch(a, b):
    grown = a.astype(bool).copy()
    grown[1:] |= a[:-1] > 0
    grown[:-1] |= a[1:] > 0
    grown[:, 1:] |= a[:, :-1] > 0
    grown[:, :-1] |= a[:, 1:] > 0
    return bool((grown & (b > 0)).any())


def test_generation_is_fast():
    ds = ShapesSegmentation('train', length=200, size=(128, 128))
    ds[0]
    start = time.perf_counter()
    for i in range(200):
        ds[i]
    per_image = (time.perf_counter() - start) / 200
    assert per_image < 0.01, '%.1f ms per 128x128 scene' % (per_image * 1e3)
