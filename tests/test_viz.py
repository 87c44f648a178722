"""Palettes, colorize_mask and overlay (gluonseg/utils/viz.py)."""
import numpy as np
import pytest
from PIL import Image

from gluonseg.data.catalog import class_names
from gluonseg.utils import viz


def test_voc_palette_known_values():
    palette = viz.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (0, 0, 0)
    assert tuple(palette[1]) == (128, 0, 0)  # aeroplane
    assert tuple(palette[2]) == (0, 128, 0)
    assert tuple(palette[15]) == (192, 128, 128)  # person
    assert tuple(palette[20]) == (0, 64, 128)  # tvmonitor
    assert tuple(palette[255]) == (224, 224, 192)  # the void colour of VOC annotation PNGs
    assert len({tuple(c) for c in palette}) == 256


def test_get_palette_by_name_and_count():
    np.testing.assert_array_equal(viz.get_palette('voc'), viz.voc_palette())
    np.testing.assert_array_equal(viz.get_palette('VOC'), viz.voc_palette())
    np.testing.assert_array_equal(viz.get_palette(21), viz.voc_palette()[:21])
    ade = viz.get_palette('ade20k')
    assert ade.shape == (150, 3) and len({tuple(c) for c in ade}) == 150
    np.testing.assert_array_equal(ade, viz.ade20k_palette())  # deterministic
    citys = viz.get_palette('cityscapes')
    assert citys.shape == (19, 3)
    assert tuple(citys[0]) == (128, 64, 128)  # road
    assert tuple(citys[11]) == (220, 20, 60)  # person
    assert tuple(citys[18]) == (119, 11, 32)  # bicycle
    custom = viz.get_palette([[1, 2, 3], [4, 5, 6]])
    assert custom.dtype == np.uint8 and custom.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize('bad', ['imagenet', 'citys', 0, 257, [[1, 2]], [[0, 0, 300]]])
def test_get_palette_rejects(bad):
    with pytest.raises(ValueError):
        viz.get_palette(bad)


def test_a_dataset_name_is_not_a_palette_name():
    # Datasets are the data layer's (gluonseg.data.catalog); the error says where to look.
    with pytest.raises(ValueError, match='catalog'):
        viz.get_palette('ade')


def random_mask(shape=(37, 53), num_classes=21, seed=0):
    mask = np.random.RandomState(seed).randint(0, num_classes, size=shape)
    mask[:5, :7] = 255
    return mask


def test_colorize_mask_round_trip(tmp_path):
    mask = random_mask()
    image = viz.colorize_mask(mask, 'voc')
    assert image.mode == 'P' and image.size == (53, 37)
    np.testing.assert_array_equal(np.array(image), mask)
    colors = np.array(image.getpalette()[:768]).reshape(256, 3)
    np.testing.assert_array_equal(colors[:255], viz.voc_palette()[:255])
    assert tuple(colors[255]) == viz.DEFAULT_IGNORE_COLOR == (255, 255, 255)
    # Through a PNG file, as annotations are stored.
    image.save(tmp_path / 'mask.png')
    with Image.open(tmp_path / 'mask.png') as reloaded:
        np.testing.assert_array_equal(np.array(reloaded), mask)
        rgb = np.array(reloaded.convert('RGB'))
    np.testing.assert_array_equal(rgb[10:, :], viz.voc_palette()[mask[10:, :]])
    assert (rgb[:5, :7] == 255).all()


def test_colorize_mask_ignore_color_and_palette_sizes():
    mask = random_mask(num_classes=19)
    image = viz.colorize_mask(mask, 'cityscapes', ignore_color=(0, 0, 0))
    colors = np.array(image.getpalette()[:768]).reshape(256, 3)
    np.testing.assert_array_equal(colors[:19], viz.cityscapes_palette())
    assert tuple(colors[255]) == (0, 0, 0)


