"""Detect and segment objects with Mask R-CNN: masks, boxes, class names and scores drawn.

For every image (files, folders of images, wildcards) it writes ``<name>_instances.png``::

    python scripts/instance/demo_mask_rcnn.py street.jpg --model mask_rcnn_fpn_resnet50_v1b_coco \\
        --pretrained
    python scripts/instance/demo_mask_rcnn.py scenes/ \\
        --checkpoint runs/instance/shapes/mask_rcnn_fpn_resnet18_v1b_small/best.ckpt

Images are resized as the model was evaluated (short side 800, long side at most 1333, or the
checkpoint's run), and detections scoring at least ``--score-thresh`` (0.5) are drawn in the
original pixels. The same as ``gluonseg predict`` (code: ``gluonseg/tools/predict.py``).
"""
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import predict  # noqa: E402


def main(argv=None):
    return predict.main(argv, description=__doc__.split('\n\n')[0], task='instance')


if __name__ == '__main__':
    sys.exit(main())
