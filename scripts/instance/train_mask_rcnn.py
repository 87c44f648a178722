"""Train Mask R-CNN.

With no arguments it trains a small Mask R-CNN (FPN, ResNet-18 from scratch, narrow heads) on
the built-in synthetic ShapesInstance data at 128x128 on the CPU in a few minutes, and prints
the validation box and mask AP::

    python scripts/instance/train_mask_rcnn.py

2 epochs of 1000 scenes, batch 4, 500 iterations: mask AP 0.768 (AP50 0.961), box AP 0.737 on
the 100 validation scenes, 0.51 after the first epoch (docs/training.md has the date and time).

COCO 2017 (prepared with ``scripts/datasets/prepare_coco.py``) with GluonCV's published recipe
(8 devices x 1 image, lr 0.01, warmup 1000 iterations from lr/3, x0.1 at epochs 17 and 23, 26
epochs, frozen BatchNorm, stem and stage 1 frozen)::

    python scripts/instance/train_mask_rcnn.py --dataset coco --network resnet50_v1b \\
        --gpus 0,1,2,3,4,5,6,7 [--fpn]

Any COCO-format data: ``--dataset coco --train-json A.json --train-images DIR --val-json
B.json --val-images DIR``. Fine-tune a published model on other classes with ``--init-from
mask_rcnn_fpn_resnet50_v1b_coco`` (rows of classes with the same name are kept). A killed run
continues where it stopped with ``--resume`` (same arguments otherwise).
"""
import argparse
import json
import os
import sys
import time

# Limit OpenMP threads before MXNet is imported: oversubscribed cores make CPU training crawl.
os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

import mxnet as mx  # noqa: E402

from gluonseg.data.instance_transforms import InstanceTrainTransform  # noqa: E402
from gluonseg.engine.instance_trainer import (BEST_METRIC, InstanceTrainConfig,  # noqa: E402
                                              InstanceTrainer, mask_rcnn_model_info)
from gluonseg.engine.run_options import (add_run_arguments, console_logging,  # noqa: E402
                                         contexts, resume_and_fit, run_args_record,
                                         run_config_kwargs, start_amp)
from gluonseg.tools import tool_parser  # noqa: E402
from gluonseg.tools.train import run_summary_lines  # noqa: E402

NETWORKS = {'resnet18_v1b': (18, 'v1b'), 'resnet50_v1b': (50, 'v1b'),
            'resnet101_v1d': (101, 'v1d')}

# The small model of the Shapes preset: narrow pyramid, RPN and heads, fewer proposals and
# samples (objects are few and large), ordinary BatchNorm (trained from scratch).
SMALL_MODEL = dict(frozen_bn=False, fpn_channels=64, rpn_channels=64, box_units=256,
                   mask_channels=64, rpn_train_pre_nms=2000, rpn_train_post_nms=256,
                   rpn_test_pre_nms=1000, rpn_test_post_nms=100, num_sample=64,
                   rpn_num_sample=128)

# Per-dataset defaults of the options left unset. Shapes: a few minutes on 2 CPU cores.
# COCO: GluonCV's published recipe (lr and warmup follow the total batch, see fill_defaults).
PRESETS = {
    'shapes': dict(network='resnet18_v1b', fpn=True, small=True, pretrained_base=False,
                   image_size=128, short=128, max_size=128, train_length=1000,
                   val_length=100, batch_size=4, epochs=2, lr=0.02, lr_warmup=100,
                   lr_decay_epoch=[1.5], freeze_stages=-1, freeze_bn=False, seed=0,
                   flip=True),
    'coco': dict(network='resnet50_v1b', fpn=False, small=False, pretrained_base=True,
                 image_size=None, short=800, max_size=1333, train_length=None,
                 val_length=None, batch_size=1, epochs=26, lr=None, lr_warmup=None,
                 lr_decay_epoch=[17, 23], freeze_stages=1, freeze_bn=True, seed=233,
                 flip=True),
}


