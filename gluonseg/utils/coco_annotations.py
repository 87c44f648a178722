"""COCO-format annotations checked before pycocotools sees them.

pycocotools trusts its input: a polygon with a NaN coordinate segfaults it, one with a
coordinate of 1e9 makes it allocate tens of GB until the process is killed, and an empty
segmentation or a duplicate id makes it fail or evaluate the wrong objects. Every gluonseg
reader of COCO annotations (``COCOSegmentation``, ``COCOInstance``, ``instances_to_coco``,
``COCOInstanceMetric``, ``prepare_coco.py``) goes through :func:`validate_coco` first.

**Errors** (:class:`COCOAnnotationError`; the whole file is checked and up to
:data:`MAX_LISTED` problems are listed, each naming the image id and annotation id; nothing is
loaded):

- the file is not JSON, or not an object with an ``images`` list;
- an image without an integer ``id`` or positive integer ``height``/``width``; a duplicate image id;
- an annotation without an ``id``, a duplicate annotation id, an ``image_id`` that is not an
  image, a ``category_id`` that is not among the ``categories``;
- a coordinate (polygon point, ``bbox`` corner) that is not a finite number or lies more than
  one image size outside the image: ``x`` outside ``[-width, 2 * width]`` or ``y`` outside
  ``[-height, 2 * height]`` (real annotations stay within a pixel or two of the image);
- an ``area`` that is not a finite number in ``[0, 9 * height * width]`` (the allowed region);
- an RLE whose counts are not non-negative integers summing to ``height * width``;
- a ``segmentation`` that is neither a list of polygons nor an RLE (or is missing, where masks
  are needed).

**Degenerate annotations** are skipped, and one warning per file counts each reason:

- an empty ``segmentation``;
- no polygon with 3 or more points and an even number of coordinates (such polygon parts are
  also dropped from annotations that keep another part; pycocotools would read a 4-number
  "polygon" as a box);
- a ``bbox`` with no width or height (``w <= 0`` or ``h <= 0``);
- an RLE whose ``size`` differs from its image's ``[height, width]``.
"""
import contextlib
import io
import json
import math
import numbers
import warnings
from collections import OrderedDict

__all__ = ['COCOAnnotationError', 'ValidationReport', 'MAX_LISTED', 'read_coco_json',
           'validate_coco', 'coco_from_dataset', 'load_coco', 'checked_coco', 'segmentation_rle']

MAX_LISTED = 10

# Reasons an annotation is skipped, in the order they are tested.
EMPTY = 'an empty segmentation'
NO_POLYGON = 'no polygon of 3 or more points with an even number of coordinates'
RLE_SIZE = 'an RLE of another size than its image'
ZERO_BOX = 'a bbox of no width or height'


class COCOAnnotationError(ValueError):
    """A COCO-format file (or in-memory dataset) pycocotools must not see; the message names
    the file and the image and annotation ids of each problem."""


class ValidationReport(object):
    """What :func:`validate_coco` left out of a dataset.

    Attributes
    ----------
    source : str
        The file (or a description of the in-memory dataset).
    num_annotations : int
        Annotations in the input.
    skipped : OrderedDict
        Reason -> ids of the annotations skipped for it.
    dropped_parts : list
        Ids of annotations kept without some polygon parts (fewer than 3 points or an odd
        number of coordinates).
    emptied_images : int
        Images that had annotations and have none left.
    """

    def __init__(self, source, num_annotations):
        self.source = source
        self.num_annotations = num_annotations
        self.skipped = OrderedDict()
        self.dropped_parts = []
        self.emptied_images = 0

    @property
    def num_skipped(self):
        return sum(len(ids) for ids in self.skipped.values())

    def summary(self):
        """One line naming every reason with its count and a few ids; None if nothing was left out."""
        if not self.skipped and not self.dropped_parts:
            return None
        parts = []
        if self.skipped:
            parts.append('skipped %d of %d annotations: %s' % (
                self.num_skipped, self.num_annotations,
                '; '.join('%d with %s (ids %s)' % (len(ids), reason, _some(ids))
                          for reason, ids in self.skipped.items())))
            if self.emptied_images:
                parts.append('%d images are left without annotations' % self.emptied_images)
        if self.dropped_parts:
            parts.append('dropped polygon parts with fewer than 3 points or an odd number of '
                         'coordinates from %d annotations that keep other parts (ids %s)'
                         % (len(self.dropped_parts), _some(self.dropped_parts)))
        return '%s: %s' % (self.source, '; '.join(parts))

    def warn(self):
        """Issue :meth:`summary` as a warning (if there is anything to say)."""
        summary = self.summary()
        if summary:
            warnings.warn(summary, stacklevel=3)


