"""Evaluate a segmentation model, semantic (pixAcc, mIoU, per-class IoU) or Mask R-CNN (COCO
box and mask AP): the command line of ``gluonseg eval``, ``scripts/segmentation/test.py`` and
``scripts/instance/eval_mask_rcnn.py``.

The options of both tasks (the scripts take one task's), the choice of the task (the checkpoint
or the model chooses it, ``--task`` without one) and the check of the combination (Mask
R-CNN's: :mod:`gluonseg.tools.instance_evaluate_options`); the run is
:mod:`gluonseg.tools.evaluate`'s. Plain Python: ``gluonseg eval --help`` answers without MXNet;
checking the weight files given imports it (the run needs it next).
"""
import os

from ..data.catalog import PUBLISHED_SCALES, SEGMENTATION_DATASETS
from ..model_zoo.registry import UnknownModelError, model_info
from . import instance_evaluate_options, instance_train_options, tool_parser
from .task_options import TASKS, TaskOptions, settle_task

__all__ = ['add_arguments', 'task_of', 'check_arguments', 'check_weight_files',
           'parse_args']


def add_arguments(p, task=None):
    """The options of ``gluonseg eval`` on an ``argparse`` parser: those of both tasks and
    ``--task``; ``task`` 'semantic' or 'instance' leaves out the other task's options and
    ``--task`` (the scripts ``scripts/segmentation/test.py`` and
    ``scripts/instance/eval_mask_rcnn.py``)."""
    options = TaskOptions(p, task, 'semantic segmentation or instance (Mask R-CNN) evaluation '
                          '(default: the task of the checkpoint or of --model, else semantic)')
    option, text = options.add, options.text
    option(p, None, 'checkpoint', nargs='?', help='a .ckpt written by training')
    option(p, None, '--checkpoint', dest='checkpoint_option', metavar='CHECKPOINT',
           help='the same as the checkpoint argument')
    option(p, None, '--model', help='registered model name (with --pretrained or --params)')
    option(p, None, '--pretrained', nargs='?', const=True, default=False, metavar='SHA1',
           help='load the published weights of --model (or the file whose SHA-1 starts with '
           'SHA1)')
    option(p, None, '--params', help='a .params weight file for --model')
    option(p, 'semantic', '--aux', action='store_true',
           help='build --model with its auxiliary head (when the weight file has it)')
    option(p, None, '--dataset',
           choices=(SEGMENTATION_DATASETS if task != 'instance'
                    else instance_evaluate_options.DATASETS),
           help=text("default: the checkpoint's, or the model name's",
                     "coco (also any COCO-format files) or shapes (default: the checkpoint's, "
                     "else coco)",
                     "default: the checkpoint's, or the model name's; Mask R-CNN: coco (also "
                     "any COCO-format files) or shapes"))
    option(p, None, '--root', help='dataset folder')
    option(p, 'semantic', '--split', help="default: the checkpoint's validation split, else "
           "val. A split without labels (VOC or Cityscapes test) needs --save-predictions")
    option(p, 'semantic', '--mode', choices=['val', 'testval'],
           help="val: short side to crop size and centre crop (train.py's validation); "
           "testval: full-size images. Default: val for a checkpoint, testval for a model or "
           "with --save-predictions")
    option(p, 'semantic', '--base-size', type=int,
           help='multi-scale base (default: the run\'s)')
    option(p, 'semantic', '--crop-size', type=int,
           help='val crop / sliding window (default: the run\'s)')
    option(p, None, '--length', type=int, help='shapes: number of scenes (default: the run\'s)')
    option(p, 'semantic', '--multi-scale', action='store_true',
           help='average over scales and flips (MultiScaleEvaluator)')
    option(p, 'semantic', '--scales', type=float, nargs='+', default=list(PUBLISHED_SCALES))
    option(p, 'semantic', '--no-flip', action='store_true')
    option(p, 'semantic', '--combine', choices=['softmax', 'gluoncv'], default='softmax',
           help="how multi-scale scores are combined ('gluoncv': its protocol)")
    option(p, 'semantic', '--absent-class', choices=['nan', 'zero'], default='nan',
           help="IoU of a class absent from labels and predictions ('zero': GluonCV)")
    option(p, 'semantic', '--batch-size', type=int,
           help='total (default: 1 for testval / multi-scale, else 8)')
    option(p, 'instance', '--val-json',
           help='Mask R-CNN: COCO-format annotations (default: COCO val2017)')
    option(p, 'instance', '--val-images', help='Mask R-CNN: folder of their images')
    option(p, 'instance', '--image-size', type=int, help='shapes (Mask R-CNN): image side')
    option(p, 'instance', '--limit', type=int, help='Mask R-CNN: only the first N images')
    option(p, 'instance', '--short', type=int, help='Mask R-CNN resize: short side (default '
           '800, or the checkpoint\'s)')
    option(p, 'instance', '--max-size', type=int,
           help='Mask R-CNN resize: long side at most (default 1333)')
    option(p, 'instance', '--score-thresh', type=float, default=0.001,
           help='Mask R-CNN: keep detections scoring at least this')
    option(p, 'instance', '--max-dets', type=int, default=100,
           help='Mask R-CNN: detections kept per image')
    option(p, 'instance', '--rpn-test-post-nms', type=int,
           help='Mask R-CNN: proposals per image (default: the model\'s, 1000 published)')
    option(p, 'instance', '--optimize', choices=['float32', 'int8'],
           help='Mask R-CNN on the CPU: evaluate gluonseg.optimize(net, dtype=...), fused '
           'float32, or int8 calibrated on training images (default: the network\'s own '
           'detect)')
    option(p, 'instance', '--calib-mode', choices=['naive', 'entropy'],
           help='int8 thresholds: min/max or KL (default naive)')
    option(p, 'instance', '--num-calib-batches', type=int, metavar='N',
           help='int8: calibrate on the first N training images, one per batch (default 4)')
    option(p, 'instance', '--train-json', help='--optimize int8: COCO-format annotations of '
           'the calibration (training) images (default: the checkpoint\'s, or COCO train2017)')
    option(p, 'instance', '--train-images', help='--optimize int8: folder of those images')
    option(p, None, '--gpus', default='', help=text(
        'e.g. 0,1 (default: CPU)', 'one GPU index (default: CPU)',
        'e.g. 0,1 (default: CPU); Mask R-CNN: one GPU'))
    option(p, 'semantic', '--ctx-cpus', type=int, default=1)
    option(p, 'semantic', '--workers', type=int, default=0)
    option(p, 'semantic', '--output', help='JSON result path (default: next to the '
           'checkpoint, or runs/eval/)')
    option(p, 'semantic', '--save-predictions', metavar='DIR',
           help='also write each prediction as DIR/<image id>.png: class ids as the indices '
           'of an 8-bit palette PNG (the dataset\'s colours), at the original image size. DIR '
           'results/VOC2012/Segmentation/comp6_test_cls with --dataset voc --split test is a '
           'VOC test-server submission')
    option(p, 'instance', '--save-prefix', help='Mask R-CNN: results files prefix (default '
           'runs/instance/eval/<model>_<dataset>)')
    option(p, 'instance', '--no-hybridize', action='store_true')
    option(p, None, '--no-progress', action='store_true')
    return p


