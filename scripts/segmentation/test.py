"""Evaluate a segmentation model: pixAcc, mIoU and per-class IoU, printed and written as JSON.

A checkpoint written by train.py is evaluated with the dataset, split and sizes of its run
(so this reproduces the run's final validation mIoU)::

    python scripts/segmentation/test.py runs/shapes/fcn_resnet18_shapes/latest.ckpt

A zoo model with its published weights, on full-size images, optionally multi-scale + flip::

    python scripts/segmentation/test.py --model deeplab_resnet101_voc --pretrained \\
        --dataset voc --split val --multi-scale --gpus 0
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

import mxnet as mx  # noqa: E402

import gluonseg  # noqa: E402
from gluonseg.data import SegmentationTestValTransform, SegmentationValTransform  # noqa: E402
from gluonseg.engine import evaluate_segmentation, get_segmentation_dataset  # noqa: E402
from gluonseg.engine import load_checkpoint  # noqa: E402
from gluonseg.model_zoo.multiscale import DEFAULT_SCALES, MultiScaleEvaluator  # noqa: E402
from gluonseg.utils.metrics import SegmentationMetric  # noqa: E402

# The dataset part of model names -> the dataset evaluated by default for a zoo model.
DATASET_OF_SUFFIX = {'voc': 'voc', 'coco': 'coco', 'ade': 'ade', 'citys': 'citys',
                     'shapes': 'shapes'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('checkpoint', nargs='?', help='a .ckpt written by train.py')
    p.add_argument('--model', help='registered model name (with --pretrained or --params)')
    p.add_argument('--pretrained', nargs='?', const=True, default=False, metavar='SHA1',
                   help='load the published weights of --model (or the file whose SHA-1 '
                   'starts with SHA1)')
    p.add_argument('--params', help='a .params weight file for --model')
    p.add_argument('--aux', action='store_true',
                   help='build --model with its auxiliary head (when the weight file has it)')
    p.add_argument('--dataset', choices=['shapes', 'voc', 'voc_aug', 'coco', 'ade', 'citys'],
                   help="default: the checkpoint's, or the model name's")
    p.add_argument('--root', help='dataset folder')
    p.add_argument('--split', help="default: the checkpoint's validation split, else val")
    p.add_argument('--mode', choices=['val', 'testval'],
                   help="val: short side to crop size and centre crop (train.py's validation); "
                   "testval: full-size images. Default: val for a checkpoint, testval else")
    p.add_argument('--base-size', type=int, help='multi-scale base (default: the run\'s)')
    p.add_argument('--crop-size', type=int, help='val crop / sliding window (default: the '
                   'run\'s)')
    p.add_argument('--length', type=int, help='shapes: number of scenes')
    p.add_argument('--multi-scale', action='store_true',
                   help='average over scales and flips (MultiScaleEvaluator)')
    p.add_argument('--scales', type=float, nargs='+', default=list(DEFAULT_SCALES))
    p.add_argument('--no-flip', action='store_true')
    p.add_argument('--combine', choices=['softmax', 'gluoncv'], default='softmax',
                   help="how multi-scale scores are combined ('gluoncv': its protocol)")
    p.add_argument('--absent-class', choices=['nan', 'zero'], default='nan',
                   help="IoU of a class absent from labels and predictions ('zero': GluonCV)")
    p.add_argument('--batch-size', type=int,
                   help='total (default: 1 for testval / multi-scale, else 8)')
    p.add_argument('--gpus', default='', help='e.g. 0,1 (default: CPU)')
    p.add_argument('--ctx-cpus', type=int, default=1)
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--output', help='JSON result path (default: next to the checkpoint, or '
                   'runs/eval/)')
    p.add_argument('--no-progress', action='store_true')
    args = p.parse_args(argv)
    if not args.checkpoint and not args.model:
        p.error('give a checkpoint, or --model NAME with --pretrained or --params FILE')
    if args.checkpoint and (args.model or args.pretrained or args.params):
        p.error('give either a checkpoint or --model, not both')
    if args.model and not (args.pretrained or args.params):
        p.error('--model %s needs --pretrained (published weights) or --params FILE'
                % args.model)
    return args


def contexts(args):
    if args.gpus.strip():
        return [mx.gpu(int(i)) for i in args.gpus.split(',') if i.strip()]
    return [mx.cpu(i) for i in range(max(args.ctx_cpus, 1))]


def load_network(args, ctx):
    """The network and the run settings it comes with (empty for zoo weights)."""
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model = ckpt.get('model') or {}
        if not model.get('name'):
            raise ValueError('%s does not say which model it holds (no model name in its '
                             'metadata)' % args.checkpoint)
        net = gluonseg.get_model(model['name'], pretrained=False, pretrained_base=False,
                                 ctx=ctx, **model.get('kwargs', {}))
        ckpt.load_into(net, ctx=ctx)
        return net, model['name'], ckpt.get('args') or {}, ckpt
    kwargs = {'aux': args.aux}
    if args.params:
        net = gluonseg.get_model(args.model, pretrained=False, pretrained_base=False, ctx=ctx,
                                 **kwargs)
        from gluonseg.model_zoo.registry import load_weights
        load_weights(net, args.params, ctx=ctx)
    else:
        net = gluonseg.get_model(args.model, pretrained=args.pretrained, ctx=ctx, **kwargs)
    return net, args.model, {}, None


def build_dataset(args, run, model_name):
    dataset = args.dataset or run.get('dataset') or \
        DATASET_OF_SUFFIX.get(model_name.rsplit('_', 1)[-1])
    if dataset is None:
        raise ValueError('Cannot tell the dataset of %s: pass --dataset' % model_name)
    split = args.split or run.get('val_split') or 'val'
    mode = args.mode or ('val' if run else 'testval')
    crop = args.crop_size or run.get('crop_size') or 480
    base = args.base_size or run.get('base_size') or 520
    transform = SegmentationValTransform(crop) if mode == 'val' \
        else SegmentationTestValTransform()
    kwargs = {}
    if dataset == 'shapes':
        kwargs = {'size': run.get('base_size') or base, 'seed': 0,
                  'length': args.length or run.get('val_length')}
    ds = get_segmentation_dataset(dataset, split, root=args.root or run.get('root'),
                                  transform=transform, **kwargs)
    return ds, dict(dataset=dataset, split=split, mode=mode, crop_size=crop, base_size=base)


def print_table(summary, classes):
    width = max(8, max(len(c) for c in classes))
    print('%-*s  %8s  %8s' % (width, 'class', 'IoU', 'acc'))
    for name in classes:
        iou, acc = summary['per_class_iou'][name], summary['per_class_acc'][name]
        print('%-*s  %8s  %8s' % (width, name, '-' if iou is None else '%.4f' % iou,
                                  '-' if acc is None else '%.4f' % acc))


def main(argv=None):
    args = parse_args(argv)
    ctx = contexts(args)
    net, model_name, run, ckpt = load_network(args, ctx)
    net.hybridize(static_alloc=True)
    dataset, setting = build_dataset(args, run, model_name)
    evaluator = None
    if args.multi_scale:
        info = getattr(net, 'gluonseg_info', None)
        evaluator = MultiScaleEvaluator(
            net, base_size=setting['base_size'], crop_size=setting['crop_size'],
            scales=args.scales, flip=not args.no_flip, combine=args.combine,
            **({'mean': info.mean, 'std': info.std} if info is not None else {}))
    batch_size = args.batch_size or (1 if args.multi_scale or setting['mode'] == 'testval'
                                     else 8)
    metric = SegmentationMetric(dataset.num_class, ignore_index=dataset.ignore_index,
                                absent_class=args.absent_class)
    start = time.time()
    evaluate_segmentation(net, dataset, ctx=ctx, batch_size=batch_size, evaluator=evaluator,
                          num_workers=args.workers, progress=not args.no_progress,
                          metric=metric)
    seconds = time.time() - start
    summary = metric.summary(dataset.classes)
    result = {'model': model_name, 'checkpoint': args.checkpoint,
              'checkpoint_epoch': ckpt.get('epoch') if ckpt else None,
              'weights': 'checkpoint' if ckpt else (args.params or 'published'),
              'num_images': len(dataset), 'multi_scale': args.multi_scale,
              'scales': args.scales if args.multi_scale else [1.0],
              'flip': args.multi_scale and not args.no_flip,
              'combine': args.combine if args.multi_scale else None,
              'absent_class': args.absent_class, 'seconds': round(seconds, 2)}
    result.update(setting)
    result.update(summary)
    result['confusion_matrix'] = metric.state_dict()['confusion_matrix']

    print('%s on %s %s (%s, %d images, %s): pixAcc %.4f  mIoU %.4f'
          % (model_name, setting['dataset'], setting['split'], setting['mode'], len(dataset),
             'multi-scale %s%s' % (args.scales, ' + flip' if result['flip'] else '')
             if args.multi_scale else 'single scale', summary['pixAcc'], summary['mIoU']))
    print_table(summary, dataset.classes)
    output = args.output
    if output is None:
        folder = os.path.dirname(os.path.abspath(args.checkpoint)) if args.checkpoint \
            else os.path.join('runs', 'eval')
        output = os.path.join(folder, 'eval_%s_%s_%s%s.json' % (
            model_name, setting['dataset'], setting['split'], '_ms' if args.multi_scale
            else ''))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, 'w') as f:
        json.dump(result, f, indent=1)
    print('Wrote %s (%.1f s)' % (output, seconds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
