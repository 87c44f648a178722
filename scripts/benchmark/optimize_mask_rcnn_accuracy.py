"""Mask and box AP of gluonseg.optimize()'s Mask R-CNN paths on a Shapes-trained model.

Trains the default Shapes Mask R-CNN (``scripts/instance/train_mask_rcnn.py`` with no
arguments: FPN ResNet-18 from scratch, 2 epochs, 128x128; ~6 min on 2 CPU cores) into
``--save-dir`` (a temporary folder by default), or takes a checkpoint of it (or of any
``train_mask_rcnn.py`` run), then evaluates it with ``scripts/instance/eval_mask_rcnn.py`` on
the run's validation data: the plain lean path (``net.detect``, float32), fused float32, and
int8 with naive and entropy calibration on the first ``--calib-batches`` *training* images.
For each path it prints mask and box AP, their change against float32 in AP points (0..100),
and how many of float32's kept detections the path reproduces (same class, box IoU >= 0.9;
all of them, and those scoring >= 0.5). Exits with status 1 when a path's mask AP is more
than ``--max-drop`` points (default 1.0) below float32's.

The rows go into ``--csv`` (default ``scripts/benchmark/results/mask_rcnn_int8_accuracy.csv``)
by model: the rows of the measured model (column ``model``) already there are replaced where
they stand (the new rows take the place of the first old one), those of other models are kept
as they were, and a model not yet in the file is appended at the end.

    python scripts/benchmark/optimize_mask_rcnn_accuracy.py                  # trains, ~6 min
    python scripts/instance/train_mask_rcnn.py --save-dir runs/mrcnn        # or, then:
    python scripts/benchmark/optimize_mask_rcnn_accuracy.py --checkpoint runs/mrcnn/best.ckpt
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile

import numpy as np

from gluonseg.engine import load_checkpoint
from gluonseg.model_zoo.rcnn.boxes import iou_matrix

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import merge_csv, print_row  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = ['model', 'path', 'mask_AP', 'box_AP', 'mask_AP50', 'delta_mask_AP_points',
          'delta_box_AP_points', 'dets', 'fp32_dets', 'fp32_dets_reproduced', 'confident',
          'confident_reproduced', 'eval_s']
PATHS = ['float32', 'fused-float32', 'int8-naive', 'int8-entropy']
MATCH_IOU = 0.9
CONFIDENT = 0.5
DEFAULT_CSV = os.path.join(ROOT, 'scripts', 'benchmark', 'results',
                           'mask_rcnn_int8_accuracy.csv')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', help='a train_mask_rcnn.py checkpoint to evaluate '
                                             'instead of training the Shapes default')
    parser.add_argument('--save-dir', help='where the training run goes (default: a '
                                           'temporary folder); the evaluation files too')
    parser.add_argument('--calib-batches', type=int, default=4,
                        help='int8: calibrate on this many training images (one per batch)')
    parser.add_argument('--paths', nargs='+', default=PATHS, choices=PATHS)
    parser.add_argument('--limit', type=int, help='evaluate the first N images only')
    parser.add_argument('--max-drop', type=float, default=1.0,
                        help='largest mask AP drop (points) accepted against float32')
    parser.add_argument('--csv', default=DEFAULT_CSV,
                        help="the measured model's rows replace its old ones there; other "
                             "models' rows are kept")
    args = parser.parse_args(argv)
    if args.paths[0] != 'float32':
        parser.error('--paths must start with float32: the others are compared with it')
    return args


def instance_script(name):
    """A script of scripts/instance as a module (its main() and helpers)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, 'scripts', 'instance', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_default(save_dir):
    """Train the default Shapes Mask R-CNN into ``save_dir``; its best checkpoint."""
    train = instance_script('train_mask_rcnn')
    if train.main(['--save-dir', save_dir, '--no-progress', '--quiet']) != 0:
        raise RuntimeError('training the Shapes Mask R-CNN failed (see %s)' % save_dir)
    return os.path.join(save_dir, 'best.ckpt')


def eval_arguments(path, calib_batches):
    """eval_mask_rcnn.py's options for a path name ('fused-float32', 'int8-naive', ...)."""
    if path == 'float32':
        return []
    dtype, _, calib_mode = path.partition('-')
    if dtype == 'fused':
        return ['--optimize', 'float32']
    return ['--optimize', dtype, '--calib-mode', calib_mode,
            '--num-calib-batches', str(calib_batches)]


