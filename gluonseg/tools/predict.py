"""Segment images (files, folders, wildcards) and write the results as pictures.

The code of ``scripts/segmentation/demo.py``, ``scripts/instance/demo_mask_rcnn.py`` and
``gluonseg predict`` (its command line: :mod:`gluonseg.tools.predict_options`). A semantic
model writes ``<name>_mask.png`` (palette PNG of the class ids) and ``<name>_overlay.png``
(the colours over the picture, with a legend); a Mask R-CNN writes ``<name>_instances.png``
(masks, boxes, class names and scores)::

    gluonseg predict photos/*.jpg --model deeplab_resnet101_voc --pretrained
    gluonseg predict photos/ --checkpoint runs/shapes/fcn_resnet18_shapes/best.ckpt
    gluonseg predict street.jpg --model mask_rcnn_fpn_resnet50_v1b_coco --pretrained

Images are read upright (their EXIF orientation applied) and 16-bit greyscale is scaled to
8 bits (see :func:`gluonseg.data.transforms.load_image`). An image that cannot be read (a
truncated JPEG, say) is reported by name with the reason and the others are still segmented;
the run then ends with a list of the images that have no results and exit status 1. Status 2:
nothing was segmented (bad command line, inputs or model).

A semantic model predicts at each image's own size unless ``--short N`` resizes the image so
that its shorter side is N pixels first; the mask and overlay are brought back to the image's
size (labels by nearest neighbour). Objects must appear at about the scale the model was
trained on: a Shapes model trained on 64x64 scenes fails on 128x128 ones, and segments them
with ``--short 64``. Overlays leave the background class uncoloured (``--draw-background``
colours it) and list the classes in a strip beside the picture.
"""
import collections
import glob
import os
import sys

import mxnet as mx

from ..data.instance_transforms import resize_short_within
from ..data.transforms import _resize_mask, load_image
from ..engine import load_checkpoint
from ..engine.instance_trainer import mask_rcnn_from_checkpoint
from ..model_zoo.rcnn.predict import predict_instances
from ..model_zoo.registry import UnknownModelError, model_info
from ..model_zoo.weights_table import RESIZE_RULES
from ..utils import viz
from ..utils.atomic import write_atomically
from .evaluate import (load_network, network_from_checkpoint, palette_of, save_label_png,
                       zoo_network)
# The command line, here too for the scripts that parse and run in one module.
from .predict_options import add_arguments, check_arguments, parse_args

__all__ = ['IMAGE_EXTENSIONS', 'add_arguments', 'check_arguments', 'parse_args',
           'expand_inputs', 'model_task', 'load_semantic', 'load_instance', 'resize_rule',
           'predict_labels', 'predict_semantic', 'predict_instance', 'run', 'main']

# Files taken from a folder given as input (any file named explicitly is tried).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')


def expand_inputs(inputs):
    """Image paths from files, folders (their images, sorted) and wildcards, in the given
    order, each once.

    Raises
    ------
    FileNotFoundError
        Naming an input that is no file and matches no image.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(item, name)))
            what = 'no image (%s) in the folder %s' % (', '.join(IMAGE_EXTENSIONS), item)
        elif os.path.isfile(item):
            found, what = [item], None
        else:
            found = sorted(path for path in glob.glob(item, recursive=True)
                           if os.path.isfile(path))
            what = 'no file %s' % item if not glob.has_magic(item) else \
                'no file matches %s' % item
        if not found:
            raise FileNotFoundError(what)
        paths.extend(path for path in found if path not in paths)
    return paths


def _output_names(paths):
    """A name per image (its file name without extension), refusing two the same."""
    names = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in names:
            raise ValueError('%s and %s would write the same output files (%s_*): segment '
                             'them in separate runs' % (names[name], path, name))
        names[name] = path
    return list(names)


def model_task(args):
    """``'semantic'`` or ``'instance'``: the registry's task of ``--model``, or what the
    ``--checkpoint`` holds. Returns ``(task, Checkpoint or None)``."""
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model = ckpt.get('model') or {}
        return ('instance' if model.get('builder') == 'mask_rcnn' else 'semantic'), ckpt
    task = model_info(args.model).task
    if task not in ('semantic', 'instance'):
        raise ValueError('%s is a %s model; predict draws semantic or instance segmentation'
                         % (args.model, task))
    return task, None


def load_semantic(args, ctx, ckpt=None):
    """A semantic network with its weights, its palette and its class names."""
    classes = None
    if ckpt is not None:
        net, name = network_from_checkpoint(ckpt, ctx)
        dataset = (ckpt.get('args') or {}).get('dataset')
        # The run's own class names (a folder dataset's classes.txt, say), not those of the
        # registered name, which only says the architecture.
        classes = ckpt.get('classes')
    else:
        net, name, _, _ = load_network(args, ctx)
        dataset = None
    entry = model_info(name)
    dataset = dataset or entry.dataset_id or 'voc'
    if not classes:
        classes = entry.classes
    if len(classes) != net.nclass:  # weights of other classes, whose names are unknown
        classes = None
    return net, palette_of(dataset), classes


def load_instance(args, ctx):
    """A Mask R-CNN with its weights and the resize of its run: ``(net, short, max_size)``."""
    if args.checkpoint:
        net, ckpt = mask_rcnn_from_checkpoint(args.checkpoint, ctx=ctx)
        run_args = ckpt.get('args') or {}
    else:
        net, run_args = zoo_network(args.model, args.pretrained, args.params, ctx), {}
    rule = resize_rule(net) or RESIZE_RULES['instance']
    short = args.short or run_args.get('short') or rule['short']
    max_size = args.max_size or run_args.get('max_size') or rule['max_size']
    return net, short, max_size


def resize_rule(net):
    """How ``net``'s weights expect an image resized before prediction: the ``resize`` of its
    model's record (:mod:`gluonseg.model_zoo.weights_table`); {} for the image's own size."""
    info = getattr(net, 'gluonseg_info', None)
    return dict(info.resize or {}) if info is not None else {}


def _readable_images(paths, names, failed=None):
    """``(path, name, uint8 HxWx3 image)`` of each image that can be read.

    With a list ``failed``, an image that cannot be read (a damaged file, an unsupported pixel
    type) is reported on stderr and appended to it as ``(path, reason)``; without, the error
    propagates.
    """
    for path, name in zip(paths, names):
        try:
            image = load_image(path)
        except (OSError, TypeError, ValueError) as err:
            if failed is None:
                raise
            failed.append((path, str(err)))  # load_image's errors name the file
            print('error: %s; skipped' % err, file=sys.stderr)
            continue
        yield path, name, image


def predict_labels(net, image, short=None):
    """Class ids (H, W) of a uint8 HxWx3 ``image`` at its own size; with ``short``, predicted
    on the image resized (bilinear) so that its shorter side is ``short`` pixels, and resized
    back (nearest neighbour). Without ``short``, the model's :func:`resize_rule` says."""
    if short is None:
        short = resize_rule(net).get('short')
    if short is None:
        return net.predict(image)
    resized, _ = resize_short_within(image, short, max_size=float('inf'))
    return _resize_mask(net.predict(resized), *image.shape[:2])