def _some(ids, limit=5):
    shown = ', '.join(str(i) for i in ids[:limit])
    return shown + (', ...' if len(ids) > limit else '')


def read_coco_json(path):
    """The parsed content of a COCO-format annotation file; a named error if it is not JSON."""
    try:
        with open(path, 'rb') as f:
            content = json.load(f)
    except ValueError as err:  # JSONDecodeError and bad UTF-8
        raise COCOAnnotationError('%s is not valid JSON (%s): the file is truncated or corrupt'
                                  % (path, err)) from err
    return content


def _is_int(value):
    # exact type first: an ABC isinstance check costs seconds over COCO train's 860k annotations
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


def _is_number(value):
    return type(value) in (float, int) or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def _check_numbers(values, what):
    """None, or why ``values`` (a list) is not all finite numbers."""
    try:
        if math.isfinite(sum(values)):  # fast path: NaN/inf anywhere make the sum non-finite
            return None
    except TypeError:
        pass
    for n, value in enumerate(values):
        if not _is_number(value):
            return '%s holds %r (position %d), not a number' % (what, value, n)
        if not math.isfinite(value):
            return 'a non-finite coordinate %r in %s (position %d)' % (value, what, n)
    return None


def _check_bounds(values, width, height, what):
    """None, or why the finite ``x, y, x, y, ...`` list ``values`` is too far outside the image."""
    for axis, coords, size in (('x', values[0::2], width), ('y', values[1::2], height)):
        if coords and (min(coords) < -size or max(coords) > 2 * size):
            value = min(coords) if min(coords) < -size else max(coords)
            return ('%s=%r in %s, more than one image size outside the %dx%d image (allowed: '
                    '%d..%d)' % (axis, value, what, width, height, -size, 2 * size))
    return None


