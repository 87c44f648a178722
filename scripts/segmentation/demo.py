"""Segment images with a semantic segmentation model: coloured masks and overlays.

For every image (files, folders of images, wildcards) it writes ``<name>_mask.png``, the class
ids as an 8-bit palette PNG in the dataset's colours, and ``<name>_overlay.png``, the colours
blended over the picture (the background class left uncoloured unless ``--draw-background``)
with a legend of the classes present in a strip beside it::

    python scripts/segmentation/demo.py photos/*.jpg --model deeplab_resnet101_voc --pretrained
    python scripts/segmentation/demo.py scene.png \\
        --checkpoint runs/shapes/fcn_resnet18_shapes/best.ckpt
    python scripts/segmentation/demo.py photos/ --model fcn_resnet50_ade --params my.params \\
        --output runs/demo --alpha 0.6
    python scripts/segmentation/demo.py big_scene.png --short 64 \\
        --checkpoint runs/shapes/fcn_resnet18_shapes/best.ckpt

A model predicts at the image's own size, and sees objects well only at about the scale it was
trained on: a Shapes model trained on 64x64 scenes fails on 128x128 ones. ``--short N`` resizes
each image so that its shorter side is N pixels before predicting; the mask and overlay keep
the image's size (labels resized back by nearest neighbour).

Photos are turned upright by their EXIF orientation. An image that cannot be read (a
truncated JPEG, say) is named with the reason and skipped, the others are segmented, and the
run ends with the list of images without results and exit status 1.

The same as ``gluonseg predict`` (code: ``gluonseg/tools/predict.py``).
"""
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

from gluonseg.tools import predict  # noqa: E402


def main(argv=None):
    return predict.main(argv, description=__doc__.split('\n\n')[0], task='semantic')


if __name__ == '__main__':
    sys.exit(main())
