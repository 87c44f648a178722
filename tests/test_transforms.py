"""Joint transforms, image loading/normalisation and pad_batchify."""
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluonseg.data import (IMAGENET_MEAN, IMAGENET_STD, SegmentationTestValTransform,
                           SegmentationTrainTransform, SegmentationValTransform, load_image,
                           normalize_image, pad_batchify)

# Class id -> an RGB colour, so that an image "painted" from its mask tells, pixel by pixel,
# whether image and mask went through the same geometry.
PALETTE = np.array([[0, 0, 0], [250, 10, 10], [10, 250, 10], [10, 10, 250], [200, 200, 30]], dtype=np.uint8)


def painted_sample(height=60, width=90, seed=0):
    """A blocky, left-right asymmetric mask with values {0..4} and the image painted from it."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 5, size=(-(-height // 10), -(-width // 10)))
    mask = np.kron(coarse, np.ones((10, 10), dtype=np.int64)).astype(np.int32)[:height, :width]
    mask[:, :10] = 3  # asymmetry: a left band of class 3 ...
    mask[:, -10:] = 1  # ... and a right band of class 1
    return PALETTE[mask], mask


def denormalize(chw):
    img = chw.transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return np.round(img * 255).astype(np.int64)


def colour_matches(chw, mask, ignore=255):
    """Fraction of non-ignored pixels whose colour is exactly the palette colour of their class."""
    img = denormalize(chw)
    valid = mask != ignore
    return np.mean(np.all(img[valid] == PALETTE[mask[valid]], axis=-1))


def test_normalize_image_values_and_layout():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[1, 2] = (255, 0, 128)
    out = normalize_image(img)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[:, 1, 2], expected, rtol=1e-5)
    np.testing.assert_allclose(out[:, 0, 0], -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD), rtol=1e-5)


def test_load_image_accepts_paths_pil_and_arrays(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, 'L').save(str(tmp_path / 'grey.png'))
    out = load_image(str(tmp_path / 'grey.png'))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)
    assert np.array_equal(load_image(tmp_path / 'grey.png'), out)  # pathlib too
    cmyk = Image.new('CMYK', (5, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert load_image(cmyk)[0, 0].tolist() == [255, 0, 0]
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 1] = 7
    assert load_image(rgba).shape == (2, 2, 3) and load_image(rgba)[0, 0, 1] == 7
    assert load_image(mx.nd.array(grey, dtype='uint8')).shape == (3, 4, 3)
    with pytest.raises(TypeError, match='float32'):
        load_image(np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r'shape \(2, 2, 5\)'):
        load_image(np.zeros((2, 2, 5), dtype=np.uint8))


def test_train_transform_output_types_and_mask_values():
    image, mask = painted_sample()
    transform = SegmentationTrainTransform(base_size=60, crop_size=48, scale_range=(0.5, 2.0), blur=True,
                                           rng=np.random.RandomState(0))
    allowed = set(np.unique(mask).tolist()) | {255}
    saw_padding = False
    for _ in range(20):
        img_t, mask_t = transform(image, mask)
        assert img_t.shape == (3, 48, 48) and img_t.dtype == np.float32
        assert mask_t.shape == (48, 48) and mask_t.dtype == np.int32
        assert set(np.unique(mask_t).tolist()) <= allowed
        saw_padding |= bool((mask_t == 255).any())
    assert saw_padding  # scale 0.5 makes 30x45 images, smaller than the crop


def test_train_transform_pads_mask_with_ignore_and_image_with_black():
    image, mask = painted_sample(40, 40)
    transform = SegmentationTrainTransform(base_size=40, crop_size=(50, 60), scale_range=(1.0, 1.0), flip=False,
                                           rng=np.random.RandomState(1))
    img_t, mask_t = transform(image, mask)
    # No resize at scale 1, and the crop equals the padded size: the original sits top-left.
    assert np.array_equal(mask_t[:40, :40], mask)
    assert np.all(mask_t[40:] == 255) and np.all(mask_t[:, 40:] == 255)
    black = -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(img_t[:, 45, 55], black, rtol=1e-5)
    assert colour_matches(img_t, mask_t) == 1.0
    ignore_minus1 = SegmentationTrainTransform(base_size=40, crop_size=50, scale_range=(1.0, 1.0), flip=False,
                                               ignore_index=-1, rng=np.random.RandomState(1))
    assert ignore_minus1(image, mask)[1][45, 45] == -1


def test_flip_and_crop_move_image_and_mask_together():
    image, mask = painted_sample()
    transform = SegmentationTrainTransform(base_size=60, crop_size=(60, 90), scale_range=(1.0, 1.0),
                                           rng=np.random.RandomState(2))
    flipped = unflipped = 0
    for _ in range(16):
        img_t, mask_t = transform(image, mask)
        assert colour_matches(img_t, mask_t) == 1.0
        if np.array_equal(mask_t, mask[:, ::-1]):
            flipped += 1
        elif np.array_equal(mask_t, mask):
            unflipped += 1
    assert flipped > 0 and unflipped > 0 and flipped + unflipped == 16
    # With scaling (bilinear image vs nearest mask) only object borders may disagree.
    scaled = SegmentationTrainTransform(base_size=60, crop_size=40, rng=np.random.RandomState(3))
    for _ in range(5):
        img_t, mask_t = scaled(image, mask)
        assert colour_matches(img_t, mask_t) > 0.7


def test_scale_side_short_versus_long():
    image, mask = painted_sample(40, 80)
    short = SegmentationTrainTransform(base_size=20, crop_size=(20, 40), scale_range=(1.0, 1.0), flip=False,
                                       rng=np.random.RandomState(0))
    _, mask_short = short(image, mask)
    assert not (mask_short == 255).any()  # short side 40 -> 20: the image is 20x40, no padding
    long_side = SegmentationTrainTransform(base_size=20, crop_size=(20, 40), scale_range=(1.0, 1.0), flip=False,
                                           scale_side='long', rng=np.random.RandomState(0))
    _, mask_long = long_side(image, mask)
    assert np.all(mask_long[10:] == 255) and np.all(mask_long[:, 20:] == 255)  # long side -> 20: 10x20
    assert not (mask_long[:10, :20] == 255).any()


def test_train_transform_is_deterministic_under_a_seed():
    image, mask = painted_sample()
    kwargs = dict(base_size=60, crop_size=32, blur=True)
    a = SegmentationTrainTransform(rng=np.random.RandomState(7), **kwargs)
    b = SegmentationTrainTransform(rng=np.random.RandomState(7), **kwargs)
    outs_a = [a(image, mask) for _ in range(4)]
    outs_b = [b(image, mask) for _ in range(4)]
    for (ia, ma), (ib, mb) in zip(outs_a, outs_b):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert not all(np.array_equal(outs_a[0][1], m) for _, m in outs_a[1:])  # but it is random
    glob = SegmentationTrainTransform(**kwargs)  # numpy's global RNG
    np.random.seed(11)
    first = glob(image, mask)
    np.random.seed(11)
    second = glob(image, mask)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_val_transform_resizes_short_side_and_centre_crops():
    mask = np.zeros((40, 80), dtype=np.int32)
    mask[:, :20] = 1   # left quarter
    mask[:, 60:] = 2   # right quarter
    image = PALETTE[mask]
    img_t, mask_t = SegmentationValTransform(crop_size=20)(image, mask)
    # 40x80 -> 20x40, centre crop columns 10..29: class 1 at 0..9 and 2 at 10..19 after resizing.
    assert img_t.shape == (3, 20, 20) and mask_t.shape == (20, 20) and mask_t.dtype == np.int32
    assert np.all(mask_t == 0)
    img_t, mask_t = SegmentationValTransform(crop_size=(20, 40))(image, mask)
    assert np.all(mask_t[:, :10] == 1) and np.all(mask_t[:, 30:] == 2) and np.all(mask_t[:, 10:30] == 0)
    assert colour_matches(img_t, mask_t) >= 0.85  # bilinear blends one column at each of 2 edges
    img_only, none = SegmentationValTransform(crop_size=16)(image, None)
    assert none is None and img_only.shape == (3, 16, 16)


def test_testval_transform_keeps_size_and_mask():
    image, mask = painted_sample(37, 51)
    mask[0, 0] = 255
    img_t, mask_t = SegmentationTestValTransform()(image, mask.astype(np.uint8))
    assert img_t.shape == (3, 37, 51)
    np.testing.assert_array_equal(img_t, normalize_image(image))
    assert mask_t.dtype == np.int32 and np.array_equal(mask_t, mask)


def test_transforms_reject_mismatched_sizes():
    image, mask = painted_sample()
    with pytest.raises(ValueError, match='60x90 but mask is 60x80'):
        SegmentationTrainTransform(base_size=60, crop_size=32)(image, mask[:, :80])


def test_pad_batchify_pads_to_largest_with_ignore():
    a = (np.ones((3, 4, 5), np.float32), np.full((4, 5), 2, np.int32))
    b = (np.ones((3, 6, 3), np.float32), np.full((6, 3), 1, np.int32))
    images, masks = pad_batchify([a, b], image_pad=0.0, mask_pad=255)
    assert images.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5)
    assert masks.dtype == np.int32
    m = masks.asnumpy()
    assert np.all(m[0, 4:] == 255) and np.all(m[0, :4] == 2) and np.all(m[1, :, 3:] == 255)
    assert images.asnumpy()[1, :, :, 3:].sum() == 0 and images.asnumpy()[1, :, :, :3].min() == 1
    only = pad_batchify([np.zeros((4, 5, 3), np.uint8), np.zeros((2, 7, 3), np.uint8)])  # HWC uint8 images
    assert only.shape == (2, 4, 7, 3)


def _crop_in_child(transform, image, mask, queue):
    queue.put(transform(image, mask)[1])


def test_forked_workers_do_not_repeat_each_others_augmentation():
    # DataLoader workers are forked with identical global RNG state; rng=None must not make
    # them produce identical crops.
    import multiprocessing
    ctx = multiprocessing.get_context('fork')
    image, mask = painted_sample(60, 90, seed=5)
    transform = SegmentationTrainTransform(base_size=60, crop_size=24)
    np.random.seed(0)
    queue = ctx.Queue()
    workers = [ctx.Process(target=_crop_in_child, args=(transform, image, mask, queue)) for _ in range(3)]
    for w in workers:
        w.start()
    crops = [queue.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert len({c.tobytes() for c in crops}) == 3
    # In the creating process the global RNG is used as is (reproducible with np.random.seed).
    np.random.seed(0)
    first = transform(image, mask)[1]
    np.random.seed(0)
    assert np.array_equal(first, transform(image, mask)[1])