def _rle_string_counts(counts):
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``)."""
    codes = counts if isinstance(counts, bytes) else counts.encode('ascii')
    runs, position, end = [], 0, len(codes)
    while position < end:
        value = shift = 0
        more = True
        while more:
            if position >= end:
                raise ValueError('it ends inside a number')
            code = codes[position] - 48
            if not 0 <= code < 64:
                raise ValueError('character %r is not an RLE digit' % chr(codes[position]))
            value |= (code & 0x1f) << shift
            more = code & 0x20
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_rle(segmentation, height, width):
    """(problem, degenerate reason): either may be None."""
    size = segmentation.get('size')
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        return 'an RLE with size %r instead of [height, width]' % (size,), None
    if list(size) != [height, width]:
        return None, RLE_SIZE
    counts = segmentation['counts']
    if isinstance(counts, list):
        if not all(_is_int(v) and v >= 0 for v in counts):
            return 'an RLE whose counts are not all non-negative integers', None
        runs = counts
    elif isinstance(counts, (str, bytes)):
        try:
            runs = _rle_string_counts(counts)
        except (ValueError, UnicodeEncodeError) as err:
            return 'a compressed RLE that cannot be read (%s)' % err, None
        if any(v < 0 for v in runs):
            return 'a compressed RLE with a negative run length', None
    else:
        return 'an RLE whose counts are a %s' % type(counts).__name__, None
    if sum(runs) != height * width:
        return ('an RLE whose counts sum to %d, but its %dx%d image has %d pixels'
                % (sum(runs), width, height, height * width)), None
    return None, None


def _check_segmentation(segmentation, height, width):
    """(problem, degenerate reason, polygons to keep or None, number of dropped parts)."""
    if isinstance(segmentation, dict):
        if 'counts' not in segmentation:
            return 'a segmentation dict without "counts" (neither polygons nor an RLE)', None, None, 0
        problem, reason = _check_rle(segmentation, height, width)
        return problem, reason, None, 0
    if not isinstance(segmentation, list):
        return ('a segmentation of type %s, neither a list of polygons nor an RLE'
                % type(segmentation).__name__), None, None, 0
    if not segmentation:
        return None, EMPTY, None, 0
    kept = []
    for n, polygon in enumerate(segmentation):
        if not isinstance(polygon, list):
            return ('%r at position %d of its segmentation, where a polygon (a list of numbers) '
                    'belongs' % (polygon, n)), None, None, 0
        what = 'polygon %d' % n
        problem = _check_numbers(polygon, what) or _check_bounds(polygon, width, height, what)
        if problem:
            return problem, None, None, 0
        if len(polygon) >= 6 and len(polygon) % 2 == 0:
            kept.append(polygon)
    if not kept:
        return None, NO_POLYGON, None, 0
    return None, None, kept, len(segmentation) - len(kept)


def _check_box_and_area(ann, height, width):
    """(problem, degenerate reason)."""
    bbox = ann.get('bbox')
    reason = None
    if bbox is not None:
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            return 'a bbox %r instead of [x, y, width, height]' % (bbox,), None
        problem = _check_numbers(list(bbox), 'bbox')
        if problem:
            return problem, None
        x, y, w, h = bbox
        problem = _check_bounds([x, y, x + w, y + h], width, height, 'bbox %r' % (list(bbox),))
        if problem:
            return problem, None
        if w <= 0 or h <= 0:
            reason = ZERO_BOX
    area = ann.get('area')
    if area is not None:
        limit = 9 * height * width
        if not (_is_number(area) and math.isfinite(area) and 0 <= area <= limit):
            return 'area %r (not a number in 0..%d, the area of the allowed region)' % (area, limit), None
    return None, reason


def _check_images(images, problems):
    """{image id: (height, width)} of the valid image records; the others go to ``problems``."""
    sizes = {}
    for n, info in enumerate(images):
        if not isinstance(info, dict) or not _is_int(info.get('id')):
            problems.append('images[%d] has no integer "id" (got %r)'
                            % (n, info.get('id') if isinstance(info, dict) else info))
            continue
        image_id = info['id']
        height, width = info.get('height'), info.get('width')
        if image_id in sizes:
            problems.append('image %d appears twice in "images"' % image_id)
        elif not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
            problems.append('image %d has height %r and width %r; both must be positive integers'
                            % (image_id, height, width))
        else:
            sizes[image_id] = (height, width)
    return sizes


def validate_coco(dataset, source, require_segmentation=True):
    """Check a parsed COCO-format dataset; return it without its degenerate annotations.

    Parameters
    ----------
    dataset : dict
        The parsed file: ``images``, and optionally ``annotations`` and ``categories``.
        It is not modified.
    source : str
        The file name (or a description of an in-memory dataset), used in every message.
    require_segmentation : bool, default True
        Whether an annotation without ``segmentation`` is an error (it is fine for box-only use).

    Returns
    -------
    (dict, ValidationReport)
        A shallow copy of ``dataset`` whose ``annotations`` are the usable ones (annotations
        that lost polygon parts are copies; the others are the input's dicts), and what was
        left out. Call ``report.warn()`` to tell the user.

    Raises
    ------
    COCOAnnotationError
        Something listed under "Errors" in the module description.
    """
    if not isinstance(dataset, dict) or not isinstance(dataset.get('images'), list):
        raise COCOAnnotationError('%s is not a COCO annotation file: it needs a JSON object with '
                                  'an "images" list (got %s)' % (source, _describe(dataset)))
    annotations = dataset.get('annotations', [])
    categories = dataset.get('categories', [])
    for key, value in (('annotations', annotations), ('categories', categories)):
        if not isinstance(value, list):
            raise COCOAnnotationError('%s: "%s" must be a list, got %s' % (source, key, _describe(value)))
    problems = []
    sizes = _check_images(dataset['images'], problems)
    category_ids = []
    for n, category in enumerate(categories):
        if isinstance(category, dict) and _is_int(category.get('id')):
            category_ids.append(category['id'])
        else:
            problems.append('categories[%d] has no integer "id" (got %r)' % (n, category))
    known_categories = set(category_ids)
    report = ValidationReport(source, len(annotations))
    kept, seen_ids = [], set()
    annotated, still_annotated = set(), set()
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not _is_int(ann.get('id')):
            problems.append('annotations[%d] has no integer "id" (got %r)'
                            % (n, ann.get('id') if isinstance(ann, dict) else ann))
            continue
        ann_id, image_id = ann['id'], ann.get('image_id')
        if ann_id in seen_ids:
            problems.append('annotation id %d appears twice in "annotations"' % ann_id)
            continue
        seen_ids.add(ann_id)
        if not _is_int(image_id) or image_id not in sizes:
            problems.append('annotation %d refers to image %r, which is not a valid entry of '
                            '"images"' % (ann_id, image_id))
            continue
        where = 'image %d, annotation %d' % (image_id, ann_id)
        annotated.add(image_id)
        category_id = ann.get('category_id')
        if not (_is_int(category_id) and category_id in known_categories):
            problems.append('%s has category_id %r, which is not among the categories %s'
                            % (where, category_id, category_ids))
            continue
        height, width = sizes[image_id]
        reason, keep_polygons, dropped = None, None, 0
        if 'segmentation' in ann or require_segmentation:
            problem, reason, keep_polygons, dropped = _check_segmentation(
                ann.get('segmentation'), height, width)
            if problem:
                problems.append('%s has %s' % (where, problem))
                continue
        problem, box_reason = _check_box_and_area(ann, height, width)
        if problem:
            problems.append('%s has %s' % (where, problem))
            continue
        reason = reason or box_reason
        if reason:
            report.skipped.setdefault(reason, []).append(ann_id)
            continue
        if dropped:
            report.dropped_parts.append(ann_id)
            ann = dict(ann, segmentation=keep_polygons)
        kept.append(ann)
        still_annotated.add(image_id)
    if problems:
        shown = '\n  '.join(problems[:MAX_LISTED])
        more = '\n  ... and %d more' % (len(problems) - MAX_LISTED) if len(problems) > MAX_LISTED else ''
        raise COCOAnnotationError(
            '%s: %d invalid entr%s; nothing was loaded (pycocotools would crash on or misread '
            'such entries). Fix or remove:\n  %s%s'
            % (source, len(problems), 'y' if len(problems) == 1 else 'ies', shown, more))
    report.emptied_images = len(annotated - still_annotated)
    clean = dict(dataset)
    clean['annotations'] = kept
    return clean, report


def _describe(value):
    if isinstance(value, dict):
        return 'an object with keys %s' % sorted(value)[:10]
    return 'a %s' % type(value).__name__


def _pycocotools_index(dataset):
    from pycocotools.coco import COCO  # lazy: optional, pip install pycocotools
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def coco_from_dataset(dataset, source, require_segmentation=True):
    """A pycocotools ``COCO`` of the usable annotations of ``dataset`` (see :func:`validate_coco`).

    Warns once when annotations were left out.
    """
    clean, report = validate_coco(dataset, source, require_segmentation)
    report.warn()
    return _pycocotools_index(clean)


def load_coco(path, require_segmentation=True):
    """A pycocotools ``COCO`` of the COCO-format file ``path``, checked by :func:`validate_coco`."""
    return coco_from_dataset(read_coco_json(path), path, require_segmentation)


def checked_coco(coco, source, require_segmentation=True):
    """An already loaded pycocotools ``COCO`` checked by :func:`validate_coco`.

    Returns ``coco`` itself when nothing is left out, else a new ``COCO`` of the usable
    annotations (``coco`` is not modified) after one warning.
    """
    clean, report = validate_coco(coco.dataset, source, require_segmentation)
    if report.summary() is None:
        return coco
    report.warn()
    return _pycocotools_index(clean)


def segmentation_rle(segmentation, height, width):
    """The RLE of a checked annotation's segmentation: polygons, uncompressed or compressed RLE."""
    from pycocotools import mask as mask_utils  # lazy: optional, pip install pycocotools
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation['counts'], list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation  # compressed RLE
