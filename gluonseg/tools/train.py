"""Train a segmentation model, semantic or Mask R-CNN: the code of ``gluonseg train``,
``scripts/segmentation/train.py`` and ``scripts/instance/train_mask_rcnn.py`` (its command line:
:mod:`gluonseg.tools.train_options`; docs/training.md lists the options).

    gluonseg train                     # fcn_resnet18_shapes on the built-in Shapes data, CPU
    gluonseg train --model deeplab_resnet101_voc --dataset voc_aug --gpus 0,1,2,3 --syncbn
    gluonseg train --model mask_rcnn_fpn_resnet18_v1b_small   # Mask R-CNN on ShapesInstance

The model name chooses the task (``--task`` chooses it without one); this module trains the
semantic models, :mod:`gluonseg.tools.instance_train` Mask R-CNN. The options left unset take
the values of a per-dataset preset (:data:`gluonseg.tools.train_options.PRESETS`,
:data:`gluonseg.tools.instance_train_options.PRESETS`).
"""
import json
import os
import sys
import time

import mxnet as mx

from ..data import SegmentationTrainTransform, SegmentationValTransform
from ..data.base import LabelCheckError
from ..engine import (SegmentationTrainer, TrainConfig, get_segmentation_dataset,
                      initialize_from, seed_everything)
from ..engine.run_options import (UPDATE_STEPS_MEANING, console_logging, contexts,
                                  resume_and_fit, run_args_record, run_config_kwargs,
                                  run_summary_lines, start_amp)
from ..model_zoo import get_model
from . import instance_train
# The command line, here too for the scripts and notebooks that parse and run in one module.
from .train_options import (PRESETS, TRAIN_SPLITS, add_arguments, check_arguments,
                            fill_defaults, parse_args, task_of)

__all__ = ['PRESETS', 'TRAIN_SPLITS', 'UPDATE_STEPS_MEANING', 'add_arguments',
           'task_of', 'check_arguments', 'parse_args', 'fill_defaults', 'build_datasets',
           'shared_images', 'verify_labels', 'run_summary_lines', 'build_model', 'run', 'main']


def dataset_kwargs(args, split):
    """Constructor arguments of the dataset (shapes: size, length, seed)."""
    if args.dataset != 'shapes':
        return {}
    length = args.train_length if split == args.train_split else args.val_length
    return {'size': args.base_size, 'length': length, 'seed': 0}


def build_datasets(args):
    train = get_segmentation_dataset(args.dataset, args.train_split, root=args.root,
                                     **dataset_kwargs(args, args.train_split))
    val_transform = SegmentationValTransform(args.crop_size)
    if args.val_root is None and getattr(train, 'voc_dir', None) and args.val_dataset == 'voc':
        args.val_root = train.voc_dir  # the VOC 2012 that train_aug was built with
    val = get_segmentation_dataset(args.val_dataset, args.val_split, root=args.val_root,
                                   transform=val_transform,
                                   **dataset_kwargs(args, args.val_split))
    train_transform = SegmentationTrainTransform(
        base_size=args.base_size, crop_size=args.crop_size, scale_range=args.scale_range)
    return train, val, train_transform


def shared_images(train_set, val_set):
    """The number of image files both in the training and in the validation set (0 when
    they do not list their files)."""
    train_files = getattr(train_set, 'image_paths', None)
    val_files = getattr(val_set, 'image_paths', None)
    if not train_files or not val_files:
        return 0
    return len({os.path.abspath(p) for p in train_files} &
               {os.path.abspath(p) for p in val_files})


def verify_labels(datasets, progress=True):
    """Check the labels of each of ``datasets`` that can check them on their own
    (:attr:`~gluonseg.data.base.SegmentationDataset.can_verify`: folder datasets).

    Returns
    -------
    (int, list of LabelCheckError)
        The number of labels checked, and one error per dataset with bad labels, each
        listing all of them.
    """
    checked, errors = 0, []
    for dataset in datasets:
        if not getattr(dataset, 'can_verify', False):
            continue
        try:
            checked += dataset.verify(progress=progress)
        except LabelCheckError as err:
            checked += err.checked
            errors.append(err)
    return checked, errors


