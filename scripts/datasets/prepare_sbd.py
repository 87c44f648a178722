"""Prepare SBD (the "VOC Aug" annotations) for gluonseg: download, verify and extract benchmark.tgz.

Result: ``ROOT/benchmark_RELEASE/dataset/{img,cls,train.txt,val.txt}``, read by
``gluonseg.data.VOCAugSegmentation``. ROOT defaults to ``$GLUONSEG_HOME/datasets/voc``, the
same folder as VOC 2012 (``prepare_voc.py``), which the ``train_aug`` split also needs.

    python scripts/datasets/prepare_sbd.py                          # download (1.4 GB)
    python scripts/datasets/prepare_sbd.py --download-dir ~/archives --offline

A failing archive is reported by name with the reason; the exit status is then 1.
"""
import sys

from gluonseg.data.prepare import main as prepare_main


def main(argv=None):
    """Command-line entry; returns the exit status."""
    return prepare_main('sbd', argv)


if __name__ == '__main__':
    sys.exit(main())