def task_of(args):
    """``(task, source)``: the task of the checkpoint or of ``--model``, and which of them;
    ``(None, None)`` when that cannot be told."""
    if args.checkpoint:
        from ..engine.checkpoint import checkpoint_task  # lazy: only checking a file needs MXNet
        task = checkpoint_task(args.checkpoint)
        if task in TASKS:
            return task, 'the checkpoint %s' % args.checkpoint
    elif args.model:
        if instance_train_options.MODEL_NAME.match(args.model):
            return 'instance', '--model %s' % args.model
        try:
            task = model_info(args.model).task
        except UnknownModelError:
            task = None  # loading it names the closest names
        if task in TASKS:
            return task, '--model %s' % args.model
    return None, None


def check_arguments(p, args):
    """Choose the task (``--task``, else :func:`task_of`, else semantic); exit through
    ``p.error`` on a contradictory or incomplete command line."""
    if args.checkpoint_option:
        if args.checkpoint and args.checkpoint != args.checkpoint_option:
            p.error('two checkpoints given: %s and --checkpoint %s'
                    % (args.checkpoint, args.checkpoint_option))
        args.checkpoint = args.checkpoint_option
    settle_task(p, args, *task_of(args))
    if args.task == 'instance':
        instance_evaluate_options.check_arguments(p, args)
    else:
        if not args.checkpoint and not args.model:
            p.error('give a checkpoint, or --model NAME with --pretrained or --params FILE')
        if args.checkpoint and (args.model or args.pretrained or args.params):
            p.error('give either a checkpoint or --model, not both')
        if args.model and not (args.pretrained or args.params):
            p.error('--model %s needs --pretrained (published weights) or --params FILE'
                    % args.model)
        if args.save_predictions and args.mode == 'val':
            p.error('--save-predictions writes predictions at the original image size: use '
                    '--mode testval (the default with --save-predictions)')
    return check_weight_files(p, args, 'give it as the checkpoint argument (e.g. gluonseg '
                              'eval %s)')


def check_weight_files(p, args, pass_checkpoint):
    """Exit through ``p.error`` when ``--params`` names a checkpoint or the checkpoint option
    a ``.params`` file (or neither kind), saying which option takes the file.

    ``pass_checkpoint``: how the command takes a checkpoint, with ``%s`` for the path. Files
    that do not exist are left to the loaders, which name them.
    """
    if not any(path and os.path.isfile(path) for path in (args.params, args.checkpoint)):
        return args
    from ..engine.checkpoint import weight_file_kind  # lazy: only checking a file needs MXNet
    if args.params and os.path.isfile(args.params):
        kind = weight_file_kind(args.params)
        if kind == 'checkpoint':
            p.error('--params %s is a gluonseg checkpoint (a .ckpt written by training), not a '
                    '.params weight file: %s, without --model; it brings its model and the '
                    'run\'s settings' % (args.params, pass_checkpoint % args.params))
        if kind is None:
            p.error('--params %s is not a .params weight file (not in MXNet\'s NDArray format: '
                    'empty, damaged or of another format)' % args.params)
    if args.checkpoint and os.path.isfile(args.checkpoint):
        kind = weight_file_kind(args.checkpoint)
        if kind == 'params':
            p.error('%s is a .params weight file, not a gluonseg checkpoint: pass --model NAME '
                    '--params %s (NAME: the registered model whose weights it holds)'
                    % (args.checkpoint, args.checkpoint))
        if kind is None:
            p.error('%s is not a gluonseg checkpoint (not a zip archive: empty, damaged or of '
                    'another format). Pass a .ckpt written by training, or --model NAME --params '
                    'FILE for a .params weight file' % args.checkpoint)
    return args


def parse_args(argv=None, description=None, task=None):
    p = tool_parser(__doc__, description)
    add_arguments(p, task)
    return check_arguments(p, p.parse_args(argv))
