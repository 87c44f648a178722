"""Broken COCO annotation files as users meet them: NaN/inf/huge polygons, broken RLEs, dangling
ids, truncated JSON, and degenerate annotations that used to vanish without a word.

Every reader (COCOSegmentation, COCOInstance, COCOInstanceMetric from a path, a loaded COCO
object or a COCOInstance, instances_to_coco) must stop with an error naming the file, image id
and annotation id before pycocotools sees a bad polygon: pycocotools segfaults on NaN and
allocates tens of GB on a coordinate of 1e9. A spy on ``pycocotools.mask.frPyObjects`` fails the
test at once (instead of letting pycocotools allocate) if a bad polygon reaches it.
"""
import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip('pycocotools', reason='pycocotools is not installed: pip install -e ".[coco]"')
import pycocotools.mask  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from fixtures_data import rle_of, write_coco  # noqa: E402
from gluonseg.data import COCOInstance, COCOSegmentation, ShapesInstance  # noqa: E402
from gluonseg.data.coco_format import instances_to_coco  # noqa: E402
from gluonseg.utils.coco_annotations import COCOAnnotationError, MAX_LISTED, validate_coco  # noqa: E402
from gluonseg.utils.coco_metric import COCOInstanceMetric  # noqa: E402

H, W = 40, 50
CATEGORIES = [(1, 'person'), (5, 'airplane')]
GOOD_POLYGON = [[5, 5, 25, 5, 25, 25, 5, 25]]


