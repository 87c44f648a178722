"""Prepare COCO 2017 for gluonseg: download, verify and extract the images and annotations.

Result: ``ROOT/{train2017,val2017}/*.jpg`` and ``ROOT/annotations/instances_{train,val}2017.json``,
read by ``gluonseg.data.COCOSegmentation`` and ``gluonseg.data.COCOInstance``. ROOT defaults to
``$GLUONSEG_HOME/datasets/coco``.

    python scripts/datasets/prepare_coco.py                         # download (20 GB)
    python scripts/datasets/prepare_coco.py --splits val            # annotations + val2017 only (1 GB)
    python scripts/datasets/prepare_coco.py --download-dir ~/archives --offline

An archive that fails (download, SHA-1, extraction) is reported by name and the others are still
prepared; each ``instances_<split>2017.json`` is then checked as the loaders will check it
(invalid annotations are named by image and annotation id). The exit status is 1 if anything
failed, after a summary of every failure.
"""
import sys

from gluonseg.data.prepare import main as prepare_main


def main(argv=None):
    """Command-line entry; returns the exit status."""
    return prepare_main('coco', argv)


if __name__ == '__main__':
    sys.exit(main())
