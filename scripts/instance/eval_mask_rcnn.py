"""Evaluate Mask R-CNN: COCO box and mask AP through pycocotools.

A published model on COCO val2017 (short side 800, long side at most 1333, detections with
score >= 0.001, the best 100 per image, masks pasted with the accurate sub-pixel paste)::

    python scripts/instance/eval_mask_rcnn.py --model mask_rcnn_fpn_resnet50_v1b_coco --pretrained

A training checkpoint, on the data it was validated on (e.g. the Shapes run of
``train_mask_rcnn.py``)::

    python scripts/instance/eval_mask_rcnn.py runs/instance/shapes/.../best.ckpt

``gluonseg.optimize``'s CPU paths (fused float32: the same detections; int8: quantized by
oneDNN, calibrated on the first ``--num-calib-batches`` images of the *training* split, never
the evaluated one)::

    python scripts/instance/eval_mask_rcnn.py CKPT --optimize int8 --calib-mode naive

It prints pycocotools' bbox and segm tables and an AP summary, and writes the detections in
the COCO results format (``PREFIX_bbox.json``, ``PREFIX_segm.json``) and the AP numbers
(``PREFIX_metrics.json``).

The same as ``gluonseg eval`` with a Mask R-CNN (code: ``gluonseg/tools/instance_evaluate.py``).
"""
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import evaluate  # noqa: E402


def main(argv=None):
    return evaluate.main(argv, description=__doc__.split('\n\n')[0], task='instance')


if __name__ == '__main__':
    sys.exit(main())
