"""Palettes, colorize_mask and overlay (gluonseg/utils/viz.py)."""
import numpy as np
import pytest
from PIL import Image

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
    np.testing.assert_array_equal(viz.get_palette('pascal_voc'), viz.voc_palette())
    np.testing.assert_array_equal(viz.get_palette(21), viz.voc_palette()[:21])
    ade = viz.get_palette('ade20k')
    assert ade.shape == (150, 3) and len({tuple(c) for c in ade}) == 150
    np.testing.assert_array_equal(ade, viz.ade20k_palette())  # deterministic
    citys = viz.get_palette('citys')
    assert citys.shape == (19, 3)
    assert tuple(citys[0]) == (128, 64, 128)  # road
    assert tuple(citys[11]) == (220, 20, 60)  # person
    assert tuple(citys[18]) == (119, 11, 32)  # bicycle
    custom = viz.get_palette([[1, 2, 3], [4, 5, 6]])
    assert custom.dtype == np.uint8 and custom.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize('bad', ['imagenet', 0, 257, [[1, 2]], [[0, 0, 300]]])
def test_get_palette_rejects(bad):
    with pytest.raises(ValueError):
        viz.get_palette(bad)


def test_class_names_match_palettes():
    assert len(viz.get_class_names('voc')) == 21
    assert len(viz.get_class_names('ade20k')) == len(viz.ade20k_palette())
    assert len(viz.get_class_names('cityscapes')) == len(viz.cityscapes_palette())


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
    result = viz.overlay(image, mask, 'voc', alpha=0.5, legend=False)
    assert result.mode == 'RGB' and result.size == (53, 37)
    pixels = np.array(result).astype(int)
    labelled = mask != 255
    expected = np.round(0.5 * image[labelled] + 0.5 * viz.voc_palette()[mask[labelled]])
    assert np.abs(pixels[labelled] - expected).max() <= 1
    np.testing.assert_array_equal(pixels[~labelled], image[~labelled])  # ignore: image shows
    np.testing.assert_array_equal(np.array(viz.overlay(image, mask, alpha=0.0, legend=False)),
                                  image)
    opaque = np.array(viz.overlay(image, mask, alpha=1.0, legend=False))
    np.testing.assert_array_equal(opaque[labelled], viz.voc_palette()[mask[labelled]])


def test_overlay_legend_changes_the_top_left_only():
    mask = np.zeros((200, 300), dtype=np.int64)
    mask[50:150, 100:250] = 15
    image = Image.new('RGB', (300, 200), (40, 90, 160))
    plain = np.array(viz.overlay(image, mask, 'voc', legend=False))
    with_legend = viz.overlay(image, mask, 'voc', legend=True)
    assert with_legend.mode == 'RGB' and with_legend.size == (300, 200)
    changed = np.argwhere((np.array(with_legend) != plain).any(axis=-1))
    assert len(changed) > 0
    # Two classes present (background, person): a small box in the top-left corner.
    assert changed[:, 0].max() < 100 and changed[:, 1].max() < 150
    # Custom names change the legend text.
    renamed = np.array(viz.overlay(image, mask, 'voc', classes=['sea'] * 16))
    assert (renamed != np.array(with_legend)).any()


def test_overlay_without_labelled_pixels_draws_no_legend():
    mask = np.full((40, 60), 255)
    image = np.full((40, 60, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(np.array(viz.overlay(image, mask, 'voc')), image)


def test_overlay_many_classes_on_a_small_image():
    mask = np.arange(150).repeat(2).reshape(10, 30)
    image = np.full((10, 30), 128, dtype=np.uint8)  # grey image
    result = viz.overlay(image, mask, 'ade20k')
    assert result.size == (30, 10) and result.mode == 'RGB'


def test_overlay_rejects_mismatched_sizes_and_alpha():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='mask is 10x30'):
        viz.overlay(image, np.zeros((10, 30), dtype=int), 'voc')
    with pytest.raises(ValueError, match='alpha'):
        viz.overlay(image, np.zeros((20, 30), dtype=int), 'voc', alpha=1.5)
