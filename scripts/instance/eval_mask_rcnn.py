"""Evaluate Mask R-CNN: COCO box and mask AP through pycocotools.

A published model on COCO val2017 (short side 800, long side at most 1333, detections with
score >= 0.001, the best 100 per image, masks pasted with the accurate sub-pixel paste)::

    python scripts/instance/eval_mask_rcnn.py --model mask_rcnn_fpn_resnet50_v1b_coco --pretrained

A training checkpoint, on the data it was validated on (e.g. the Shapes run of
``train_mask_rcnn.py``)::

    python scripts/instance/eval_mask_rcnn.py --checkpoint runs/instance/shapes/.../best.ckpt

``gluonseg.optimize``'s CPU paths (fused float32: the same detections; int8: quantized by
oneDNN, calibrated on the first ``--num-calib-batches`` images of the *training* split, never
the evaluated one)::

    python scripts/instance/eval_mask_rcnn.py --checkpoint CKPT --optimize int8 --calib-mode naive

It prints pycocotools' bbox and segm tables and an AP summary, and writes the detections in
the COCO results format (``PREFIX_bbox.json``, ``PREFIX_segm.json``) and the AP numbers
(``PREFIX_metrics.json``).
"""
import json
import os
import sys

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

import mxnet as mx  # noqa: E402

from gluonseg.engine.instance_evaluation import evaluate_instances  # noqa: E402
from gluonseg.tools import tool_parser  # noqa: E402
from gluonseg.utils.atomic import write_atomically  # noqa: E402
from gluonseg.utils.coco_metric import STAT_NAMES  # noqa: E402


def parse_args(argv=None):
    p = tool_parser(__doc__)
    g = p.add_argument_group('model (one of)')
    g.add_argument('--model', help='registered Mask R-CNN name')
    g.add_argument('--pretrained', nargs='?', const='True', default=None,
                   help="with --model: its published weights ('True', or a SHA-1 prefix)")
    g.add_argument('--params', help='with --model: a .params file of its layout')
    g.add_argument('--checkpoint', help='a checkpoint of train_mask_rcnn.py')
    g = p.add_argument_group('data')
    g.add_argument('--dataset', choices=['coco', 'shapes'],
                   help='default: coco, or the checkpoint\'s training dataset')
    g.add_argument('--root', help='COCO folder (default $GLUONSEG_HOME/datasets/coco)')
    g.add_argument('--val-json', help='COCO-format annotations (default: COCO val2017)')
    g.add_argument('--val-images', help='folder of their images')
    g.add_argument('--val-length', type=int, help='shapes: scenes (default: the checkpoint\'s)')
    g.add_argument('--image-size', type=int, help='shapes: image side')
    g.add_argument('--limit', type=int, help='only the first N images')
    g.add_argument('--train-json', help='--optimize int8: COCO-format annotations of the '
                   'calibration (training) images (default: the checkpoint\'s, or COCO '
                   'train2017)')
    g.add_argument('--train-images', help='folder of those images')
    g = p.add_argument_group('protocol')
    g.add_argument('--short', type=int, help='resize: short side (default 800, or the '
                   'checkpoint\'s)')
    g.add_argument('--max-size', type=int, help='resize: long side at most (default 1333)')
    g.add_argument('--score-thresh', type=float, default=0.001)
    g.add_argument('--max-dets', type=int, default=100)
    g.add_argument('--rpn-test-post-nms', type=int,
                   help='proposals per image (default: the model\'s, 1000 published)')
    g = p.add_argument_group('optimized inference (CPU, gluonseg.optimize)')
    g.add_argument('--optimize', choices=['float32', 'int8'],
                   help='evaluate gluonseg.optimize(net, dtype=...): fused float32, or int8 '
                   'calibrated on training images (default: the network\'s own detect)')
    g.add_argument('--calib-mode', choices=['naive', 'entropy'],
                   help='int8 thresholds: min/max or KL (default naive)')
    g.add_argument('--num-calib-batches', type=int, metavar='N',
                   help='int8: calibrate on the first N training images, one per batch '
                   '(default 4)')
    g = p.add_argument_group('run')
    g.add_argument('--gpu', type=int, help='GPU index (default: CPU)')
    g.add_argument('--save-prefix', help='results files prefix (default '
                   'runs/instance/eval/<model>_<dataset>)')
    g.add_argument('--no-hybridize', action='store_true')
    g.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    if bool(args.model) == bool(args.checkpoint):
        p.error('give either --model (with --pretrained or --params) or --checkpoint')
    if args.model and not (args.pretrained or args.params):
        p.error('--model needs --pretrained or --params: random weights score nothing')
    if args.optimize and args.gpu is not None:
        p.error('--optimize builds a oneDNN (CPU) model: leave out --gpu')
    if args.optimize != 'int8' and (args.calib_mode or args.num_calib_batches is not None):
        p.error('--calib-mode and --num-calib-batches calibrate --optimize int8 only')
    if args.num_calib_batches is not None and args.num_calib_batches < 1:
        p.error('--num-calib-batches must be at least 1, got %d' % args.num_calib_batches)
    args.calib_mode = args.calib_mode or 'naive'
    args.num_calib_batches = args.num_calib_batches or 4
    return args


