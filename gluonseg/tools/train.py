"""Train a semantic segmentation model: the code of ``scripts/segmentation/train.py`` and
``gluonseg train`` (same options; docs/training.md lists them).

    gluonseg train                     # fcn_resnet18_shapes on the built-in Shapes data, CPU
    gluonseg train --model deeplab_resnet101_voc --dataset voc_aug --gpus 0,1,2,3 --syncbn

The options left unset take the values of a per-dataset preset (:data:`PRESETS`).
"""
import argparse
import json
import os
import sys
import time

import mxnet as mx

from ..data import SegmentationTrainTransform, SegmentationValTransform
from ..data.base import LabelCheckError
from ..engine import (SegmentationTrainer, TrainConfig, dataset_short_name,
                      get_segmentation_dataset, initialize_from, seed_everything)
from ..engine.data import DATASET_LOADERS
from ..engine.run_options import (add_run_arguments, console_logging, contexts, resume_and_fit,
                                  run_args_record, run_config_kwargs, start_amp)
from ..model_zoo import get_model, model_info
from ..model_zoo.registry import UnknownModelError
from . import tool_parser

__all__ = ['PRESETS', 'TRAIN_SPLITS', 'UPDATE_STEPS_MEANING', 'add_arguments', 'check_arguments',
           'parse_args', 'fill_defaults', 'build_datasets', 'shared_images', 'verify_labels',
           'run_summary_lines', 'build_model', 'run', 'main']

# Per-dataset defaults for the options left unset.
# - shapes: reaches mIoU >= 0.80 on Shapes val in about 4-5 minutes on 2 CPU cores from a random
#   initialization (64x64 scenes, 5 epochs of 2000, batch 8, lr 0.04).
# - the others: GluonCV's published recipe (4 GPUs x 4 images, SGD momentum 0.9, poly, base
#   520 / crop 480, aux). GluonCV's loss is normalized per GPU and again by the total batch, so
#   its nominal lr 0.01 / wd 1e-4 act as lr 0.01 * 4/16 and wd 1e-4 * 16/4 on the true mean
#   loss used here; those are the values below.
PRESETS = {
    'shapes': dict(method='fcn', backbone='resnet18', base_size=64, crop_size=64,
                   scale_range=(1.0, 1.0), epochs=5, lr=0.04, wd=1e-4, warmup_epochs=0.0,
                   batch_size=8, aux=False, pretrained_base=False, train_length=2000,
                   val_length=200, head_lr_mult=10.0),
    'default': dict(method='fcn', backbone='resnet101', base_size=520, crop_size=480,
                    scale_range=(0.5, 2.0), epochs=50, lr=0.0025, wd=4e-4, warmup_epochs=0.0,
                    batch_size=4, aux=True, pretrained_base=True, train_length=None,
                    val_length=None, head_lr_mult=10.0),
}

# The datasets get_segmentation_dataset knows.
DATASETS = tuple(DATASET_LOADERS)
# VOC-Aug's own val (SBD val) is mostly inside train_aug; VOC2012 val is held out from it.
VAL_DATASETS = {'voc_aug': 'voc'}

# What the trainer's train_seconds counts: the time inside its update steps (_train_step).
UPDATE_STEPS_MEANING = ('forward, backward and optimizer update with the batch copy to the '
                        'devices, summed over the run and its resumed parts; not counted: data '
                        'loading and augmentation, validation, checkpoint writing')

# The usual training split of each dataset: VOC-Aug's is train_aug (10,582 images: SBD train
# + val + VOC2012 train, without VOC2012 val), not SBD's own 8,498-image train list.
TRAIN_SPLITS = {'shapes': 'train', 'voc': 'train', 'voc_aug': 'train_aug', 'coco': 'train',
                'ade': 'train', 'citys': 'train', 'folder': 'train'}