def rect(y0, y1, x0, x1, height=H, width=W):
    m = np.zeros((height, width), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def good(image_id, **extra):
    ann = {'image_id': image_id, 'category_id': 1, 'segmentation': GOOD_POLYGON, 'area': 400.0,
           'bbox': [5, 5, 20, 20]}
    ann.update(extra)
    return ann


def write(root, annotations, num_images=2, split='train'):
    """The annotation file of a tiny COCO split (annotation ids are 1, 2, ... in list order)."""
    write_coco(root, split, [{'id': i, 'height': H, 'width': W} for i in range(1, num_images + 1)],
               CATEGORIES, annotations)
    return root / 'annotations' / ('instances_%s2017.json' % split)


@pytest.fixture
def polygon_spy(monkeypatch):
    """Calls of pycocotools' polygon/RLE conversion; a bad polygon fails the test right there."""
    real = pycocotools.mask.frPyObjects
    calls = []

    def spy(obj, height, width):
        polygons = obj if isinstance(obj, list) and obj and isinstance(obj[0], list) else []
        for polygon in polygons:
            if not all(math.isfinite(v) and abs(v) < 1e6 for v in polygon):
                raise AssertionError('pycocotools was handed the polygon %r' % (polygon,))
        calls.append(obj)
        return real(obj, height, width)
    # coco.py (annToRLE, used by COCOeval) and gluonseg both call it through this module.
    monkeypatch.setattr(pycocotools.mask, 'frPyObjects', spy)
    return calls


BAD_VALUES = [float('nan'), float('inf'), -float('inf'), 1e9]


def bad_polygon_file(root, value):
    # image 2, annotation 3: the third point's x coordinate is bad
    return write(root, [good(1), good(2), good(2, segmentation=[[5, 5, 25, 5, value, 25, 5, 25]])])


def assert_names_bad_polygon(err, path, value):
    message = str(err.value)
    assert str(path) in message and 'image 2, annotation 3' in message, message
    assert 'polygon 0' in message and repr(value) in message, message
    assert '1 invalid entry' in message and 'nothing was loaded' in message


@pytest.mark.fault('NaN/inf/huge polygon coordinate in a COCO file read by the datasets')
@pytest.mark.parametrize('value', BAD_VALUES, ids=['nan', 'inf', '-inf', 'huge'])
@pytest.mark.parametrize('reader', ['COCOInstance', 'COCOSegmentation'])
def test_bad_polygon_is_named_before_pycocotools_sees_it(tmp_path, polygon_spy, value, reader):
    path = bad_polygon_file(tmp_path, value)
    cls = {'COCOInstance': COCOInstance, 'COCOSegmentation': COCOSegmentation}[reader]
    with pytest.raises(COCOAnnotationError) as err:
        cls(str(tmp_path), 'train')
    assert_names_bad_polygon(err, path, value)
    assert polygon_spy == []  # nothing was converted at all: the file was refused up front


@pytest.mark.fault('NaN/inf/huge polygon in the ground truth handed to COCOInstanceMetric')
@pytest.mark.parametrize('value', BAD_VALUES, ids=['nan', 'inf', '-inf', 'huge'])
def test_bad_ground_truth_polygon_is_named_before_cocoeval(tmp_path, polygon_spy, value):
    path = bad_polygon_file(tmp_path, value)
    with pytest.raises(COCOAnnotationError) as err:
        COCOInstanceMetric(str(path))
    assert_names_bad_polygon(err, path, value)
    # A COCO object loaded by pycocotools itself (which does not look at coordinates) is
    # checked too: COCOeval would turn the polygon into a mask in evaluate().
    raw = COCO(str(path))
    with pytest.raises(COCOAnnotationError, match=r'ground truth.*\n  image 2, annotation 3 has .*polygon 0'):
        COCOInstanceMetric(raw)
    assert polygon_spy == []


@pytest.mark.fault('ground truth that COCOeval turns into masks, evaluated through the checked loader')
def test_metric_from_a_clean_file_still_evaluates_through_the_spy(tmp_path, polygon_spy):
    """The spy passes good polygons through: the checks above would notice a reader that
    converted nothing because it did not work at all."""
    path = write(tmp_path, [good(1), good(2)])
    metric = COCOInstanceMetric(str(path), iou_types=('segm',))
    mask = pycocotools.mask.decode(pycocotools.mask.merge(
        pycocotools.mask.frPyObjects(GOOD_POLYGON, H, W)))
    for image_id in (1, 2):
        metric.update(image_id, [0], [0.9], [[5, 5, 25, 25]], mask[None])
    assert metric.get()['segm/AP'] == pytest.approx(1.0)
    assert len(polygon_spy) >= 3  # ours above plus COCOeval's ground truth conversions
    # COCOeval rewrote the ground truth's polygons as compressed RLEs (bytes) in place; a second
    # metric on the same object (the next evaluation of a training run) accepts them as they are.
    assert isinstance(metric.coco.anns[1]['segmentation']['counts'], bytes)
    assert COCOInstanceMetric(metric.coco, iou_types=('segm',)).coco is metric.coco


@pytest.mark.fault('NaN box in a dataset converted to COCO ground truth (instances_to_coco)')
def test_instances_to_coco_names_a_non_finite_box(polygon_spy):
    class NaNBoxes(object):
        classes = ['a']

        def __len__(self):
            return 2

        def __getitem__(self, index):
            boxes = np.array([[2, 2, 10, 10]], dtype=np.float32)
            if index == 1:
                boxes[0, 2] = np.nan
            return np.zeros((H, W, 3), np.uint8), boxes, np.array([0]), rect(2, 11, 2, 11)[None]
    with pytest.raises(COCOAnnotationError, match=r'(?s)NaNBoxes.*dataset index \+ 1.*image 2, '
                                                  r'annotation 2 has a non-finite coordinate nan in bbox'):
        instances_to_coco(NaNBoxes())
    # a real dataset goes through unchanged and without warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        coco = instances_to_coco(ShapesInstance(length=3, size=(32, 32), seed=1))
    assert len(coco.imgs) == 3 and len(coco.anns) > 0


@pytest.mark.fault('COCO file with NaN in an image size and a dangling image id')
def test_broken_ids_and_sizes_are_listed_together(tmp_path):
    path = write(tmp_path, [good(1), good(9), good(1, category_id=42)])
    content = json.loads(path.read_text())
    content['images'][1]['height'] = float('nan')
    content['annotations'].append(dict(content['annotations'][0]))  # annotation id 1 again
    path.write_text(json.dumps(content))
    with pytest.raises(COCOAnnotationError) as err:
        COCOInstance(str(tmp_path), 'train')
    message = str(err.value)
    assert '4 invalid entries' in message
    assert 'image 2 has height nan and width 50' in message
    assert 'annotation 2 refers to image 9' in message
    assert 'image 1, annotation 3 has category_id 42, which is not among the categories [1, 5]' in message
    assert 'annotation id 1 appears twice' in message


@pytest.mark.fault('COCO RLEs with wrong run lengths (uncompressed and compressed)')
def test_broken_rles_are_named(tmp_path, polygon_spy):
    short = rle_of(rect(0, 5, 0, 5), compressed=False)
    short['counts'][-1] -= 1  # one pixel missing
    negative = rle_of(rect(0, 5, 0, 5), compressed=False)
    negative['counts'][1] = -3
    truncated = rle_of(rect(0, 5, 0, 5))
    truncated['counts'] = truncated['counts'][:-1]
    path = write(tmp_path, [good(1, segmentation=short), good(1, segmentation=negative),
                            good(2, segmentation=truncated)])
    with pytest.raises(COCOAnnotationError) as err:
        COCOInstance(str(tmp_path), 'train')
    message = str(err.value)
    assert str(path) in message and '3 invalid entries' in message
    assert 'image 1, annotation 1 has an RLE whose counts sum to 1999, but its 50x40 image has 2000' in message
    assert 'image 1, annotation 2 has an RLE whose counts are not all non-negative' in message
    assert 'image 2, annotation 3 has a compressed RLE that cannot be read (it ends inside a number)' in message
    # The correct RLEs, compressed and not, pass the same check.
    write(tmp_path / 'ok', [good(1, segmentation=rle_of(rect(0, 5, 0, 5), compressed=False)),
                            good(2, segmentation=rle_of(rect(3, 30, 7, 45)))])
    assert len(COCOInstance(str(tmp_path / 'ok'), 'train')) == 2


@pytest.mark.fault('truncated COCO annotation JSON')
def test_truncated_json_is_named(tmp_path):
    path = write(tmp_path, [good(1), good(2)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(COCOAnnotationError,
                       match=r'instances_train2017\.json is not valid JSON .*truncated or corrupt'):
        COCOSegmentation(str(tmp_path), 'train')


@pytest.mark.fault('a COCO file with hundreds of bad annotations')
def test_many_problems_are_counted_not_all_printed(tmp_path):
    path = write(tmp_path, [good(1, bbox=[float('nan'), 0, 5, 5]) for _ in range(25)])
    with pytest.raises(COCOAnnotationError) as err:
        COCOInstance(str(tmp_path), 'train')
    message = str(err.value)
    assert '25 invalid entries' in message and '... and %d more' % (25 - MAX_LISTED) in message
    assert message.count('non-finite coordinate nan in bbox') == MAX_LISTED and str(path) in message


def degenerate_annotations():
    """6 images; only images 1 and 6 have a usable object, the others only degenerate ones."""
    return [
        good(1),
        good(2, segmentation=[]),                                         # 2: empty
        good(3, segmentation=[[1, 1, 9, 9]]),                             # 3: 2 points (a "box")
        good(4, segmentation=[[1, 1, 9, 1, 9, 9, 1]]),                    # 4: odd length
        good(5, bbox=[5, 5, 0, 20]),                                      # 5: zero width
        good(5, segmentation=rle_of(rect(0, 10, 0, 10, H + 1, W))),       # 6: RLE of another size
        good(6, segmentation=GOOD_POLYGON + [[30, 30, 40, 30]]),          # 7: kept, one part dropped
    ]


@pytest.mark.fault('degenerate COCO annotations (empty, < 3 points, odd length, zero box, wrong RLE size)')
def test_degenerate_annotations_are_skipped_with_one_counting_warning(tmp_path, polygon_spy):
    path = write(tmp_path, degenerate_annotations(), num_images=6)
    with pytest.warns(UserWarning) as caught:
        data = COCOInstance(str(tmp_path), 'train')
    messages = [str(w.message) for w in caught if str(path) in str(w.message)]
    assert len(messages) == 1, messages
    message = messages[0]
    assert 'skipped 5 of 7 annotations' in message
    assert '1 with an empty segmentation (ids 2)' in message
    assert '2 with no polygon of 3 or more points with an even number of coordinates (ids 3, 4)' in message
    assert '1 with a bbox of no width or height (ids 5)' in message
    assert '1 with an RLE of another size than its image (ids 6)' in message
    assert '4 images are left without annotations' in message
    assert 'from 1 annotations that keep other parts (ids 7)' in message
    # "6 images became 2" is now said out loud; what is left is right.
    assert data.image_ids == [1, 6]
    masks = data.masks(1)
    assert masks.shape == (1, H, W) and masks.sum() == pycocotools.mask.decode(
        pycocotools.mask.merge(pycocotools.mask.frPyObjects(GOOD_POLYGON, H, W))).sum()
    # evaluation keeps every image; the semantic dataset skips the same annotations
    with pytest.warns(UserWarning, match='skipped 5 of 7 annotations'):
        assert len(COCOInstance(str(tmp_path), 'train', skip_empty=False)) == 6
    with pytest.warns(UserWarning, match='skipped 5 of 7 annotations'):
        semantic = COCOSegmentation(str(tmp_path), 'train', min_pixels=None)
    _, mask = semantic[semantic.ids.index(3)]
    assert not mask.any()  # the 2-point "polygon" is not painted as a box


def test_validation_does_not_modify_its_input():
    content = {'images': [{'id': 1, 'height': H, 'width': W}],
               'categories': [{'id': 1, 'name': 'a'}],
               'annotations': [dict(good(1, segmentation=GOOD_POLYGON + [[1, 2]]), id=1),
                               dict(good(1, segmentation=[]), id=2)]}
    before = json.dumps(content)
    clean, report = validate_coco(content, 'in memory')
    assert json.dumps(content) == before
    assert [a['segmentation'] for a in clean['annotations']] == [GOOD_POLYGON]
    assert report.skipped == {'an empty segmentation': [2]} and report.dropped_parts == [1]