def load_network(args, ctx):
    """(net, name, training run arguments or {})."""
    overrides = {}
    if args.rpn_test_post_nms:
        overrides['rpn_test_post_nms'] = args.rpn_test_post_nms
    if args.checkpoint:
        from gluonseg.engine.instance_trainer import mask_rcnn_from_checkpoint
        net, ckpt = mask_rcnn_from_checkpoint(args.checkpoint, ctx=ctx, **overrides)
        name = os.path.splitext(os.path.basename(os.path.dirname(
            os.path.abspath(args.checkpoint))))[0]
        return net, name, ckpt.get('args') or {}
    from gluonseg.model_zoo.registry import get_model, load_weights
    if args.params:
        net = get_model(args.model, pretrained=False, pretrained_base=False, ctx=ctx,
                        **overrides)
        load_weights(net, args.params, ctx=ctx)
    else:
        pretrained = True if args.pretrained == 'True' else args.pretrained
        net = get_model(args.model, pretrained=pretrained, ctx=ctx, **overrides)
    return net, args.model, {}


def dataset(args, run):
    """The validation dataset (raw samples), following the checkpoint's run by default."""
    name = args.dataset or run.get('dataset') or 'coco'
    if name == 'shapes':
        from gluonseg.data import ShapesInstance
        size = args.image_size or run.get('image_size') or 128
        return name, ShapesInstance('val', length=args.val_length or run.get('val_length'),
                                    size=(size, size), seed=run.get('seed', 0))
    from gluonseg.data import COCOInstance
    return name, COCOInstance(args.root or run.get('root'), 'val', skip_empty=False,
                              annotation_file=args.val_json or run.get('val_json'),
                              image_dir=args.val_images or run.get('val_images'))


def calibration_dataset(args, run, name):
    """The training split of the evaluated data (int8 calibration images)."""
    if name == 'shapes':
        from gluonseg.data import ShapesInstance
        size = args.image_size or run.get('image_size') or 128
        # scenes depend on (seed, split, index) only: the first N of the training run's
        return ShapesInstance('train', length=args.num_calib_batches, size=(size, size),
                              seed=run.get('seed', 0))
    from gluonseg.data import COCOInstance
    return COCOInstance(args.root or run.get('root'), 'train',
                        annotation_file=args.train_json or run.get('train_json'),
                        image_dir=args.train_images or run.get('train_images'))


def optimized(args, net, run, name, short, max_size):
    """``gluonseg.optimize(net, dtype=args.optimize)``, int8 calibrated on training images
    prepared like the evaluated ones."""
    import gluonseg
    from gluonseg.engine.instance_evaluation import calibration_inputs
    calib = None
    if args.optimize == 'int8':
        calib = calibration_inputs(net, calibration_dataset(args, run, name),
                                   args.num_calib_batches, short, max_size)
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


def main(argv=None):
    args = parse_args(argv)
    ctx = mx.gpu(args.gpu) if args.gpu is not None else mx.cpu()
    net, name, run = load_network(args, ctx)
    if not args.no_hybridize:
        net.hybridize()
    data_name, val_set = dataset(args, run)
    short = args.short or run.get('short') or 800
    max_size = args.max_size or run.get('max_size') or 1333
    tag = '' if not args.optimize else '_' + args.optimize + (
        '_' + args.calib_mode if args.optimize == 'int8' else '')
    prefix = args.save_prefix or os.path.join('runs', 'instance', 'eval',
                                              '%s_%s%s' % (name, data_name, tag))
    model = optimized(args, net, run, data_name, short, max_size) if args.optimize else net
    values, metric = evaluate_instances(
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


if __name__ == '__main__':
    sys.exit(main())
