"""COCOInstance on a COCO json written here: polygons, uncompressed RLE (crowd), compressed RLE,
an image without annotations, custom category names in a non-sorted order, filters."""
import json
import os

import numpy as np
import pytest

pytest.importorskip('pycocotools', reason='pycocotools is not installed: pip install -e ".[coco]"')
from pycocotools import mask as mask_utils  # noqa: E402

from fixtures_data import rle_of, write_coco  # noqa: E402
from gluonseg.data import COCOInstance, DatasetNotFoundError  # noqa: E402

H, W = 40, 50
# File order 7, 3: class 0 is 'widget' (getCatIds() order), not the lower id 3.
CATEGORIES = [(7, 'widget'), (3, 'gadget')]


def rect(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def poly_mask(polygons):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, H, W)))


POLYGON = [[5, 5, 25, 5, 25, 20, 5, 20], [30, 30, 40, 30, 35, 38]]  # two parts: a box and a triangle
GADGET = rect(22, 36, 2, 12)      # compressed RLE: rows 22..35, cols 2..11
CROWD = rect(0, 10, 30, 50)       # uncompressed RLE, iscrowd=1


def annotations():
    return [
        # image 1: polygon widget, compressed-RLE gadget, crowd widget (excluded)
        {'image_id': 1, 'category_id': 7, 'segmentation': POLYGON, 'area': 320.0, 'bbox': [5, 5, 35, 33]},
        {'image_id': 1, 'category_id': 3, 'segmentation': rle_of(GADGET), 'area': 140.0,
         'bbox': [2, 22, 10, 14]},
        {'image_id': 1, 'category_id': 7, 'segmentation': rle_of(CROWD, compressed=False), 'iscrowd': 1,
         'area': 200.0, 'bbox': [30, 0, 20, 10]},
        # image 3: only a crowd object -> empty for training
        {'image_id': 3, 'category_id': 3, 'segmentation': rle_of(CROWD, compressed=False), 'iscrowd': 1,
         'area': 200.0, 'bbox': [30, 0, 20, 10]},
        # image 4: area 1 (dropped), a one-pixel-wide box (degenerate), a 2-point polygon (no
        # polygon), and a box running past the image (clipped)
        {'image_id': 4, 'category_id': 7, 'segmentation': rle_of(rect(0, 1, 0, 1)), 'area': 1.0,
         'bbox': [0, 0, 1, 1]},
        {'image_id': 4, 'category_id': 7, 'segmentation': rle_of(rect(0, 10, 5, 6)), 'area': 10.0,
         'bbox': [5, 0, 1, 10]},
        {'image_id': 4, 'category_id': 3, 'segmentation': [[1, 1, 9, 9]], 'area': 50.0, 'bbox': [1, 1, 8, 8]},
        {'image_id': 4, 'category_id': 3, 'segmentation': rle_of(rect(30, 40, 40, 50)), 'area': 100.0,
         'bbox': [40, 30, 15, 12]},
    ]


@pytest.fixture
def coco_root(tmp_path):
    images = [{'id': i, 'height': H, 'width': W} for i in (1, 2, 3, 4)]  # image 2: no annotations
    decoded = {}
    for split in ('train', 'val'):
        decoded = write_coco(tmp_path, split, [dict(i) for i in images], CATEGORIES, annotations())
    return tmp_path, decoded


def test_classes_from_file_in_getcatids_order(coco_root):
    root, _ = coco_root
    data = COCOInstance(str(root), 'train')
    assert data.classes == ['widget', 'gadget'] and data.num_class == 2
    assert data.cat_ids == data.coco.getCatIds() == [7, 3]
    assert data.contiguous_id_to_json == {0: 7, 1: 3}


