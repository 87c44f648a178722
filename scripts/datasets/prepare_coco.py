"""Prepare COCO 2017 for gluonseg: download, verify and extract the images and annotations.

Result: ``ROOT/{train2017,val2017}/*.jpg`` and ``ROOT/annotations/instances_{train,val}2017.json``,
read by ``gluonseg.data.COCOSegmentation`` and ``gluonseg.data.COCOInstance``. ROOT defaults to
``$GLUONSEG_HOME/datasets/coco``.

    python scripts/datasets/prepare_coco.py                         # download (20 GB)
    python scripts/datasets/prepare_coco.py --splits val            # annotations + val2017 only (1 GB)
    python scripts/datasets/prepare_coco.py --download-dir ~/archives --offline
"""
import sys

from gluonseg.data.prepare import main as prepare_main


def main(argv=None):
    """Command-line entry; returns the exit status."""
    return prepare_main('coco', argv)


if __name__ == '__main__':
    sys.exit(main())
