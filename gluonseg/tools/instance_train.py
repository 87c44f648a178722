"""Train Mask R-CNN: ``gluonseg train`` with a Mask R-CNN model or ``--task instance``, and
``scripts/instance/train_mask_rcnn.py`` (the options are those of
:func:`gluonseg.tools.train_options.add_arguments`, their presets and checks
:mod:`gluonseg.tools.instance_train_options`'s; docs/training.md lists them).

    gluonseg train --task instance     # a small FPN ResNet-18 on the built-in ShapesInstance data
    gluonseg train --model mask_rcnn_fpn_resnet50_v1b_coco --dataset coco --gpus 0,1,2,3,4,5,6,7

The options left unset take the values of a per-dataset preset
(:data:`gluonseg.tools.instance_train_options.PRESETS`); the model is named
``mask_rcnn_[fpn_]NETWORK_{coco,small}`` (``small``: the narrow heads of :data:`SMALL_MODEL`).
"""
import json
import time

import mxnet as mx

from ..data import COCOInstance, ShapesInstance
from ..data.instance_transforms import InstanceTrainTransform
from ..engine.instance_trainer import (BEST_METRIC, InstanceTrainConfig, InstanceTrainer,
                                       mask_rcnn_model_info)
from ..engine.run_options import (console_logging, contexts, resume_and_fit, run_args_record,
                                  run_config_kwargs, run_summary_lines, start_amp)
from ..model_zoo import get_model, model_info
from ..model_zoo.rcnn.mask_rcnn import mask_rcnn
from .instance_train_options import NETWORKS

__all__ = ['SMALL_MODEL', 'datasets', 'build_model', 'run']

# The small model of the Shapes preset: narrow pyramid, RPN and heads, fewer proposals and
# samples (objects are few and large), ordinary BatchNorm (trained from scratch).
SMALL_MODEL = dict(frozen_bn=False, fpn_channels=64, rpn_channels=64, box_units=256,
                   mask_channels=64, rpn_train_pre_nms=2000, rpn_train_post_nms=256,
                   rpn_test_pre_nms=1000, rpn_test_post_nms=100, num_sample=64,
                   rpn_num_sample=128)


def datasets(args):
    """(train, val) datasets of raw samples."""
    if args.dataset == 'shapes':
        size = (args.image_size, args.image_size)
        return (ShapesInstance('train', length=args.train_length, size=size, seed=args.seed),
                ShapesInstance('val', length=args.val_length, size=size, seed=args.seed))
    train = COCOInstance(args.root, 'train', annotation_file=args.train_json,
                         image_dir=args.train_images)
    val = COCOInstance(args.root, 'val', annotation_file=args.val_json,
                       image_dir=args.val_images)
    return train, val


def build_model(args, classes, ctx):
    """(net, model_info): the network, initialized, and how to rebuild it."""
    depth, variant = NETWORKS[args.network]
    if args.init_from:
        entry = model_info(args.init_from)
        same = tuple(classes) == tuple(entry.classes)
        net = get_model(args.init_from, pretrained=True, ctx=ctx, classes=list(classes),
                        reuse_weights=None if same else True)
        return net, mask_rcnn_model_info(args.init_from, depth=depth, variant=variant,
                                         fpn=args.fpn, classes=list(classes))
    kwargs = dict(depth=depth, variant=variant, fpn=args.fpn, classes=list(classes))
    if args.small:
        kwargs.update(SMALL_MODEL)
    net = mask_rcnn(pretrained_base=args.pretrained_base, **kwargs)
    net.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
                   ctx=ctx)
    return net, mask_rcnn_model_info(args.model, **kwargs)


def run(args):
    """Train as ``args`` (checked by
    :func:`gluonseg.tools.instance_train_options.check_arguments`) say; returns the exit
    code."""
    start = time.time()
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