def parse_args(argv=None):
    p = tool_parser(__doc__)
    g = p.add_argument_group('model')
    g.add_argument('--network', choices=sorted(NETWORKS),
                   help='backbone (default: resnet18_v1b on shapes, resnet50_v1b on coco)')
    g.add_argument('--fpn', action=argparse.BooleanOptionalAction, default=None,
                   help='FPN model instead of C4 (default: on for shapes, off for coco)')
    g.add_argument('--small', action=argparse.BooleanOptionalAction, default=None,
                   help='narrow heads, fewer proposals and samples, trainable BatchNorm '
                   '(default: on for shapes)')
    g.add_argument('--pretrained-base', action=argparse.BooleanOptionalAction, default=None,
                   help='start the backbone from ImageNet weights (default: off on shapes)')
    g.add_argument('--init-from', metavar='MODEL',
                   help='start from a published Mask R-CNN (zoo name); its class layers are '
                   'adapted to the dataset\'s classes, keeping classes of the same name')
    g = p.add_argument_group('data')
    g.add_argument('--dataset', default='shapes', choices=['shapes', 'coco'])
    g.add_argument('--root', help='COCO folder (default $GLUONSEG_HOME/datasets/coco)')
    g.add_argument('--train-json', help='COCO-format annotations of the training images')
    g.add_argument('--train-images', help='folder of the training images')
    g.add_argument('--val-json', help='COCO-format annotations of the validation images')
    g.add_argument('--val-images', help='folder of the validation images')
    g.add_argument('--short', type=int, help='resize: short side (training and validation)')
    g.add_argument('--max-size', type=int, help='resize: long side at most')
    g.add_argument('--image-size', type=int, help='shapes: generated image side')
    g.add_argument('--train-length', type=int, help='shapes: training scenes')
    g.add_argument('--val-length', type=int, help='shapes: validation scenes')
    g.add_argument('--no-flip', dest='flip', action='store_false', default=None,
                   help='no random horizontal flips')
    g.add_argument('--workers', '-j', type=int, default=0, help='DataLoader worker processes')
    g = p.add_argument_group('optimization')
    g.add_argument('--batch-size', type=int, help='images per device')
    g.add_argument('--epochs', type=int)
    g.add_argument('--lr', type=float, help='default (coco): 0.00125 x images per update '
                   '(batch size x devices x --accumulate x workers)')
    g.add_argument('--lr-decay', type=float, default=0.1)
    g.add_argument('--lr-decay-epoch', type=float, nargs='*', help='step decay epochs')
    g.add_argument('--lr-warmup', type=int,
                   help='warmup iterations (coco default: max(8000 / images per update, 1000))')
    g.add_argument('--lr-warmup-factor', type=float, default=1.0 / 3,
                   help='warmup starts at lr x this')
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--wd', type=float, default=1e-4)
    g.add_argument('--clip-gradient', type=float, default=0.0, help='0: off')
    g.add_argument('--freeze-stages', type=int,
                   help='backbone stages frozen with the stem (-1: none; coco default 1)')
    g.add_argument('--freeze-bn', action=argparse.BooleanOptionalAction, default=None,
                   help='freeze the backbone BatchNorm parameters (coco default: on)')
    g = add_run_arguments(p, 'runs/instance/DATASET/MODEL', seed_default=None,
                          seed_help='default: 0 on shapes, 233 on coco')
    g.add_argument('--val-limit', type=int, default=0,
                   help='validate on the first N images only (0: all)')
    args = p.parse_args(argv)
    fill_defaults(args)
    return args


