"""Train Mask R-CNN.

With no arguments it trains a small Mask R-CNN (FPN, ResNet-18 from scratch, narrow heads) on
the built-in synthetic ShapesInstance data at 128x128 on the CPU in a few minutes, and prints
the validation box and mask AP::

    python scripts/instance/train_mask_rcnn.py

2 epochs of 1000 scenes, batch 4, 500 iterations: mask AP 0.768 (AP50 0.961), box AP 0.737 on
the 100 validation scenes, 0.51 after the first epoch (docs/training.md has the date and time).

COCO 2017 (prepared with ``scripts/datasets/prepare_coco.py``) with GluonCV's published recipe
(8 devices x 1 image, lr 0.01, warmup 1000 iterations from lr/3, x0.1 at epochs 17 and 23, 26
epochs, frozen BatchNorm, stem and stage 1 frozen)::

    python scripts/instance/train_mask_rcnn.py --dataset coco --network resnet50_v1b \\
        --gpus 0,1,2,3,4,5,6,7 [--fpn]

Any COCO-format data: ``--dataset coco --train-json A.json --train-images DIR --val-json
B.json --val-images DIR``. Fine-tune a published model on other classes with ``--init-from
mask_rcnn_fpn_resnet50_v1b_coco`` (rows of classes with the same name are kept). A killed run
continues where it stopped with ``--resume`` (same arguments otherwise).

The same as ``gluonseg train --task instance`` (code: ``gluonseg/tools/instance_train.py``).
"""
import os
import sys

# Limit OpenMP threads before MXNet is imported: oversubscribed cores make CPU training crawl.
os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import train  # noqa: E402


def main(argv=None):
    return train.main(argv, description=__doc__.split('\n\n')[0], task='instance')


if __name__ == '__main__':
    sys.exit(main())
