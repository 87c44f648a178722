"""Any instance segmentation dataset as COCO ground truth, for COCO AP with pycocotools.

:func:`instances_to_coco` turns a dataset returning ``(image, boxes, class_ids, masks)``
(e.g. :class:`~gluonseg.data.ShapesInstance`) into an in-memory ``pycocotools`` COCO object
that :class:`gluonseg.utils.coco_metric.COCOInstanceMetric` accepts. Image ``i`` of the
dataset gets COCO image id ``i + 1`` and class ``k`` category id ``k + 1`` (COCO ids start
at 1). Boxes are stored as ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` (the dataset's ends are
inclusive pixel indices), masks as RLE, areas as mask pixel counts.

The result is checked like a COCO file (:func:`gluonseg.utils.coco_annotations.validate_coco`):
a non-finite box, or one more than an image size outside its image, is a
``COCOAnnotationError`` naming the image id (= dataset index + 1); objects with a box of no width
or height, or a mask of another size than the image, are left out with one warning.
"""
import numpy as np

from ..utils.coco_annotations import coco_from_dataset

__all__ = ['instances_to_coco']


def instances_to_coco(dataset, classes=None, indices=None):
    """A pycocotools ``COCO`` holding the objects of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        ``dataset[i]`` is ``(image, boxes, class_ids, masks)`` (no transform).
    classes : sequence of str, optional
        Class names (default ``dataset.classes``).
    indices : sequence of int, optional
        Only these samples (default all).

    Returns
    -------
    pycocotools.coco.COCO
        With an extra attribute ``dataset_indices``: ``{COCO image id: dataset index}``.
    """
    from pycocotools import mask as mask_utils  # lazy: optional, pip install pycocotools
    classes = list(classes if classes is not None else dataset.classes)
    indices = range(len(dataset)) if indices is None else indices
    images, annotations = [], []
    for index in indices:
        image, boxes, class_ids, masks = dataset[index][:4]
        height, width = np.asarray(image).shape[:2]
        image_id = int(index) + 1
        images.append({'id': image_id, 'width': int(width), 'height': int(height),
                       'file_name': '%d.png' % index})
        masks = np.asarray(masks, dtype=np.uint8)
        for box, class_id, mask in zip(np.asarray(boxes), np.asarray(class_ids), masks):
            if not 0 <= int(class_id) < len(classes):
                raise ValueError('sample %d has class id %d outside 0..%d'
                                 % (index, int(class_id), len(classes) - 1))
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle['counts'] = rle['counts'].decode('ascii')
            x1, y1, x2, y2 = [float(v) for v in box]
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                                'category_id': int(class_id) + 1, 'iscrowd': 0,
                                'bbox': [x1, y1, x2 - x1 + 1, y2 - y1 + 1],
                                'area': float(mask.sum()), 'segmentation': rle})
    content = {'images': images, 'annotations': annotations,
               'categories': [{'id': k + 1, 'name': name} for k, name in enumerate(classes)]}
    coco = coco_from_dataset(content, 'instances_to_coco(%s) (image id = dataset index + 1)'
                             % type(dataset).__name__)
    coco.dataset_indices = {int(i) + 1: int(i) for i in indices}
    return coco