def predict_semantic(net, paths, names, output, palette, classes=None, alpha=0.5,
                     legend=True, failed=None, short=None, draw_background=False):
    """Write ``<name>_mask.png`` and ``<name>_overlay.png`` for every image, both at the
    image's size; returns the written paths. ``short``: see :func:`predict_labels`. With a
    list ``failed``, an image that cannot be read is reported on stderr, recorded there as
    ``(path, reason)`` and skipped; with None its error propagates."""
    written = []
    for path, name, image in _readable_images(paths, names, failed):
        labels = predict_labels(net, image, short)
        mask_path = save_label_png(os.path.join(output, name + '_mask.png'), labels, palette)
        picture = viz.overlay(image, labels, palette, alpha=alpha, classes=classes,
                              legend=legend, draw_background=draw_background)
        overlay_path = write_atomically(os.path.join(output, name + '_overlay.png'),
                                        lambda f: picture.save(f, format='PNG'))
        present = sorted(set(labels.ravel().tolist()))
        height, width = image.shape[:2]
        scale = '' if short is None else ' predicted with the short side at %d' % short
        print('%s: %dx%d%s, classes %s -> %s' % (
            path, width, height, scale,
            ', '.join(classes[c] if classes else str(c) for c in present), overlay_path))
        written += [mask_path, overlay_path]
    return written


def predict_instance(net, paths, names, output, short=800, max_size=1333, score_thresh=0.5,
                     max_dets=100, mask_thresh=0.5, alpha=0.5, legend=True, failed=None):
    """Write ``<name>_instances.png`` for every image; returns the written paths. ``failed``:
    as in :func:`predict_semantic`."""
    written = []
    for path, name, image in _readable_images(paths, names, failed):
        found = predict_instances(net, image, short=short, max_size=max_size,
                                  score_thresh=score_thresh, max_dets=max_dets,
                                  mask_thresh=mask_thresh)
        picture = viz.draw_instances(image, found, alpha=alpha, legend=legend)
        target = write_atomically(os.path.join(output, name + '_instances.png'),
                                  lambda f: picture.save(f, format='PNG'))
        counts = collections.Counter(found.class_names)  # in the order of the best score
        print('%s: %dx%d, %d detections%s -> %s' % (
            path, image.shape[1], image.shape[0], len(found),
            ''.join(' %s %d,' % item for item in counts.items()).rstrip(','), target))
        written.append(target)
    return written


def run(args, task=None):
    """Segment ``args.inputs`` with the model ``args`` name; ``task`` refuses models of the
    other task (the demo scripts). Returns the exit status."""
    try:
        paths = expand_inputs(args.inputs)
        names = _output_names(paths)
        found, ckpt = model_task(args)
        if task is not None and found != task:
            raise ValueError('%s is a model for %s segmentation; use %s' % (
                args.checkpoint or args.model, found,
                'scripts/instance/demo_mask_rcnn.py' if found == 'instance'
                else 'scripts/segmentation/demo.py'))
        ctx = mx.gpu(args.gpu) if args.gpu is not None else mx.cpu()
        if found == 'instance':
            net, short, max_size = load_instance(args, ctx)
        else:
            net, palette, classes = load_semantic(args, ctx, ckpt)
    except (OSError, ValueError, UnknownModelError) as err:  # CheckpointError is an OSError
        print('error: %s' % err, file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    failed = []
    if found == 'instance':
        net.hybridize()
        predict_instance(net, paths, names, args.output, short, max_size, args.score_thresh,
                         args.max_dets, args.mask_thresh, args.alpha, not args.no_legend,
                         failed)
    else:
        net.hybridize(static_alloc=True)
        predict_semantic(net, paths, names, args.output, palette, classes, args.alpha,
                         not args.no_legend, failed, args.short, args.draw_background)
    print('%d image(s) -> %s' % (len(paths) - len(failed), args.output))
    if not failed:
        return 0
    print('error: %d of %d image(s) could not be read and have no results:\n%s'
          % (len(failed), len(paths), '\n'.join('  %s' % reason for _, reason in failed)),
          file=sys.stderr)
    return 1


def main(argv=None, description=None, task=None):
    return run(parse_args(argv, description, task), task)
