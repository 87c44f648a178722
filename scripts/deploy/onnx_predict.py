"""Segment images with a gluonseg ONNX export in onnxruntime: no MXNet needed.

    python scripts/deploy/onnx_predict.py --model deeplab.onnx --input photos/ --out-dir out
    python scripts/deploy/onnx_predict.py --model mask_rcnn.onnx --input street.jpg --out-dir out

The file's outputs say what it holds (:mod:`gluonseg.model_zoo.onnx_export`): ``logits``, a
semantic model (FCN, PSPNet, DeepLabV3); ``ids``, ``scores``, ``boxes`` and ``masks``, a
Mask R-CNN. For every image ``<name>.<ext>`` (a folder's images, sorted, or one file) it writes
into ``--out-dir`` and prints one line:

semantic
    ``<name>_mask.png``: an 8-bit palette PNG at the image's size whose pixel values are the
    class ids (``--palette``'s colours), as ``gluonseg predict`` writes it.
instance
    ``<name>_detections.json``: ``{"image", "width", "height", "detections": [{"class_id",
    "score", "box": [x1, y1, x2, y2]}, ...]}``, best first, boxes in the original image's
    pixels (clipped to it); ``<name>_instances.png``: an 8-bit palette PNG at the image's size
    whose pixel value k is the k-th detection of the JSON (1-based; 0: none; where masks
    overlap, the higher score).

What runs outside the graph is gluonseg's own code, so the results are ``net.predict``'s:
the image is read upright (:func:`~gluonseg.data.transforms.load_image`) and normalized with
ImageNet's mean and std on 0..1 RGB (:func:`~gluonseg.data.transforms.normalize_image`). A
Mask R-CNN sees it resized so that its short side is 800 pixels and its long side at most 1333
(``--resize SHORT [MAX_SIZE]``; ``RESIZE_RULES['instance']`` of
:mod:`gluonseg.model_zoo.weights_table`, :func:`~gluonseg.data.transforms.short_within_size`), and its outputs are turned into
detections in the image's pixels with full-size masks by
:func:`~gluonseg.utils.paste.paste_detections`. A semantic model predicts at the image's own
size; ``--resize SHORT`` predicts with the short side at SHORT pixels and brings the class ids
back by nearest neighbour (``gluonseg predict --short``).

The one step without a gluonseg function free of MXNet is the bilinear resize, which gluonseg
does with MXNet's ``mx.image.imresize(interp=1)`` (OpenCV's ``INTER_LINEAR``): here
:func:`resize_bilinear` computes it in NumPy with the same sampling positions, in floating
point, within one grey level of OpenCV's fixed-point values (tested).

Why it imports gluonseg rather than copying it: the image reader (EXIF orientation, 16-bit
greyscale), the normalization, the resize rule and the mask paste are then the very functions
``net.predict`` uses, not copies that could drift. The modules it imports load NumPy and Pillow
only (tests/test_onnx_deploy_script.py runs this script where ``import mxnet`` fails, and
checks that gluonseg's other dependencies, requests, tqdm and SciPy, stay unloaded too). On a
machine without MXNet::

    pip install onnxruntime Pillow              # or onnxruntime-gpu; any NumPy they want
    pip install --no-deps /path/to/gluonseg     # the source folder or a wheel; or PYTHONPATH

(``--no-deps`` because gluonseg pins ``numpy<1.24`` for MXNet, which is not installed here.)
An image that cannot be read is named with the reason and skipped; the run then ends with
exit status 1 (2: nothing was done: a bad model, input or option).
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

from gluonseg.data.transforms import _resize_mask, load_image, normalize_image, short_within_size
from gluonseg.utils.atomic import write_atomically
from gluonseg.utils.paste import paste_detections
from gluonseg.utils.viz import PALETTE_NAMES, colorize_mask

# Mask R-CNN's resize, RESIZE_RULES['instance'] of gluonseg.model_zoo.weights_table (not
# imported: that module loads the model registry and its download code, requests and tqdm;
# tests/test_onnx_deploy_script.py checks that the two agree).
INSTANCE_RESIZE = {'short': 800, 'max_size': 1333}
SEMANTIC_OUTPUTS = ('logits',)
INSTANCE_OUTPUTS = ('ids', 'scores', 'boxes', 'masks')
# The images taken from a folder (as gluonseg predict takes them).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')
# Detections numbered in one 8-bit instance PNG (0 is "none").
MAX_INSTANCES = 255


def resize_bilinear(image, height, width):
    """uint8 (H, W, C) ``image`` resized to ``(height, width)`` as OpenCV's ``INTER_LINEAR``
    (what ``mx.image.imresize(..., interp=1)`` calls): each output pixel centre mapped to the
    input, ``x = (i + 0.5) * W / width - 0.5``, the two nearest input pixels blended linearly
    (edge pixels repeated outside), no antialiasing; rounded to uint8."""
    def taps(size, new_size):
        position = (np.arange(new_size) + 0.5) * (size / new_size) - 0.5
        left = np.floor(position).astype(np.int64)
        weight = position - left
        weight[left < 0] = 0.0
        weight[left >= size - 1] = 0.0
        left = np.clip(left, 0, size - 1)
        return left, np.minimum(left + 1, size - 1), weight

    image = np.asarray(image)
    top, bottom, wy = taps(image.shape[0], height)
    left, right, wx = taps(image.shape[1], width)
    pixels = image.astype(np.float64)
    rows = pixels[top] * (1 - wy)[:, None, None] + pixels[bottom] * wy[:, None, None]
    out = rows[:, left] * (1 - wx)[None, :, None] + rows[:, right] * wx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def image_paths(source):
    """The images of a folder (sorted by name) or the one file ``source``."""
    if os.path.isdir(source):
        paths = sorted(os.path.join(source, name) for name in os.listdir(source)
                       if name.lower().endswith(IMAGE_EXTENSIONS)
                       and os.path.isfile(os.path.join(source, name)))
        if not paths:
            raise ValueError('no image (%s) in the folder %s' % (', '.join(IMAGE_EXTENSIONS),
                                                                  source))
    elif os.path.isfile(source):
        paths = [source]
    else:
        raise ValueError('no file or folder %s' % source)
    stems = collections.Counter(os.path.splitext(os.path.basename(p))[0] for p in paths)
    twins = sorted(stem for stem, count in stems.items() if count > 1)
    if twins:
        raise ValueError('images named %s differ only by extension and would write the same '
                         'output files: rename one' % ', '.join(twins))
    return paths


def open_session(model, providers):
    """An onnxruntime session of ``model`` and its kind, ``'semantic'`` or ``'instance'``."""
    try:
        import onnxruntime as ort  # lazy: the module's helpers (resize_bilinear) need none
    except ImportError as err:
        raise ImportError('onnxruntime is not installed: pip install onnxruntime (or '
                          'onnxruntime-gpu)') from err
    if not os.path.isfile(model):
        raise ValueError('no ONNX file %s' % model)
    available = ort.get_available_providers()
    if providers is None:
        providers = [p for p in ('CUDAExecutionProvider', 'CPUExecutionProvider')
                     if p in available]
    unknown = [p for p in providers if p not in available]
    if unknown:
        raise ValueError('onnxruntime here has no %s; available: %s'
                         % (', '.join(unknown), ', '.join(available)))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # dynamic shapes make the memory planner chatty
    try:
        session = ort.InferenceSession(model, options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types
        raise ValueError('onnxruntime cannot load %s: %s' % (model, err)) from None
    outputs = {o.name for o in session.get_outputs()}
    if set(SEMANTIC_OUTPUTS) <= outputs:
        kind = 'semantic'
    elif set(INSTANCE_OUTPUTS) <= outputs:
        kind = 'instance'
    else:
        raise ValueError('%s has the outputs %s, neither a semantic model\'s (%s) nor a Mask '
                         'R-CNN\'s (%s)' % (model, ', '.join(sorted(outputs)),
                                           ', '.join(SEMANTIC_OUTPUTS),
                                           ', '.join(INSTANCE_OUTPUTS)))
    if len(session.get_inputs()) != 1:
        raise ValueError('%s takes %d inputs; a gluonseg export takes one (data)'
                         % (model, len(session.get_inputs())))
    return session, kind


def run_network(session, x, outputs):
    """``session`` on the (1, 3, H, W) batch ``x``, refusing a size a fixed-size export
    cannot take."""
    declared = session.get_inputs()[0]
    fixed = [d if isinstance(d, int) else None for d in declared.shape[2:]]
    if any(d is not None and d != n for d, n in zip(fixed, x.shape[2:])):
        raise ValueError('the model takes %sx%s inputs only (exported with dynamic=False), '
                         'got %dx%d: export it with dynamic=True' % (fixed[0], fixed[1],
                                                                     *x.shape[2:]))
    return session.run(list(outputs), {declared.name: x})


def predict_semantic(session, image, short=None):
    """Class ids (H, W) int32 of a uint8 (H, W, 3) ``image`` at its own size (predicted with
    the short side at ``short`` pixels when given)."""
    height, width = image.shape[:2]
    if short is not None:
        image = resize_bilinear(image, *short_within_size(height, width, short, float('inf')))
    (logits,) = run_network(session, normalize_image(image)[None], SEMANTIC_OUTPUTS)
    labels = logits[0].argmax(axis=0).astype(np.int32)
    return _resize_mask(labels, height, width)


def predict_instance(session, image, short, max_size, score_thresh, max_dets):
    """``(class_ids, scores, boxes, masks)`` of :func:`paste_detections` for a uint8
    (H, W, 3) ``image``, in its own pixels."""
    height, width = image.shape[:2]
    new_h, new_w = short_within_size(height, width, short, max_size)
    x = normalize_image(resize_bilinear(image, new_h, new_w))[None]
    ids, scores, boxes, masks = run_network(session, x, INSTANCE_OUTPUTS)
    return paste_detections(ids[0], scores[0], boxes[0], masks[0], (height, width),
                            (new_h / float(height), new_w / float(width)), score_thresh,
                            max_dets)


def instance_labels(masks):
    """(H, W) uint8: k where the k-th mask (1-based) is the first of ``masks`` to cover the
    pixel, 0 where none does."""
    labels = np.zeros(masks.shape[1:], dtype=np.uint8)
    for k in range(len(masks) - 1, -1, -1):  # the best last, so it wins where masks overlap
        labels[masks[k]] = k + 1
    return labels


def save_png(path, labels, palette):
    image = colorize_mask(labels, palette, ignore_index=None)
    return write_atomically(path, lambda f: image.save(f, format='PNG'))


def write_semantic(path, name, out_dir, labels, palette):
    target = save_png(os.path.join(out_dir, name + '_mask.png'), labels, palette)
    present = ', '.join(str(c) for c in np.unique(labels))
    print('%s: %dx%d, classes %s -> %s' % (path, labels.shape[1], labels.shape[0], present,
                                           target))


def write_instance(path, name, out_dir, detections):
    class_ids, scores, boxes, masks = detections
    height, width = masks.shape[1:]
    record = {'image': path, 'width': int(width), 'height': int(height),
              'detections': [{'class_id': int(c), 'score': float(s),
                              'box': [float(v) for v in b]}
                             for c, s, b in zip(class_ids, scores, boxes)]}
    text = json.dumps(record, indent=1)
    target = write_atomically(os.path.join(out_dir, name + '_detections.json'),
                              lambda f: f.write(text.encode('utf-8')))
    picture = save_png(os.path.join(out_dir, name + '_instances.png'),
                       instance_labels(masks), 'voc')
    counts = collections.Counter(int(c) for c in class_ids)
    print('%s: %dx%d, %d detections%s -> %s, %s' % (
        path, width, height, len(class_ids),
        ''.join(' class %d x%d,' % item for item in counts.items()).rstrip(','),
        target, picture))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Segment images with a gluonseg ONNX export in onnxruntime (no MXNet).')
    parser.add_argument('--model', required=True, help='the .onnx file (export_onnx)')
    parser.add_argument('--input', required=True, help='an image, or a folder of images')
    parser.add_argument('--out-dir', required=True, help='where the PNG and JSON files go')
    rule = INSTANCE_RESIZE
    parser.add_argument('--resize', type=int, nargs='+', metavar='N',
                        help='Mask R-CNN: SHORT [MAX_SIZE], default %d %d; semantic: SHORT '
                             '(default: the image\'s own size)'
                             % (rule['short'], rule['max_size']))
    parser.add_argument('--score-thresh', type=float, default=0.5,
                        help='Mask R-CNN: keep detections scoring at least this (default 0.5)')
    parser.add_argument('--max-dets', type=int, default=100,
                        help='Mask R-CNN: keep at most this many detections per image '
                             '(default 100, at most %d)' % MAX_INSTANCES)
    parser.add_argument('--providers', default=None,
                        help='onnxruntime execution providers in order of preference, '
                             'comma-separated (default: CUDAExecutionProvider where '
                             'available, then CPUExecutionProvider)')
    parser.add_argument('--palette', default='voc', choices=PALETTE_NAMES,
                        help='semantic: the colours of the class ids (default voc)')
    args = parser.parse_args(argv)
    if args.resize is not None and (len(args.resize) > 2 or min(args.resize) < 1):
        parser.error('--resize takes SHORT [MAX_SIZE], positive, got %s'
                     % ' '.join(map(str, args.resize)))
    if not 1 <= args.max_dets <= MAX_INSTANCES:
        parser.error('--max-dets must be within 1..%d (one 8-bit instance PNG), got %d'
                     % (MAX_INSTANCES, args.max_dets))
    if args.providers is not None:
        args.providers = [p.strip() for p in args.providers.split(',') if p.strip()]
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        paths = image_paths(args.input)
        session, kind = open_session(args.model, args.providers)
        if kind == 'semantic' and args.resize is not None and len(args.resize) != 1:
            raise ValueError('--resize takes one value (SHORT) for a semantic model')
        os.makedirs(args.out_dir, exist_ok=True)
    except (ImportError, OSError, ValueError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    resize = list(args.resize or [])
    short = resize[0] if resize else None
    if kind == 'instance':
        short = short or INSTANCE_RESIZE['short']
        max_size = resize[1] if len(resize) == 2 else INSTANCE_RESIZE['max_size']
    failed = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            image = load_image(path)
            if kind == 'semantic':
                found = predict_semantic(session, image, short)
            else:
                found = predict_instance(session, image, short, max_size, args.score_thresh,
                                         args.max_dets)
        except (OSError, TypeError, ValueError) as err:
            where = '' if path in str(err) else '%s: ' % path  # load_image's name the file
            print('error: %s%s; skipped' % (where, err), file=sys.stderr)
            failed.append(path)
            continue
        if kind == 'semantic':
            write_semantic(path, name, args.out_dir, found, args.palette)
        else:
            write_instance(path, name, args.out_dir, found)
    print('%d image(s) -> %s' % (len(paths) - len(failed), args.out_dir))
    if failed:
        print('error: %d image(s) have no results: %s' % (len(failed), ', '.join(failed)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
