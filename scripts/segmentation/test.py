"""Evaluate a segmentation model: pixAcc, mIoU and per-class IoU, printed and written as JSON.

A checkpoint written by train.py is evaluated with the dataset, split and sizes of its run
(so this reproduces the run's final validation mIoU)::

    python scripts/segmentation/test.py runs/shapes/fcn_resnet18_shapes/latest.ckpt

A zoo model with its published weights, on full-size images, optionally multi-scale + flip::

    python scripts/segmentation/test.py --model deeplab_resnet101_voc --pretrained \\
        --dataset voc --split val --multi-scale --gpus 0

``--save-predictions DIR`` also writes every prediction as ``DIR/<image id>.png``, an 8-bit
palette PNG of the class ids at the original image size. On the VOC2012 test split, which has
no labels, that is the test server's submission (then ``tar -czf results.tgz results``)::

    python scripts/segmentation/test.py --model deeplab_resnet101_voc --pretrained \\
        --dataset voc --split test --multi-scale --gpus 0 \\
        --save-predictions results/VOC2012/Segmentation/comp6_test_cls

A sample whose image or label cannot be read (a truncated JPEG, a label of another size
than its image) is named with the reason and left out: the output says how many samples were
scored, the JSON lists those left out, and the exit status is 1. A .params file is evaluated
with ``--model NAME --params FILE``, a checkpoint as the positional argument; each is refused,
with that advice, in the other place.

The same as ``gluonseg eval`` (code: ``gluonseg/tools/evaluate.py``).
"""
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import evaluate  # noqa: E402


def main(argv=None):
    return evaluate.main(argv, description=__doc__.split('\n\n')[0])


if __name__ == '__main__':
    sys.exit(main())