def add_arguments(p):
    """The options of train.py / ``gluonseg train`` on an ``argparse`` parser."""
    g = p.add_argument_group('model')
    g.add_argument('--model', help='registered model name, e.g. deeplab_resnet101_voc '
                   '(default: METHOD_BACKBONE_DATASET)')
    g.add_argument('--method', choices=['fcn', 'psp', 'deeplab'],
                   help='used with --backbone when --model is not given (default: fcn)')
    g.add_argument('--backbone', help='resnet18/50/101/152 (default: resnet18 on shapes, '
                   'resnet101 otherwise)')
    g.add_argument('--aux', action=argparse.BooleanOptionalAction, default=None,
                   help='auxiliary FCN head on stage 3 (default: off on shapes, on otherwise)')
    g.add_argument('--aux-weight', type=float, default=0.5,
                   help='weight of the auxiliary loss (it scales its gradient)')
    g.add_argument('--pretrained-base', action=argparse.BooleanOptionalAction, default=None,
                   help='start the backbone from ImageNet weights (default: off on shapes)')
    g.add_argument('--init-from', metavar='SOURCE',
                   help='start from these weights: a registered model name (its published '
                   'weights), a .params file or a .ckpt; class layers are re-initialized '
                   'when the class count differs')
    g.add_argument('--syncbn', action='store_true',
                   help='synchronized BatchNorm across devices')
    g = p.add_argument_group('data')
    g.add_argument('--dataset', default='shapes',
                   choices=DATASETS,
                   help='folder: your own data in --root (images/, labels/, classes.txt, '
                   'train.txt, val.txt; see gluonseg.data.FolderSegmentation)')
    g.add_argument('--root', help='dataset folder (default $GLUONSEG_HOME/datasets/NAME; '
                   'required for folder)')
    g.add_argument('--train-split', help='default: train_aug for voc_aug, train otherwise')
    g.add_argument('--val-split', default='val')
    g.add_argument('--val-dataset', choices=DATASETS,
                   help='validate on another dataset (default: voc for voc_aug, whose own val '
                   'split is mostly inside train_aug; the training dataset otherwise)')
    g.add_argument('--val-root', help='folder of --val-dataset (default: --root when it is '
                   'the training dataset, else $GLUONSEG_HOME/datasets/NAME)')
    g.add_argument('--base-size', type=int, help='random-scale base (shapes: image size)')
    g.add_argument('--crop-size', type=int, help='training crop and validation size')
    g.add_argument('--scale-range', type=float, nargs=2, metavar=('MIN', 'MAX'),
                   help='random scale of the base size')
    g.add_argument('--train-length', type=int, help='shapes: number of training scenes')
    g.add_argument('--val-length', type=int, help='shapes: number of validation scenes')
    g.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    g.add_argument('--no-verify-labels', dest='verify_labels', action='store_false',
                   help='skip the check of all labels (class ids and sizes) before training, '
                   'for very large datasets; a bad label then stops the run when a batch '
                   'reads it')
    g = p.add_argument_group('optimization')
    g.add_argument('--batch-size', type=int, help='images per device')
    g.add_argument('--val-batch-size', type=int, default=0, help='total; 0: training total')
    g.add_argument('--epochs', type=int)
    g.add_argument('--lr', type=float, help='backbone learning rate; the loss is the mean over '
                   'the labelled pixels of the whole batch (default: 0.04 on shapes, 0.0025 '
                   'otherwise)')
    g.add_argument('--lr-mode', default='poly', choices=['poly', 'cosine', 'step'])
    g.add_argument('--step-epochs', type=float, nargs='*', default=[],
                   help='milestones of --lr-mode step')
    g.add_argument('--warmup-epochs', type=float)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--wd', '--weight-decay', type=float, dest='wd',
                   help='weight decay (default: 1e-4 on shapes, 4e-4 otherwise)')
    g.add_argument('--no-wd', action='store_true',
                   help='no weight decay on biases and BatchNorm gamma/beta')
    g.add_argument('--head-lr-mult', type=float, help='learning-rate multiplier of the heads')
    add_run_arguments(p, 'runs/DATASET/MODEL')


def check_arguments(p, args):
    """Fill the unset options from the dataset's preset; exit through ``p.error`` on a
    combination that cannot train."""
    try:
        fill_defaults(args)
    except (ValueError, UnknownModelError) as err:
        p.error(err.args[0])
    return args


def parse_args(argv=None, description=None):
    p = tool_parser(__doc__, description)
    add_arguments(p)
    return check_arguments(p, p.parse_args(argv))


def fill_defaults(args):
    """Fill unset options from the dataset's preset and check the combination."""
    if args.dataset == 'folder' and not args.root:
        raise ValueError('--dataset folder needs --root DIR: the folder with images/, labels/, '
                         'classes.txt and the split lists train.txt and val.txt')
    preset = PRESETS['shapes' if args.dataset == 'shapes' else 'default']
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.model is None:
        args.model = '%s_%s_%s' % (args.method, args.backbone, dataset_short_name(args.dataset))
    args.scale_range = tuple(args.scale_range)
    if args.train_split is None:
        args.train_split = TRAIN_SPLITS[args.dataset]
    if args.val_dataset is None:
        args.val_dataset = VAL_DATASETS.get(args.dataset, args.dataset)
    if args.val_root is None and args.val_dataset == args.dataset:
        args.val_root = args.root
    model_info(args.model)  # an unknown name fails here, with the closest names
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', args.dataset, args.model)


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


def run_summary_lines(result, metric, wall):
    """The closing lines of a training run: its best and latest checkpoints, labelled, its
    wall time and the time of its update steps (``train_seconds``: :data:`UPDATE_STEPS_MEANING`).

    ``result`` is what ``trainer.fit`` returns; ``metric`` the trainer's ``BEST_METRIC``.
    """
    best = result['best']
    if result['best_checkpoint'] is None:
        best_line = 'best checkpoint: none (no validation result yet)'
    else:
        best_line = 'best checkpoint (%s %.4f at epoch %d): %s' % (
            metric, best[metric], best['epoch'], result['best_checkpoint'])
    return [best_line,
            'latest checkpoint (epoch %d, iteration %d; resume with --resume): %s'
            % (result['epoch'], result['iteration'], result['latest_checkpoint']),
            'wall time %.1f s (this process, set-up to end)' % wall,
            'update steps %.1f s (%s)' % (result['train_seconds'], UPDATE_STEPS_MEANING)]


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
    """Train as ``args`` of :func:`parse_args` say; returns the exit code."""
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


def main(argv=None, description=None):
    return run(parse_args(argv, description))
