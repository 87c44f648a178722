"""Prepare Pascal VOC 2012 for gluonseg: download, verify (SHA-1) and extract the trainval tar.

Result: ``ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``, read by
``gluonseg.data.VOCSegmentation``; ROOT defaults to ``$GLUONSEG_HOME/datasets/voc``.

    python scripts/datasets/prepare_voc.py                          # download (2 GB)
    python scripts/datasets/prepare_voc.py --download-dir ~/archives --offline   # tar already here

A failing archive is reported by name with the reason; the exit status is then 1.
"""
import sys

from gluonseg.data.prepare import main as prepare_main


def main(argv=None):
    """Command-line entry; returns the exit status."""
    return prepare_main('voc', argv)


if __name__ == '__main__':
    sys.exit(main())
