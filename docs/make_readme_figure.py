"""Draw the README's picture: Shapes validation scenes with what the two default runs predict.

Each row is one scene of the built-in Shapes validation set (never seen in training): the
image, the semantic prediction of ``train.py``'s checkpoint over it, the ground truth, and the
instances found by ``train_mask_rcnn.py``'s checkpoint (both default runs of the quick start)::

    python scripts/segmentation/train.py
    python scripts/instance/train_mask_rcnn.py
    python docs/make_readme_figure.py \\
        --semantic runs/shapes/fcn_resnet18_shapes/best.ckpt \\
        --instance runs/instance/shapes/mask_rcnn_fpn_resnet18_v1b_small/best.ckpt
"""
import argparse
import os
import sys

import mxnet as mx
import numpy as np
from PIL import Image, ImageDraw

from gluonseg.data.shapes import ShapesSegmentation
from gluonseg.engine import load_checkpoint
from gluonseg.engine.instance_trainer import mask_rcnn_from_checkpoint
from gluonseg.model_zoo.rcnn.predict import predict_instances
from gluonseg.tools.evaluate import network_from_checkpoint
from gluonseg.utils import viz
from gluonseg.utils.atomic import write_atomically

HERE = os.path.dirname(os.path.abspath(__file__))
# circle, square, triangle in colours that stand out on any Shapes background; the
# background label is left uncoloured.
PALETTE = [(0, 0, 0), (230, 25, 75), (255, 225, 25), (0, 130, 200)]
COLUMNS = ('image', 'FCN-R18 (train.py)', 'ground truth', 'Mask R-CNN (train_mask_rcnn.py)')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--semantic', required=True, help='a train.py checkpoint on Shapes')
    p.add_argument('--instance', required=True, help='a train_mask_rcnn.py checkpoint on Shapes')
    p.add_argument('--scenes', type=int, nargs='+', default=[0, 1, 2],
                   help='indices of Shapes val scenes')
    p.add_argument('--size', type=int, default=128, help='scene size in pixels')
    p.add_argument('--zoom', type=int, default=2, help='each panel is drawn this much larger')
    p.add_argument('--output', default=os.path.join(HERE, 'images', 'shapes_predictions.png'))
    return p.parse_args(argv)


def semantic_labels(net, run_size, image):
    """Class ids at the image's size, predicted at the size the model was trained on (Shapes
    scale their objects with the scene, so a 64-pixel model sees 64-pixel scenes)."""
    side = image.shape[0]
    small = np.asarray(Image.fromarray(image).resize((run_size, run_size), Image.BILINEAR))
    labels = net.predict(small).astype(np.uint8)
    return np.asarray(Image.fromarray(labels).resize((side, side), Image.NEAREST))


def _uncoloured_background(labels):
    return np.where(labels == 0, viz.IGNORE_INDEX, labels)


def panels(image, semantic, instance_net, instance_run, truth):
    """The four pictures of one row, as PIL images of the scene's size."""
    labels = semantic_labels(*semantic, image)
    found = predict_instances(instance_net, image, short=instance_run.get('short', 128),
                              max_size=instance_run.get('max_size', 128), score_thresh=0.5)
    return [Image.fromarray(image),
            viz.overlay(image, _uncoloured_background(labels), PALETTE, alpha=0.6, legend=False),
            viz.overlay(image, _uncoloured_background(truth), PALETTE, alpha=0.6, legend=False),
            viz.draw_instances(image, found, legend=False)]


def main(argv=None):
    args = parse_args(argv)
    semantic_ckpt = load_checkpoint(args.semantic)
    semantic_net, _ = network_from_checkpoint(semantic_ckpt, ctx=mx.cpu())
    semantic = (semantic_net, (semantic_ckpt.get('args') or {}).get('crop_size', args.size))
    instance_net, ckpt = mask_rcnn_from_checkpoint(args.instance)
    scenes = ShapesSegmentation('val', size=args.size, seed=0)
    side = args.size * args.zoom
    title = 18
    sheet = Image.new('RGB', (side * len(COLUMNS), title + side * len(args.scenes)), 'white')
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(COLUMNS):
        draw.text((column * side + 4, 3), name, fill='black')
    for row, index in enumerate(args.scenes):
        image, truth = scenes[index]
        for column, panel in enumerate(panels(np.asarray(image), semantic, instance_net,
                                              ckpt.get('args') or {}, np.asarray(truth))):
            sheet.paste(panel.resize((side, side), Image.NEAREST),
                        (column * side, title + row * side))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    write_atomically(args.output, lambda f: sheet.save(f, format='PNG'))
    print('Wrote %s (%dx%d)' % (args.output, sheet.width, sheet.height))
    return 0


if __name__ == '__main__':
    sys.exit(main())
