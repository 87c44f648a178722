"""Train a semantic segmentation model.

With no arguments it trains ``fcn_resnet18_shapes`` from scratch on the built-in synthetic
Shapes data on the CPU (no download) in a few minutes and prints the validation mIoU::

    python scripts/segmentation/train.py

Real datasets (prepared with ``scripts/datasets/``) start from ImageNet backbones::

    python scripts/segmentation/train.py --model deeplab_resnet101_voc --dataset voc_aug \\
        --gpus 0,1,2,3 --batch-size 4 --aux --syncbn
    python scripts/segmentation/train.py --method psp --backbone resnet50 --dataset voc --gpus 0

A killed run continues where it stopped with ``--resume`` (same arguments otherwise).

The same as ``gluonseg train`` (code: ``gluonseg/tools/train.py``).
"""
import os
import sys

# Limit OpenMP threads before MXNet is imported: oversubscribed cores make CPU training crawl.
os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import train  # noqa: E402


def main(argv=None):
    return train.main(argv, description=__doc__.split('\n\n')[0])


if __name__ == '__main__':
    sys.exit(main())
