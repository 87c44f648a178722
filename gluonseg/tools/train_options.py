"""Train a segmentation model, semantic or Mask R-CNN: the command line of ``gluonseg train``,
``scripts/segmentation/train.py`` and ``scripts/instance/train_mask_rcnn.py`` (docs/training.md
lists the options).

The options of both tasks (the scripts take one task's), the choice of the task (the model name
chooses it, ``--task`` without one), the semantic presets (:data:`PRESETS`; Mask R-CNN's:
:mod:`gluonseg.tools.instance_train_options`) and the check of the combination; the run is
:mod:`gluonseg.tools.train`'s. Plain Python: ``gluonseg train --help`` and the checks answer
without MXNet.
"""
import argparse
import os

from ..data.catalog import SEGMENTATION_DATASETS, dataset_info
from ..model_zoo.registry import UnknownModelError, model_info
from ..model_zoo.weights_table import SEMANTIC_METHODS
from . import instance_train_options, tool_parser
from .run_arguments import add_run_arguments
from .task_options import TASKS, TaskOptions, settle_task

__all__ = ['PRESETS', 'DATASETS', 'VAL_DATASETS', 'TRAIN_SPLITS', 'add_arguments', 'task_of',
           'check_arguments', 'parse_args', 'fill_defaults']

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
                   val_length=200, head_lr_mult=10.0, seed=0),
    'default': dict(method='fcn', backbone='resnet101', base_size=520, crop_size=480,
                    scale_range=(0.5, 2.0), epochs=50, lr=0.0025, wd=4e-4, warmup_epochs=0.0,
                    batch_size=4, aux=True, pretrained_base=True, train_length=None,
                    val_length=None, head_lr_mult=10.0, seed=0),
}

# The datasets get_segmentation_dataset knows.
DATASETS = SEGMENTATION_DATASETS
# VOC-Aug's own val (SBD val) is mostly inside train_aug; VOC2012 val is held out from it.
VAL_DATASETS = {'voc_aug': 'voc'}

# The usual training split of each dataset: VOC-Aug's is train_aug (10,582 images: SBD train
# + val + VOC2012 train, without VOC2012 val), not SBD's own 8,498-image train list.
TRAIN_SPLITS = {'shapes': 'train', 'voc': 'train', 'voc_aug': 'train_aug', 'coco': 'train',
                'ade': 'train', 'citys': 'train', 'folder': 'train'}