def test_colorize_mask_accepts_predictions():
    mask = random_mask(num_classes=150)
    mask[mask == 255] = 0

    class FakeNDArray:  # anything with asnumpy(), like mxnet.nd.NDArray
        def asnumpy(self):
            return mask[np.newaxis].astype(np.float32)  # argmax output: (1, H, W) floats

    np.testing.assert_array_equal(np.array(viz.colorize_mask(FakeNDArray(), 'ade20k')), mask)


@pytest.mark.parametrize('value', [21, -1, 254])
def test_colorize_mask_rejects_labels_without_colour(value):
    mask = random_mask()
    mask[0, 0] = value
    with pytest.raises(ValueError, match=r'\[%d\]' % value):
        viz.colorize_mask(mask, 21)


def test_colorize_mask_rejects_fractional_labels():
    with pytest.raises(ValueError, match='whole numbers'):
        viz.colorize_mask(np.full((4, 4), 1.5), 'voc')


def test_overlay_size_mode_and_blending():
    mask = random_mask()
    image = np.random.RandomState(1).randint(0, 256, size=mask.shape + (3,)).astype(np.uint8)
    result = viz.overlay(image, mask, 'voc', alpha=0.5, legend=False, draw_background=True)
    assert result.mode == 'RGB' and result.size == (53, 37)
    pixels = np.array(result).astype(int)
    labelled = mask != 255
    expected = np.round(0.5 * image[labelled] + 0.5 * viz.voc_palette()[mask[labelled]])
    assert np.abs(pixels[labelled] - expected).max() <= 1
    np.testing.assert_array_equal(pixels[~labelled], image[~labelled])  # ignore: image shows
    np.testing.assert_array_equal(np.array(viz.overlay(image, mask, alpha=0.0, legend=False)),
                                  image)
    opaque = np.array(viz.overlay(image, mask, alpha=1.0, legend=False, draw_background=True))
    np.testing.assert_array_equal(opaque[labelled], viz.voc_palette()[mask[labelled]])


def test_overlay_leaves_the_background_class_uncoloured_by_default():
    mask = random_mask()
    image = np.random.RandomState(1).randint(0, 256, size=mask.shape + (3,)).astype(np.uint8)
    pixels = np.array(viz.overlay(image, mask, 'voc', legend=False))
    background = mask == 0
    assert background.any()
    np.testing.assert_array_equal(pixels[background], image[background])
    objects = (mask != 0) & (mask != 255)
    expected = np.round(0.5 * image[objects] + 0.5 * viz.voc_palette()[mask[objects]])
    assert np.abs(pixels[objects] - expected).max() <= 1
    # The background is the class named so, in names given or the dataset's; ADE20K's label
    # 0 is 'wall', an object, and Cityscapes' is 'road'.
    named = np.array(viz.overlay(image, mask, 21, legend=False,
                                 classes=['__background__'] + ['thing'] * 20))
    np.testing.assert_array_equal(named[background], image[background])
    unnamed = np.array(viz.overlay(image, mask, 21, legend=False))
    assert (unnamed[background] != image[background]).any()
    for dataset in ('ade20k', 'cityscapes'):
        walls = np.array(viz.overlay(image, np.zeros(mask.shape, int), dataset, legend=False))
        assert (walls != image).any(), dataset


def legend_strip(picture, image_width):
    """The part of an overlay right of the picture, and the bounding box (top, left, bottom,
    right; inclusive) of its non-white pixels within the whole picture."""
    pixels = np.asarray(picture)
    ink = np.argwhere((pixels != 255).any(axis=-1)[:, image_width:])
    assert len(ink), 'no legend drawn'
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
    return pixels[:, image_width:], (top, left + image_width, bottom, right + image_width)


