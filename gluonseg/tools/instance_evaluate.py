"""Evaluate Mask R-CNN: COCO box and mask AP through pycocotools. ``gluonseg eval`` with a Mask
R-CNN checkpoint or model (or ``--task instance``), and ``scripts/instance/eval_mask_rcnn.py``
(the options are those of :func:`gluonseg.tools.evaluate_options.add_arguments`, their check
:mod:`gluonseg.tools.instance_evaluate_options`'s)::

    gluonseg eval runs/instance/shapes/mask_rcnn_fpn_resnet18_v1b_small/best.ckpt
    gluonseg eval --model mask_rcnn_fpn_resnet50_v1b_coco --pretrained
    gluonseg eval CKPT --optimize int8 --calib-mode naive

A published model is scored on COCO val2017 (short side 800, long side at most 1333,
detections with score >= 0.001, the best 100 per image, masks pasted with the accurate
sub-pixel paste); a checkpoint on the data its run validated on. ``--optimize`` scores
``gluonseg.optimize``'s CPU paths (fused float32: the same detections; int8: quantized by
oneDNN, calibrated on the first ``--num-calib-batches`` images of the *training* split, never
the evaluated one).

It prints pycocotools' bbox and segm tables and an AP summary, and writes the detections in the
COCO results format (``PREFIX_bbox.json``, ``PREFIX_segm.json``) and the AP numbers
(``PREFIX_metrics.json``).
"""
import json
import os

import mxnet as mx

import gluonseg
from ..data import COCOInstance, ShapesInstance
from ..engine import instance_evaluation
from ..engine.choices import gpu_ids
from ..engine.instance_trainer import mask_rcnn_from_checkpoint
from ..model_zoo import get_model
from ..model_zoo.registry import load_weights
from ..utils.atomic import write_atomically
from ..utils.coco_metric import STAT_NAMES

__all__ = ['load_network', 'dataset', 'calibration_dataset', 'optimized', 'ap_table', 'run']


def load_network(args, ctx):
    """(net, name, training run arguments or {})."""
    overrides = {}
    if args.rpn_test_post_nms:
        overrides['rpn_test_post_nms'] = args.rpn_test_post_nms
    if args.checkpoint:
        net, ckpt = mask_rcnn_from_checkpoint(args.checkpoint, ctx=ctx, **overrides)
        name = os.path.splitext(os.path.basename(os.path.dirname(
            os.path.abspath(args.checkpoint))))[0]
        return net, name, ckpt.get('args') or {}
    if args.params:
        net = get_model(args.model, pretrained=False, pretrained_base=False, ctx=ctx,
                        **overrides)
        load_weights(net, args.params, ctx=ctx)
    else:
        net = get_model(args.model, pretrained=args.pretrained, ctx=ctx, **overrides)
    return net, args.model, {}


def dataset(args, run):
    """The validation dataset (raw samples), following the checkpoint's run by default."""
    name = args.dataset or run.get('dataset') or 'coco'
    if name == 'shapes':
        size = args.image_size or run.get('image_size') or 128
        return name, ShapesInstance('val', length=args.length or run.get('val_length'),
                                    size=(size, size), seed=run.get('seed', 0))
    return name, COCOInstance(args.root or run.get('root'), 'val', skip_empty=False,
                              annotation_file=args.val_json or run.get('val_json'),
                              image_dir=args.val_images or run.get('val_images'))


def calibration_dataset(args, run, name):
    """The training split of the evaluated data (int8 calibration images)."""
    if name == 'shapes':
        size = args.image_size or run.get('image_size') or 128
        # scenes depend on (seed, split, index) only: the first N of the training run's
        return ShapesInstance('train', length=args.num_calib_batches, size=(size, size),
                              seed=run.get('seed', 0))
    return COCOInstance(args.root or run.get('root'), 'train',
                        annotation_file=args.train_json or run.get('train_json'),
                        image_dir=args.train_images or run.get('train_images'))


def optimized(args, net, run, name, short, max_size):
    """``gluonseg.optimize(net, dtype=args.optimize)``, int8 calibrated on training images
    prepared like the evaluated ones."""
    calib = None
    if args.optimize == 'int8':
        calib = instance_evaluation.calibration_inputs(
            net, calibration_dataset(args, run, name), args.num_calib_batches, short, max_size)
    return gluonseg.optimize(net, dtype=args.optimize, calib_data=calib,
                             calib_mode=args.calib_mode,
                             num_calib_batches=args.num_calib_batches)


def ap_table(values):
    """The AP summary as text: one row per iou type, AP in percent."""
    lines = ['%-6s' % '' + ''.join('%8s' % n for n in STAT_NAMES)]
    for iou_type in ('bbox', 'segm'):
        cells = []
        for name in STAT_NAMES:
            value = values.get('%s/%s' % (iou_type, name))
            cells.append('%8s' % ('-' if value is None or value != value
                                  else '%.1f' % (100 * value)))
        lines.append('%-6s' % iou_type + ''.join(cells))
    return '\n'.join(lines)


def run(args):
    """Evaluate as ``args`` (checked by
    :func:`gluonseg.tools.instance_evaluate_options.check_arguments`) say; returns the exit
    code."""
    gpus = gpu_ids(args.gpus)
    ctx = mx.gpu(gpus[0]) if gpus else mx.cpu()
    net, name, run_args = load_network(args, ctx)
    if not args.no_hybridize:
        net.hybridize()
    data_name, val_set = dataset(args, run_args)
    short = args.short or run_args.get('short') or 800
    max_size = args.max_size or run_args.get('max_size') or 1333
    tag = '' if not args.optimize else '_' + args.optimize + (
        '_' + args.calib_mode if args.optimize == 'int8' else '')
    prefix = args.save_prefix or os.path.join('runs', 'instance', 'eval',
                                              '%s_%s%s' % (name, data_name, tag))
    model = (optimized(args, net, run_args, data_name, short, max_size) if args.optimize
             else net)
    values, metric = instance_evaluation.evaluate_instances(
        model, val_set, short=short, max_size=max_size, score_thresh=args.score_thresh,
        max_dets=args.max_dets, limit=args.limit, results_prefix=prefix,
        progress=not args.no_progress)
    for iou_type in ('bbox', 'segm'):
        print('%s (pycocotools):\n%s' % (iou_type, metric.summary_text[iou_type]))
    print(ap_table(values))
    record = dict(values, model=name, dataset=data_name, short=short, max_size=max_size,
                  score_thresh=args.score_thresh, max_dets=args.max_dets,
                  optimize=args.optimize or 'none')
    if args.optimize == 'int8':
        record.update(calib_mode=args.calib_mode, num_calib_batches=args.num_calib_batches)
    record = {k: (None if isinstance(v, float) and v != v else v) for k, v in record.items()}
    write_atomically(prefix + '_metrics.json', lambda f: json.dump(record, f, indent=1),
                     binary=False)
    print(json.dumps({'bbox/AP': record['bbox/AP'], 'segm/AP': record['segm/AP'],
                      'images': record['images'], 'results': prefix + '_{bbox,segm}.json'}))
    return 0