def add_arguments(p, task=None):
    """The options of ``gluonseg train`` on an ``argparse`` parser: those of both tasks and
    ``--task``; ``task`` 'semantic' or 'instance' leaves out the other task's options and
    ``--task`` (the scripts ``scripts/segmentation/train.py`` and
    ``scripts/instance/train_mask_rcnn.py``)."""
    options = TaskOptions(p, task, 'semantic segmentation or instance (Mask R-CNN) training '
                          '(default: the task of --model or --init-from, else semantic)')
    option, text = options.add, options.text
    g = p.add_argument_group('model')
    option(g, None, '--model', help=text(
        'registered model name, e.g. deeplab_resnet101_voc (default: METHOD_BACKBONE_DATASET)',
        'mask_rcnn_[fpn_]NETWORK_coco (published sizes) or _small (narrow heads), e.g. '
        'mask_rcnn_fpn_resnet50_v1b_coco (default: from --network, --fpn and --small)',
        'registered model name, e.g. deeplab_resnet101_voc, or a Mask R-CNN: '
        'mask_rcnn_[fpn_]NETWORK_coco (published sizes) or _small (narrow heads); it chooses '
        'the task (default: METHOD_BACKBONE_DATASET, or from --network, --fpn and --small)'))
    option(g, 'semantic', '--method', choices=list(SEMANTIC_METHODS),
           help='used with --backbone when --model is not given (default: fcn)')
    option(g, 'semantic', '--backbone', help='resnet18/50/101/152, or resnest50/101/200/269 '
           'with deeplab (default: resnet18 on shapes, resnet101 otherwise)')
    option(g, 'semantic', '--aux', action=argparse.BooleanOptionalAction, default=None,
           help='auxiliary FCN head on stage 3 (default: off on shapes and for the models '
                'published without one, DANet and ICNet; on otherwise)')
    option(g, 'semantic', '--aux-weight', type=float, default=0.5,
           help='weight of the auxiliary loss (it scales its gradient)')
    option(g, 'instance', '--network', choices=sorted(instance_train_options.NETWORKS),
           help='Mask R-CNN backbone (default: resnet18_v1b on shapes, resnet50_v1b on coco)')
    option(g, 'instance', '--fpn', action=argparse.BooleanOptionalAction, default=None,
           help='Mask R-CNN: FPN model instead of C4 (default: on for shapes, off for coco)')
    option(g, 'instance', '--small', action=argparse.BooleanOptionalAction, default=None,
           help='Mask R-CNN: narrow heads, fewer proposals and samples, trainable BatchNorm '
           '(default: on for shapes)')
    option(g, None, '--pretrained-base', action=argparse.BooleanOptionalAction, default=None,
           help='start the backbone from ImageNet weights (default: off on shapes)')
    option(g, None, '--init-from', metavar='SOURCE', help=text(
        'start from these weights: a registered model name (its published weights), a '
        '.params file or a .ckpt; class layers are re-initialized when the class count '
        'differs',
        'a published Mask R-CNN (zoo name); its class layers are adapted to the dataset\'s '
        'classes, keeping classes of the same name'))
    option(g, 'semantic', '--syncbn', action='store_true',
           help='synchronized BatchNorm across devices')
    g = p.add_argument_group('data')
    option(g, None, '--dataset', default='shapes',
           choices=DATASETS if task != 'instance' else instance_train_options.DATASETS, help=text(
               'folder: your own data in --root (images/, labels/, classes.txt, train.txt, '
               'val.txt; see gluonseg.data.FolderSegmentation)',
               'shapes or coco (coco: also any COCO-format files, --train-json ...)'))
    option(g, None, '--root', help=text(
        'dataset folder (default $GLUONSEG_HOME/datasets/NAME; required for folder)',
        'the COCO folder (default $GLUONSEG_HOME/datasets/coco)',
        'dataset folder (default $GLUONSEG_HOME/datasets/NAME; required for folder); Mask '
        'R-CNN: the COCO folder'))
    option(g, 'semantic', '--train-split',
           help='default: train_aug for voc_aug, train otherwise')
    option(g, 'semantic', '--val-split', default='val')
    option(g, 'semantic', '--val-dataset', choices=DATASETS,
           help='validate on another dataset (default: voc for voc_aug, whose own val split '
           'is mostly inside train_aug; the training dataset otherwise)')
    option(g, 'semantic', '--val-root', help='folder of --val-dataset (default: --root when '
           'it is the training dataset, else $GLUONSEG_HOME/datasets/NAME)')
    option(g, 'semantic', '--base-size', type=int,
           help='random-scale base (shapes: image size)')
    option(g, 'semantic', '--crop-size', type=int, help='training crop and validation size')
    option(g, 'semantic', '--scale-range', type=float, nargs=2, metavar=('MIN', 'MAX'),
           help='random scale of the base size')
    option(g, 'instance', '--train-json', help='COCO-format annotations of the training images')
    option(g, 'instance', '--train-images', help='folder of the training images')
    option(g, 'instance', '--val-json', help='COCO-format annotations of the validation images')
    option(g, 'instance', '--val-images', help='folder of the validation images')
    option(g, 'instance', '--short', type=int,
           help='Mask R-CNN resize: short side (training and validation)')
    option(g, 'instance', '--max-size', type=int, help='Mask R-CNN resize: long side at most')
    option(g, 'instance', '--image-size', type=int, help='shapes (Mask R-CNN): generated '
           'image side')
    option(g, None, '--train-length', type=int, help='shapes: number of training scenes')
    option(g, None, '--val-length', type=int, help='shapes: number of validation scenes')
    option(g, 'instance', '--no-flip', dest='flip', action='store_false', default=None,
           help='Mask R-CNN: no random horizontal flips')
    option(g, None, '--workers', '-j', type=int, default=0, help='DataLoader worker processes')
    option(g, 'semantic', '--no-verify-labels', dest='verify_labels', action='store_false',
           help='skip the check of all labels (class ids and sizes) before training, for very '
           'large datasets; a bad label then stops the run when a batch reads it')
    g = p.add_argument_group('optimization')
    option(g, None, '--batch-size', type=int, help='images per device')
    option(g, 'semantic', '--val-batch-size', type=int, default=0,
           help='total; 0: training total')
    option(g, None, '--epochs', type=int)
    option(g, None, '--lr', type=float, help=text(
        'backbone learning rate; the loss is the mean over the labelled pixels of the whole '
        'batch (default: 0.04 on shapes, 0.0025 otherwise)',
        'default 0.02 on shapes, 0.00125 x images per update on coco (batch size x devices '
        'x --accumulate x workers)',
        'backbone learning rate; the loss is the mean over the labelled pixels of the whole '
        'batch (default: 0.04 on shapes, 0.0025 otherwise; Mask R-CNN: 0.02 on shapes, '
        '0.00125 x images per update on coco, i.e. batch size x devices x --accumulate x '
        'workers)'))
    option(g, 'semantic', '--lr-mode', default='poly', choices=['poly', 'cosine', 'step'])
    option(g, 'semantic', '--step-epochs', type=float, nargs='*', default=[],
           help='milestones of --lr-mode step')
    option(g, 'semantic', '--warmup-epochs', type=float)
    option(g, 'instance', '--lr-decay', type=float, default=0.1,
           help='Mask R-CNN: factor of each step decay')
    option(g, 'instance', '--lr-decay-epoch', type=float, nargs='*',
           help='Mask R-CNN: step decay epochs (default: 1.5 on shapes, 17 23 on coco)')
    option(g, 'instance', '--lr-warmup', type=int, help='Mask R-CNN: warmup iterations '
           '(default: 100 on shapes, max(8000 / images per update, 1000) on coco)')
    option(g, 'instance', '--lr-warmup-factor', type=float, default=1.0 / 3,
           help='Mask R-CNN: warmup starts at lr x this')
    option(g, None, '--momentum', type=float, default=0.9)
    option(g, None, '--wd', '--weight-decay', type=float, dest='wd', help=text(
        'weight decay (default: 1e-4 on shapes, 4e-4 otherwise)', 'weight decay (default '
        '1e-4)', 'weight decay (default: 1e-4 on shapes, 4e-4 otherwise; Mask R-CNN 1e-4)'))
    option(g, 'semantic', '--no-wd', action='store_true',
           help='no weight decay on biases and BatchNorm gamma/beta')
    option(g, 'semantic', '--head-lr-mult', type=float,
           help='learning-rate multiplier of the heads')
    option(g, 'instance', '--clip-gradient', type=float, default=0.0,
           help='Mask R-CNN: clip every gradient element to [-c, c] (0: off)')
    option(g, 'instance', '--freeze-stages', type=int, help='Mask R-CNN: backbone stages '
           'frozen with the stem (-1: none) (default: -1 on shapes, 1 on coco)')
    option(g, 'instance', '--freeze-bn', action=argparse.BooleanOptionalAction, default=None,
           help='Mask R-CNN: freeze the backbone BatchNorm parameters (default: on for coco)')
    g = add_run_arguments(p, text('runs/DATASET/MODEL', 'runs/instance/DATASET/MODEL'),
                          seed_default=None, seed_help=text(
                              'default: 0', 'default 0 on shapes, 233 on coco',
                              'default: 0; Mask R-CNN on coco 233'))
    option(g, 'instance', '--val-limit', type=int, default=0,
           help='Mask R-CNN: validate on the first N images only (0: all)')
    return p