def build_model(args, nclass, ctx):
    kwargs = {'nclass': nclass, 'aux': args.aux}
    if args.syncbn:
        kwargs['norm_layer'] = mx.gluon.contrib.nn.SyncBatchNorm
        kwargs['norm_kwargs'] = {'num_devices': len(ctx)}
    net = get_model(args.model, pretrained=False, pretrained_base=args.pretrained_base, ctx=ctx,
                    **kwargs)
    info = {'name': args.model, 'kwargs': {'nclass': nclass, 'aux': args.aux},
            'norm': 'syncbn' if args.syncbn else 'bn'}
    return net, info


def run(args):
    """Train as ``args`` of :func:`parse_args` say (Mask R-CNN:
    :func:`gluonseg.tools.instance_train.run`); returns the exit code."""
    if args.task == 'instance':
        return instance_train.run(args)
    with console_logging(args) as log:
        return _train(args, log)


def _train(args, log):
    start = time.time()
    ctx = contexts(args)
    start_amp(args)  # before the network is built
    seed_everything(args.seed)  # the initial weights come from MXNet's generator
    train_set, val_set, train_transform = build_datasets(args)
    shared = shared_images(train_set, val_set)
    if shared:
        log.warning('%d of the %d validation images (%s %s) are also training images (%s %s): '
                    'the validation mIoU is not a held-out score', shared, len(val_set),
                    args.val_dataset, args.val_split, args.dataset, args.train_split)
    if args.verify_labels:
        tic = time.time()
        checked, errors = verify_labels([train_set, val_set], progress=not args.no_progress)
        if errors:
            print('error: bad labels, training not started:\n%s\nFix these files, or skip this '
                  'check with --no-verify-labels (a bad label then stops the run when a batch '
                  'reads it)' % '\n'.join(str(err) for err in errors), file=sys.stderr)
            return 2
        if checked:
            log.info('Checked %d labels in %.1f s: class ids and sizes are right '
                     '(--no-verify-labels skips this)', checked, time.time() - tic)
    net, model_info = build_model(args, train_set.num_class, ctx)
    if args.init_from and not args.resume:
        report = initialize_from(net, args.init_from, ctx=ctx)
        log.info('Initialized from %s: %d arrays loaded, class layers re-initialized: %s, '
                 'ignored: %s', args.init_from, len(report['loaded']),
                 ', '.join(report['reinitialized']) or 'none',
                 ', '.join(report['ignored']) or 'none')
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_mode=args.lr_mode,
        warmup_epochs=args.warmup_epochs, step_epochs=tuple(args.step_epochs),
        momentum=args.momentum, wd=args.wd, no_wd_bias_bn=args.no_wd,
        head_lr_mult=args.head_lr_mult, aux_weight=args.aux_weight if args.aux else 0.0,
        val_batch_size=args.val_batch_size, **run_config_kwargs(args))
    trainer = SegmentationTrainer(net, train_set, val_set, ctx=ctx, config=config,
                                  save_dir=args.save_dir, train_transform=train_transform,
                                  model_info=model_info, run_args=run_args_record(args))
    code, result = resume_and_fit(trainer, args)
    if result is None:
        return code
    wall = time.time() - start
    metrics = result['metrics']
    if metrics is None:
        print('Stopped at iteration %d (no validation yet); resume with --resume. Checkpoint: '
              '%s' % (result['iteration'], result['latest_checkpoint']))
        return 0
    best = result['best']
    print('Final validation (epoch %d, %s %s): pixAcc %.4f  mIoU %.4f'
          % (metrics['epoch'], args.val_dataset, args.val_split, metrics['pixAcc'],
             metrics['mIoU']))
    print('\n'.join(run_summary_lines(result, 'mIoU', wall)))
    # 'checkpoint' (the latest) is kept for the scripts that parse this line.
    print('FINAL ' + json.dumps({'mIoU': metrics['mIoU'], 'pixAcc': metrics['pixAcc'],
                                 'epoch': metrics['epoch'], 'wall_seconds': round(wall, 1),
                                 'checkpoint': result['latest_checkpoint'],
                                 'latest_checkpoint': result['latest_checkpoint'],
                                 'iteration': result['iteration'],
                                 'best_checkpoint': result['best_checkpoint'],
                                 'best_mIoU': best['mIoU'], 'best_epoch': best['epoch'],
                                 'train_seconds': round(result['train_seconds'], 1)}))
    return 0


def main(argv=None, description=None, task=None):
    return run(parse_args(argv, description, task))