def test_train_sample_polygons_rle_and_crowd_excluded(coco_root):
    root, decoded = coco_root
    data = COCOInstance(str(root), 'train')
    assert data.image_ids == [1, 4]  # 2 (no annotations) and 3 (crowd only) skipped
    image, boxes, class_ids, masks = data[0]
    np.testing.assert_array_equal(image, decoded[1])
    assert boxes.dtype == np.float32 and class_ids.dtype == np.int32 and masks.dtype == np.uint8
    np.testing.assert_array_equal(class_ids, [0, 1])  # widget, gadget; the crowd widget is gone
    # inclusive ends: [x, y, w, h] -> x, y, x + w - 1, y + h - 1
    np.testing.assert_array_equal(boxes, [[5, 5, 39, 37], [2, 22, 11, 35]])
    assert masks.shape == (2, H, W)
    np.testing.assert_array_equal(masks[0], poly_mask(POLYGON))
    np.testing.assert_array_equal(masks[1], GADGET)
    assert not masks[:, CROWD.astype(bool)].any()  # no pixel of the crowd region in any mask


def test_filters_and_clipping(coco_root):
    root, _ = coco_root
    data = COCOInstance(str(root), 'train')
    _, boxes, class_ids, masks = data[1]  # image 4
    # only the clipped box survives: x2 = min(40 + 15 - 1, W - 1), y2 = min(30 + 12 - 1, H - 1)
    np.testing.assert_array_equal(boxes, [[40, 30, W - 1, H - 1]])
    np.testing.assert_array_equal(class_ids, [1])
    assert masks.sum() == 100
    stricter = COCOInstance(str(root), 'train', min_object_area=150)
    assert stricter.image_ids == [1]
    np.testing.assert_array_equal(stricter.targets(0)[1], [0])  # the 140-px gadget is dropped


def test_val_keeps_empty_images(coco_root):
    root, decoded = coco_root
    data = COCOInstance(str(root), 'val')
    assert data.image_ids == [1, 2, 3, 4]
    for index in (1, 2):  # no annotations; crowd only
        image, boxes, class_ids, masks = data[index]
        assert image.shape == (H, W, 3)
        assert boxes.shape == (0, 4) and class_ids.shape == (0,) and masks.shape == (0, H, W)
    assert len(COCOInstance(str(root), 'val', skip_empty=True)) == 2


def test_custom_annotation_file_and_image_dir(coco_root, tmp_path):
    root, _ = coco_root
    custom = tmp_path / 'mine'
    custom.mkdir()
    os.rename(root / 'annotations' / 'instances_val2017.json', custom / 'labels.json')
    os.rename(root / 'val2017', custom / 'pictures')
    calls = []

    def transform(image, boxes, class_ids, masks):
        calls.append(len(boxes))
        return image.shape, boxes.sum()

    data = COCOInstance(split='test', annotation_file=str(custom / 'labels.json'),
                        image_dir=str(custom / 'pictures'), transform=transform)
    assert len(data) == 4 and data.classes == ['widget', 'gadget']
    assert data[0] == ((H, W, 3), 5 + 5 + 39 + 37 + 2 + 22 + 11 + 35) and calls == [2]


def test_missing_files_name_path_and_script(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        COCOInstance(str(tmp_path), 'val')
    message = str(err.value)
    assert os.path.join(str(tmp_path), 'annotations', 'instances_val2017.json') in message
    assert 'prepare_coco.py' in message


def test_unknown_category_is_named(coco_root):
    root, _ = coco_root
    path = root / 'annotations' / 'instances_train2017.json'
    content = json.loads(path.read_text())
    content['annotations'][0]['category_id'] = 99
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r'annotation 1 has category_id 99.*\[7, 3\]'):
        COCOInstance(str(root), 'train')


def test_image_size_mismatch_is_named(coco_root):
    root, _ = coco_root
    path = root / 'annotations' / 'instances_train2017.json'
    content = json.loads(path.read_text())
    for info in content['images']:
        info['width'] = W + 1
    for ann in content['annotations']:
        if isinstance(ann['segmentation'], list):
            continue
        ann['segmentation'] = rle_of(np.zeros((H, W + 1), dtype=np.uint8) + 1)
    path.write_text(json.dumps(content))
    data = COCOInstance(str(root), 'train')
    with pytest.raises(ValueError, match=r'000000000001\.jpg is 40x50 but .* says 40x51'):
        data[0]
