"""COCOSegmentation on a tiny COCO json: category mapping, polygons/RLE, crowd, filter, id cache."""
import json
import os

import numpy as np
import pytest

pytest.importorskip('pycocotools', reason='pycocotools is not installed: pip install -e ".[coco]"')
from pycocotools import mask as mask_utils  # noqa: E402

from fixtures_data import rle_of, write_coco  # noqa: E402
from gluonseg.data import COCOSegmentation, DatasetNotFoundError  # noqa: E402
from gluonseg.data.coco import COCO_CAT_LIST  # noqa: E402

H, W = 40, 50
CATEGORIES = [(1, 'person'), (5, 'airplane'), (63, 'couch'), (90, 'toothbrush')]


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def decode_polygon(poly):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, H, W))).astype(bool)


@pytest.fixture
def coco(tmp_path):
    images = [{'id': i, 'height': H, 'width': W} for i in (1, 2, 3, 4)]
    annotations = [
        # image 1: a person polygon (about 400 px) and an unmapped toothbrush (background)
        {'image_id': 1, 'category_id': 1, 'segmentation': polygon(5, 5, 25, 25)},
        {'image_id': 1, 'category_id': 90, 'segmentation': rle_of(box(30, 38, 30, 48))},
        # image 2: a tiny airplane (25 px, compressed RLE): filtered out by min_pixels=100
        {'image_id': 2, 'category_id': 5, 'segmentation': rle_of(box(0, 5, 0, 5))},
        # image 3: a couch (uncompressed RLE, 225 px) and a crowd of persons
        {'image_id': 3, 'category_id': 63, 'segmentation': rle_of(box(10, 25, 10, 25), compressed=False)},
        {'image_id': 3, 'category_id': 1, 'iscrowd': 1, 'segmentation': rle_of(box(30, 40, 0, 20), compressed=False)},
        # image 4: person then airplane overlapping; the first annotation wins the overlap
        {'image_id': 4, 'category_id': 1, 'segmentation': rle_of(box(0, 20, 0, 20))},
        {'image_id': 4, 'category_id': 5, 'segmentation': rle_of(box(10, 30, 10, 30))},
    ]
    decoded = write_coco(tmp_path, 'val', images, CATEGORIES, annotations)
    return tmp_path, decoded


def test_category_mapping_table():
    assert len(COCO_CAT_LIST) == 21
    assert COCO_CAT_LIST.index(1) == 15 and COCO_CAT_LIST.index(63) == 18 and COCO_CAT_LIST.index(5) == 1


def test_masks_polygons_rle_crowd_and_overlap(coco):
    root, decoded = coco
    ds = COCOSegmentation(str(root), 'val', min_pixels=100)
    assert ds.ids == [1, 3, 4]  # image 2 has only 25 VOC-class pixels
    image, mask = ds[0]
    assert np.array_equal(image, decoded[1]) and mask.dtype == np.int32 and mask.shape == (H, W)
    person = decode_polygon(polygon(5, 5, 25, 25))
    assert 350 < person.sum() < 450
    expected = np.where(person, 15, 0)  # the toothbrush stays background
    assert np.array_equal(mask, expected)
    _, mask3 = ds[1]
    expected3 = np.zeros((H, W), np.int32)
    expected3[10:25, 10:25] = 18   # couch -> sofa
    expected3[30:40, 0:20] = 255   # crowd -> ignore
    assert np.array_equal(mask3, expected3)
    _, mask4 = ds[2]
    expected4 = np.zeros((H, W), np.int32)
    expected4[10:30, 10:30] = 1
    expected4[0:20, 0:20] = 15
    assert np.array_equal(mask4, expected4)


def test_crowd_label_mode_matches_gluoncv(coco):
    root, _ = coco
    ds = COCOSegmentation(str(root), 'val', min_pixels=100, crowd='label')
    _, mask3 = ds[ds.ids.index(3)]
    assert np.all(mask3[30:40, 0:20] == 15)


def test_min_pixels_none_keeps_every_image(coco):
    root, _ = coco
    assert COCOSegmentation(str(root), 'val', min_pixels=None).ids == [1, 2, 3, 4]


def test_id_index_is_cached_atomically_and_rebuilt_when_annotations_change(coco, monkeypatch):
    root, _ = coco
    ds = COCOSegmentation(str(root), 'val', min_pixels=100)
    index_file = ds.index_file
    assert os.path.dirname(index_file) == str(root / 'annotations') and os.path.isfile(index_file)
    assert not [n for n in os.listdir(str(root / 'annotations')) if n.endswith('.tmp')]

    def fail(self):
        raise AssertionError('index rebuilt although the cache is valid')
    monkeypatch.setattr(COCOSegmentation, '_build_index', fail)
    assert COCOSegmentation(str(root), 'val', min_pixels=100).ids == [1, 3, 4]
    monkeypatch.undo()
    # A different threshold is a different index.
    assert COCOSegmentation(str(root), 'val', min_pixels=300).ids == [1, 4]
    # New annotation file contents (size/mtime change): rebuilt. Image 4 loses its annotations.
    annotation_file = str(root / 'annotations' / 'instances_val2017.json')
    with open(annotation_file) as f:
        content = json.load(f)
    content['annotations'] = [a for a in content['annotations'] if a['image_id'] != 4]
    with open(annotation_file, 'w') as f:
        json.dump(content, f)
    assert COCOSegmentation(str(root), 'val', min_pixels=100).ids == [1, 3]


def test_coco_missing_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r'instances_train2017\.json.*prepare_coco\.py'):
        COCOSegmentation(str(tmp_path))
    with pytest.raises(ValueError, match='unknown COCO split'):
        COCOSegmentation(str(tmp_path), 'test')
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'instances_train2017.json').write_text('{}')
    with pytest.raises(DatasetNotFoundError, match=r'train2017'):
        COCOSegmentation(str(tmp_path))