def task_of(args):
    """``(task, source)``: the task of the model named by ``--model`` or ``--init-from`` (a
    Mask R-CNN architecture name, or a registered model) and that option; ``(None, None)``
    when neither names one."""
    for option, name in (('--model', args.model), ('--init-from', args.init_from)):
        if not name or os.path.exists(name):  # --init-from takes files too
            continue
        if instance_train_options.MODEL_NAME.match(name):
            return 'instance', '%s %s' % (option, name)
        try:
            task = model_info(name).task
        except UnknownModelError:
            continue  # the task's own check names the closest names
        if task in TASKS:
            return task, '%s %s' % (option, name)
    return None, None


def check_arguments(p, args):
    """Choose the task (``--task``, else :func:`task_of`, else semantic), refuse the other
    task's options, and fill the unset options from the dataset's preset; exit through
    ``p.error`` on a combination that cannot train."""
    settle_task(p, args, *task_of(args))
    if args.task == 'instance':
        return instance_train_options.check_arguments(p, args)
    try:
        fill_defaults(args)
    except (ValueError, UnknownModelError) as err:
        p.error(err.args[0])
    return args


def parse_args(argv=None, description=None, task=None):
    p = tool_parser(__doc__, description)
    add_arguments(p, task)
    return check_arguments(p, p.parse_args(argv))


def fill_defaults(args):
    """Fill unset options from the dataset's preset and check the combination."""
    if args.dataset == 'folder' and not args.root:
        raise ValueError('--dataset folder needs --root DIR: the folder with images/, labels/, '
                         'classes.txt and the split lists train.txt and val.txt')
    preset = PRESETS['shapes' if args.dataset == 'shapes' else 'default']
    for key, value in preset.items():
        if getattr(args, key, None) is None and key != 'aux':
            setattr(args, key, value)
    if args.model is None:
        args.model = '%s_%s_%s' % (args.method, args.backbone,
                                   dataset_info(args.dataset).model_suffix)
    args.scale_range = tuple(args.scale_range)
    if args.train_split is None:
        args.train_split = TRAIN_SPLITS[args.dataset]
    if args.val_dataset is None:
        args.val_dataset = VAL_DATASETS.get(args.dataset, args.dataset)
    if args.val_root is None and args.val_dataset == args.dataset:
        args.val_root = args.root
    entry = model_info(args.model)  # an unknown name fails here, with the closest names
    if args.aux is None:  # a family published without the auxiliary head fixes aux=False
        args.aux = getattr(entry.builder, 'kwargs', {}).get('aux', preset['aux'])
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', args.dataset, args.model)