@pytest.mark.parametrize('side', [64, 128])
def test_saved_overlay_of_a_small_image_has_the_whole_legend_beside_the_picture(side,
                                                                               tmp_path):
    # A Shapes scene: background, a square and a circle, on a gradient photo.
    rows, cols = np.mgrid[:side, :side]
    image = np.stack([cols * 255 // side, rows * 255 // side, np.full_like(cols, 120)],
                     axis=-1).astype(np.uint8)
    mask = np.zeros((side, side), np.int64)
    mask[side // 8:side // 2, side // 8:side // 2] = 2
    mask[(cols - 0.75 * side) ** 2 + (rows - 0.75 * side) ** 2 < (side / 8) ** 2] = 1
    classes = ('background', 'circle', 'square', 'triangle')
    viz.overlay(image, mask, 'voc', classes=classes).save(tmp_path / 'overlay.png')
    with Image.open(tmp_path / 'overlay.png') as reloaded:
        saved = np.asarray(reloaded.convert('RGB'))
    height, width = saved.shape[:2]
    assert height == side and width > side  # a strip beside the picture, no taller
    picture = saved[:side, :side].astype(int)
    background = mask == 0
    np.testing.assert_array_equal(picture[background], image[background])
    tinted = np.round(0.5 * image[~background] + 0.5 * viz.voc_palette()[mask[~background]])
    assert np.abs(picture[~background] - tinted).max() <= 1
    strip, (top, left, bottom, right) = legend_strip(saved, side)
    # Nothing cut: the legend keeps a margin to every edge of the saved picture.
    assert top >= 1 and left >= side + 1 and bottom <= height - 2 and right <= width - 2
    # One swatch per coloured class, none for the background.
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    assert {tuple(viz.voc_palette()[k]) for k in (1, 2)} <= colours
    assert tuple(viz.voc_palette()[3]) not in colours  # triangle: not in the mask
    # The strip is as wide as the longest name: 'triangle' instead of 'square' widens it.
    longer = viz.overlay(image, np.where(mask == 2, 3, mask), 'voc', classes=classes)
    assert longer.size[0] > width


def test_overlay_draws_the_background_on_request():
    mask = np.zeros((64, 64), np.int64)
    mask[10:30, 10:30] = 1
    image = np.full((64, 64, 3), 200, np.uint8)
    default = viz.overlay(image, mask, 'voc', classes=class_names('voc'))
    drawn = viz.overlay(image, mask, 'voc', classes=class_names('voc'), draw_background=True)
    assert (np.asarray(drawn)[40:64, 40:64] == 100).all()  # black at half opacity
    assert (np.asarray(default)[40:64, 40:64] == 200).all()
    # the legend lists it too: a longer strip, as wide as its widest name
    assert drawn.size[0] > default.size[0]
    _, (_, _, bottom_drawn, _) = legend_strip(drawn, 64)
    _, (_, _, bottom_default, _) = legend_strip(default, 64)
    assert bottom_drawn > bottom_default


def test_overlay_without_coloured_pixels_draws_no_legend():
    image = np.full((40, 60, 3), 77, dtype=np.uint8)
    for mask in (np.full((40, 60), 255), np.zeros((40, 60), int)):  # void, background
        np.testing.assert_array_equal(np.array(viz.overlay(image, mask, 'voc')), image)


def test_overlay_lists_every_class_of_many_on_a_small_image():
    mask = np.arange(150).repeat(2).reshape(10, 30)
    image = np.full((10, 30), 128, dtype=np.uint8)  # grey image
    result = viz.overlay(image, mask, 'ade20k')
    assert result.mode == 'RGB'
    pixels = np.asarray(result)
    np.testing.assert_array_equal(pixels[:10, :30],
                                  np.asarray(viz.overlay(image, mask, 'ade20k', legend=False)))
    strip, (top, left, bottom, right) = legend_strip(result, 30)
    assert bottom <= pixels.shape[0] - 2 and right <= pixels.shape[1] - 2
    # all 150 swatches, in at most four columns (the canvas grows downwards instead)
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    assert {tuple(c) for c in viz.ade20k_palette()} <= colours
    assert pixels.shape[0] > 10 and pixels.shape[1] < 30 + 4 * 150


def test_overlay_rejects_mismatched_sizes_and_alpha():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='mask is 10x30'):
        viz.overlay(image, np.zeros((10, 30), dtype=int), 'voc')
    with pytest.raises(ValueError, match='alpha'):
        viz.overlay(image, np.zeros((20, 30), dtype=int), 'voc', alpha=1.5)