def fill_defaults(args):
    """Fill unset options from the dataset's preset."""
    for key, value in PRESETS[args.dataset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    # Images per update, as the trainer counts them: per device x devices x accumulated
    # batches x workers (a dist kvstore's worker count is in DMLC_NUM_WORKER).
    workers = int(os.environ.get('DMLC_NUM_WORKER', '1')) \
        if args.kvstore and args.kvstore.startswith('dist') else 1
    total_batch = args.batch_size * len(contexts(args)) * args.accumulate * workers
    if args.lr is None:
        args.lr = 0.00125 * total_batch
    if args.lr_warmup is None:
        args.lr_warmup = max(8000 // total_batch, 1000)
    if args.init_from:
        args.model = args.init_from
    else:
        args.model = 'mask_rcnn_%s%s_%s' % ('fpn_' if args.fpn else '', args.network,
                                            'small' if args.small else 'coco')
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', 'instance', args.dataset, args.model)


def datasets(args):
    """(train, val) datasets of raw samples."""
    if args.dataset == 'shapes':
        from gluonseg.data import ShapesInstance
        size = (args.image_size, args.image_size)
        return (ShapesInstance('train', length=args.train_length, size=size, seed=args.seed),
                ShapesInstance('val', length=args.val_length, size=size, seed=args.seed))
    from gluonseg.data import COCOInstance
    train = COCOInstance(args.root, 'train', annotation_file=args.train_json,
                         image_dir=args.train_images)
    val = COCOInstance(args.root, 'val', annotation_file=args.val_json,
                       image_dir=args.val_images)
    return train, val


def build_model(args, classes, ctx):
    """(net, model_info): the network, initialized, and how to rebuild it."""
    from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn
    from gluonseg.model_zoo.registry import get_model, model_info
    if args.init_from:
        entry = model_info(args.init_from)
        networks = [n for n in NETWORKS if n in entry.name]
        if entry.task != 'instance' or not networks:
            raise SystemExit('--init-from needs a published Mask R-CNN name (e.g. '
                             'mask_rcnn_fpn_resnet50_v1b_coco), got %r' % args.init_from)
        same = tuple(classes) == tuple(entry.classes)
        net = get_model(args.init_from, pretrained=True, ctx=ctx, classes=list(classes),
                        reuse_weights=None if same else True)
        depth, variant = NETWORKS[networks[0]]
        return net, mask_rcnn_model_info(args.init_from, depth=depth, variant=variant,
                                         fpn='_fpn_' in entry.name, classes=list(classes))
    depth, variant = NETWORKS[args.network]
    kwargs = dict(depth=depth, variant=variant, fpn=args.fpn, classes=list(classes))
    if args.small:
        kwargs.update(SMALL_MODEL)
    net = mask_rcnn(pretrained_base=args.pretrained_base, **kwargs)
    net.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
                   ctx=ctx)
    return net, mask_rcnn_model_info(args.model, **kwargs)


def main(argv=None):
    start = time.time()
    args = parse_args(argv)
    with console_logging(args):
        start_amp(args)  # before the network is built
        mx.random.seed(args.seed)
        ctx = contexts(args)
        train_set, val_set = datasets(args)
        net, info = build_model(args, train_set.classes, ctx)
        config = InstanceTrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            warmup_iters=args.lr_warmup, warmup_factor=args.lr_warmup_factor,
            step_epochs=tuple(args.lr_decay_epoch), step_factor=args.lr_decay,
            momentum=args.momentum, wd=args.wd, clip_gradient=args.clip_gradient,
            freeze_stages=args.freeze_stages, freeze_bn=args.freeze_bn, short=args.short,
            max_size=args.max_size, val_limit=args.val_limit, **run_config_kwargs(args))
        trainer = InstanceTrainer(
            net, train_set, InstanceTrainTransform(args.short, args.max_size, args.flip),
            val_set, ctx=ctx, config=config, save_dir=args.save_dir, model_info=info,
            run_args=run_args_record(args))
        code, result = resume_and_fit(trainer, args)
        if result is None:
            return code
        wall = time.time() - start
        metrics = result['metrics'] or {}
        print('\n'.join(run_summary_lines(result, BEST_METRIC, wall)))
        # The last line, one JSON object, is for scripts.
        summary = {'model': args.model, 'dataset': args.dataset,
                   'iteration': result['iteration'], 'epoch': result['epoch'],
                   'bbox/AP': metrics.get('bbox/AP'), 'segm/AP': metrics.get('segm/AP'),
                   'segm/AP50': metrics.get('segm/AP50'),
                   'best_segm/AP': result['best']['segm/AP'],
                   'train_seconds': round(result['train_seconds'], 1),
                   'wall_seconds': round(wall, 1),
                   'last_loss': result['last_loss'],
                   'latest_checkpoint': result['latest_checkpoint'],
                   'best_checkpoint': result['best_checkpoint']}
        print(json.dumps(summary))
        return 0


if __name__ == '__main__':
    sys.exit(main())