def detections(prefix):
    """{image id: (category ids (K,), scores (K,), corner boxes (K, 4))} of a results file."""
    with open(prefix + '_bbox.json') as f:
        results = json.load(f)
    by_image = {}
    for r in results:
        by_image.setdefault(r['image_id'], []).append(r)
    out = {}
    for image_id, rows in by_image.items():
        boxes = np.array([r['bbox'] for r in rows], dtype=np.float64)
        boxes[:, 2:] += boxes[:, :2]  # COCO x, y, w, h -> x1, y1, x2, y2
        out[image_id] = (np.array([r['category_id'] for r in rows]),
                         np.array([r['score'] for r in rows]), boxes)
    return out


def reproduced(reference, other, min_score=0.0):
    """``(n, matched)``: the reference detections scoring >= ``min_score`` and how many of
    them ``other`` has, one to one (greedy, best reference score first): same class, box
    IoU >= MATCH_IOU."""
    total = matched = 0
    for image_id, (cats, scores, boxes) in reference.items():
        keep = np.flatnonzero(scores >= min_score)
        keep = keep[np.argsort(-scores[keep], kind='stable')]
        total += len(keep)
        if image_id not in other or not len(keep):
            continue
        o_cats, _, o_boxes = other[image_id]
        ious = iou_matrix(boxes[keep], o_boxes)
        ious[cats[keep][:, None] != o_cats[None, :]] = 0
        free = np.ones(len(o_cats), dtype=bool)
        for row in ious:
            candidates = np.flatnonzero(free & (row >= MATCH_IOU))
            if len(candidates):
                free[candidates[np.argmax(row[candidates])]] = False
                matched += 1
    return total, matched


def run(args):
    """The rows (one per path, float32 first) for parsed ``args``."""
    save_dir = args.save_dir or tempfile.mkdtemp(prefix='mask_rcnn_accuracy_')
    checkpoint = args.checkpoint or train_default(save_dir)
    evaluate = instance_script('eval_mask_rcnn')
    model = (load_checkpoint(checkpoint).meta.get('model') or {}).get('name')
    rows, base, base_dets = [], None, None
    for path in args.paths:
        prefix = os.path.join(save_dir, 'eval_' + path)
        argv = ['--checkpoint', checkpoint, '--save-prefix', prefix, '--no-progress']
        argv += eval_arguments(path, args.calib_batches)
        if args.limit:
            argv += ['--limit', str(args.limit)]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' tables
            evaluate.main(argv)
        with open(prefix + '_metrics.json') as f:
            metrics = json.load(f)
        dets = detections(prefix)
        if base is None:
            base, base_dets = metrics, dets
        fp32_dets, fp32_reproduced = reproduced(base_dets, dets)
        confident, confident_reproduced = reproduced(base_dets, dets, CONFIDENT)
        row = dict(model=model or metrics['model'], path=path,
                   mask_AP=round(100 * metrics['segm/AP'], 3),
                   box_AP=round(100 * metrics['bbox/AP'], 3),
                   mask_AP50=round(100 * metrics['segm/AP50'], 3),
                   delta_mask_AP_points=round(100 * (metrics['segm/AP'] - base['segm/AP']), 3),
                   delta_box_AP_points=round(100 * (metrics['bbox/AP'] - base['bbox/AP']), 3),
                   dets=sum(len(d[0]) for d in dets.values()), fp32_dets=fp32_dets,
                   fp32_dets_reproduced=fp32_reproduced, confident=confident,
                   confident_reproduced=confident_reproduced, eval_s=metrics['seconds'])
        rows.append(row)
        print_row('{path:14s} mask AP {mask_AP:6.2f} ({delta_mask_AP_points:+6.2f})  box AP '
                  '{box_AP:6.2f} ({delta_box_AP_points:+6.2f})  float32 detections '
                  'reproduced {fp32_dets_reproduced}/{fp32_dets}, scoring >= 0.5 '
                  '{confident_reproduced}/{confident}  ({eval_s:.1f} s)', row)
    if args.csv:  # keep the other models' rows (FPN and C4 share the committed file)
        merge_csv(args.csv, rows, FIELDS, key='model')
    return rows


def main(argv=None):
    args = parse_args(argv)
    rows = run(args)
    worst = min(row['delta_mask_AP_points'] for row in rows)
    if worst < -args.max_drop:
        print('FAILED: a path loses %.2f mask AP points (> %.2f)' % (-worst, args.max_drop))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
