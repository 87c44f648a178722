"""Evaluate a segmentation model: pixAcc, mIoU and per-class IoU, printed and written as JSON;
optionally the predictions as palette PNGs (the format of the VOC test server).

The code of ``scripts/segmentation/test.py`` and ``gluonseg eval`` (its command line:
:mod:`gluonseg.tools.evaluate_options`)::

    gluonseg eval runs/shapes/fcn_resnet18_shapes/best.ckpt
    gluonseg eval --model deeplab_resnet101_voc --pretrained --dataset voc --split test \\
        --multi-scale --save-predictions results/VOC2012/Segmentation/comp6_test_cls

The checkpoint or the model chooses the task (``--task`` chooses it without one): a Mask
R-CNN is scored by COCO box and mask AP (:mod:`gluonseg.tools.instance_evaluate`, also
``scripts/instance/eval_mask_rcnn.py``).

A sample whose image or label cannot be read (a truncated JPEG, a label of the wrong size or
with values outside the classes) is reported by name with the reason and left out; the others
are scored and the output says how many were. The command then exits with status 1, and the
JSON result lists the samples left out (``excluded``): a score over part of the split is never
passed off as the whole split's. Status 2: nothing was evaluated (bad command line, model or
dataset).
"""
import json
import os
import sys
import time

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..data import SegmentationTestValTransform, SegmentationValTransform
from ..data.catalog import dataset_info, dataset_of_model_suffix
from ..data.transforms import pad_batchify
from ..engine import get_segmentation_dataset, load_checkpoint, predict_batch
from ..engine.run_options import contexts
from ..model_zoo import get_model
from ..model_zoo.multiscale import MultiScaleEvaluator
from ..model_zoo.registry import UnknownModelError, load_weights
from ..utils.atomic import write_atomically
from ..utils.metrics import SegmentationMetric
from ..utils.viz import colorize_mask
from . import instance_evaluate
# The command line, here too for the scripts and notebooks that parse and run in one module.
from .evaluate_options import (add_arguments, check_arguments, check_weight_files,
                               parse_args, task_of)

__all__ = ['SAMPLE_ERRORS', 'add_arguments', 'task_of', 'check_arguments',
           'parse_args', 'check_weight_files', 'network_from_checkpoint',
           'zoo_network', 'load_network', 'build_dataset', 'palette_of', 'iter_predictions',
           'save_label_png', 'run', 'main']


def network_from_checkpoint(ckpt, ctx):
    """The semantic network of a train.py checkpoint, with its weights; and its name."""
    model = ckpt.get('model') or {}
    if not model.get('name'):
        raise ValueError('%s does not say which model it holds (no model name in its '
                         'metadata)' % ckpt.path)
    net = get_model(model['name'], pretrained=False, pretrained_base=False, ctx=ctx,
                    **model.get('kwargs', {}))
    ckpt.load_into(net, ctx=ctx)
    return net, model['name']


def zoo_network(name, pretrained=False, params=None, ctx=mx.cpu(), **kwargs):
    """A registered model with its published weights (``pretrained``: True or a SHA-1 prefix)
    or the weights of a ``.params`` file (loaded strictly)."""
    if params:
        net = get_model(name, pretrained=False, pretrained_base=False, ctx=ctx, **kwargs)
        try:
            load_weights(net, params, ctx=ctx)
        except mx.base.MXNetError as err:  # its message is a C++ trace naming no file
            raise ValueError('cannot read the weight file %s (%s): it is damaged or truncated'
                             % (params, str(err).strip().splitlines()[-1])) from None
        return net
    return get_model(name, pretrained=pretrained, ctx=ctx, **kwargs)


def load_network(args, ctx):
    """The network and the run settings it comes with (empty for zoo weights).

    ``args`` has ``checkpoint``, or ``model`` with ``pretrained`` or ``params`` (and ``aux``).

    Returns
    -------
    (net, model name, run arguments dict, Checkpoint or None)
    """
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        net, name = network_from_checkpoint(ckpt, ctx)
        return net, name, ckpt.get('args') or {}, ckpt
    net = zoo_network(args.model, args.pretrained, args.params, ctx, aux=args.aux)
    return net, args.model, {}, None


def build_dataset(args, run, model_name):
    """The dataset to evaluate and its settings (dataset, split, mode, crop and base size)."""
    dataset = args.dataset or run.get('val_dataset') or run.get('dataset') or \
        dataset_of_model_suffix(model_name.rsplit('_', 1)[-1])
    if dataset is None:
        raise ValueError('Cannot tell the dataset of %s: pass --dataset' % model_name)
    split = args.split or run.get('val_split') or 'val'
    mode = args.mode or ('val' if run and not args.save_predictions else 'testval')
    crop = args.crop_size or run.get('crop_size') or 480
    base = args.base_size or run.get('base_size') or 520
    transform = SegmentationValTransform(crop) if mode == 'val' \
        else SegmentationTestValTransform()
    kwargs = {}
    if dataset == 'shapes':
        kwargs = {'size': run.get('base_size') or base, 'seed': 0,
                  'length': args.length or run.get('val_length')}
    root = args.root or run.get('val_root', run.get('root'))
    ds = get_segmentation_dataset(dataset, split, root=root, transform=transform, **kwargs)
    return ds, dict(dataset=dataset, split=split, mode=mode, crop_size=crop, base_size=base)


def palette_of(dataset):
    """The :func:`gluonseg.utils.viz.get_palette` name for a dataset name of
    :func:`gluonseg.engine.get_segmentation_dataset` (VOC's colours for VOC, COCO and Shapes)."""
    return dataset_info(dataset).palette


def _batchify_with_sizes(samples):
    """Pad ``(image, mask)`` samples or bare images (unlabeled splits) to one batch, and add
    each image's own (H, W): ``(images, masks or None, sizes)``."""
    paired = isinstance(samples[0], (tuple, list))
    sizes = mx.nd.array([(s[0] if paired else s).shape[-2:] for s in samples], dtype='int32')
    if paired:
        images, masks = pad_batchify(samples, image_pad=0.0, mask_pad=255)
        return images, masks, sizes
    return pad_batchify(samples, image_pad=0.0), sizes


# What reading one sample raises for a bad file: ImageReadError and missing files (OSError),
# labels of the wrong size, mode or values (ValueError).
SAMPLE_ERRORS = (OSError, ValueError)


class _SamplesOrErrors(mx.gluon.data.Dataset):
    """``(index, sample, None)``, or ``(index, None, reason)`` for a sample that cannot be read:
    one bad file then costs its own sample, not the batch (or, in a worker process, the run)."""

    def __init__(self, dataset):
        self._dataset = dataset
        self._ids = getattr(dataset, 'ids', None)

    def __len__(self):
        return len(self._dataset)

    def __getitem__(self, index):
        try:
            return index, self._dataset[index], None
        except SAMPLE_ERRORS as err:
            name = 'sample %d' % index
            if self._ids is not None and len(self._ids) == len(self._dataset):
                name += ' (id %s)' % self._ids[index]
            return index, None, '%s: %s' % (name, err)


def _batchify_readable(entries):
    """``(batch of the readable samples or None, their indices, [(index, reason)] of the
    others)``."""
    readable = [(index, sample) for index, sample, reason in entries if reason is None]
    failed = [(index, reason) for index, _, reason in entries if reason is not None]
    batch = _batchify_with_sizes([sample for _, sample in readable]) if readable else None
    return batch, [index for index, _ in readable], failed


def iter_predictions(net, dataset, ctx=mx.cpu(), batch_size=1, evaluator=None, num_workers=0,
                     progress=False, on_error=None):
    """Predict every image of a dataset, in order.

    Parameters
    ----------
    net : Block
    dataset : Dataset
        Transformed samples: ``(image float32 CHW, mask HxW)``, or the image alone on splits
        without labels.
    ctx : Context or list of Context
        Batches are split across these (``evaluator`` runs on the first).
    batch_size : int
        Images of different sizes are padded (use 1 with a multi-scale ``evaluator``).
    evaluator : callable, optional
        E.g. a :class:`~gluonseg.model_zoo.multiscale.MultiScaleEvaluator`.
    num_workers : int
    progress : bool
        Show a tqdm bar.
    on_error : callable, optional
        ``on_error(index, reason)`` for a sample whose reading raises one of
        :data:`SAMPLE_ERRORS` (``reason``: the sample, its id and the error's message); the
        sample is then skipped. Without it such an error ends the iteration.

    Yields
    ------
    (int, numpy.ndarray, numpy.ndarray or None)
        The index, the int32 class ids at the image's own size, and its mask (None without
        labels).
    """
    ctx_list = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    guarded = on_error is not None
    loader = mx.gluon.data.DataLoader(_SamplesOrErrors(dataset) if guarded else dataset,
                                      batch_size=batch_size, shuffle=False, last_batch='keep',
                                      num_workers=num_workers,
                                      batchify_fn=_batchify_readable if guarded
                                      else _batchify_with_sizes)
    if progress:
        loader = tqdm(loader, desc='predict', leave=False, dynamic_ncols=True)
    start = 0
    for batch in loader:
        if guarded:
            batch, indices, failed = batch
            for index, reason in failed:
                on_error(index, reason)
            if batch is None:
                continue
        else:
            indices = range(start, start + batch[0].shape[0])
            start += len(indices)
        images, sizes = batch[0], batch[-1].asnumpy()
        masks = batch[1].asnumpy() if len(batch) == 3 else None
        used = ctx_list[:images.shape[0]]  # a last batch smaller than the device count
        preds = np.concatenate([p.asnumpy() for p in predict_batch(net, images, used,
                                                                   evaluator)])
        for k, (index, (height, width)) in enumerate(zip(indices, sizes)):
            yield (index, preds[k, :height, :width],
                   None if masks is None else masks[k, :height, :width])


def save_label_png(path, labels, palette):
    """Write class ids as an 8-bit palette PNG, atomically.

    The pixel values are the class ids; the colours are ``palette``'s (for ``'voc'`` exactly
    the 256 colours of the VOC annotations, so the file reads like a ``SegmentationClass``
    PNG)."""
    image = colorize_mask(labels, palette, ignore_index=None)
    return write_atomically(path, lambda f: image.save(f, format='PNG'))


def _prediction_names(dataset):
    ids = getattr(dataset, 'ids', None)
    if not ids or len(ids) != len(dataset):
        ids = ['%06d' % i for i in range(len(dataset))]
    names = [str(i) for i in ids]
    bad = [n for n in names if not n or os.sep in n or n.startswith('.')]
    if bad:
        raise ValueError('image ids such as %r cannot name prediction files' % bad[0])
    return names


def print_table(summary, classes):
    width = max(8, max(len(c) for c in classes))
    print('%-*s  %8s  %8s' % (width, 'class', 'IoU', 'acc'))
    for name in classes:
        iou, acc = summary['per_class_iou'][name], summary['per_class_acc'][name]
        print('%-*s  %8s  %8s' % (width, name, '-' if iou is None else '%.4f' % iou,
                                  '-' if acc is None else '%.4f' % acc))


def run(args):
    """Evaluate (and/or write the predictions) as ``args`` of :func:`parse_args` say.

    Returns the exit status: 0, 1 when samples were left out (see the module), 2 when nothing
    could be evaluated. A Mask R-CNN: :func:`gluonseg.tools.instance_evaluate.run`."""
    if args.task == 'instance':
        return instance_evaluate.run(args)
    ctx = contexts(args)
    try:
        net, model_name, run_args, ckpt = load_network(args, ctx)
        dataset, setting = build_dataset(args, run_args, model_name)
    except (OSError, ValueError, UnknownModelError) as err:  # CheckpointError is an OSError
        print('error: %s' % err, file=sys.stderr)
        return 2
    net.hybridize(static_alloc=True)
    labeled = getattr(dataset, 'has_labels', True)
    if not labeled and not args.save_predictions:
        print('error: the %s split of %s has no labels, so there is nothing to score: pass '
              '--save-predictions DIR to write the predictions'
              % (setting['split'], setting['dataset']), file=sys.stderr)
        return 2
    evaluator = None
    if args.multi_scale:
        info = getattr(net, 'gluonseg_info', None)
        evaluator = MultiScaleEvaluator(
            net, base_size=setting['base_size'], crop_size=setting['crop_size'],
            scales=args.scales, flip=not args.no_flip, combine=args.combine,
            **({'mean': info.mean, 'std': info.std} if info is not None else {}))
    batch_size = args.batch_size or (1 if args.multi_scale or setting['mode'] == 'testval'
                                     else 8)
    folder, names, palette = args.save_predictions, None, None
    if folder:
        os.makedirs(folder, exist_ok=True)
        names, palette = _prediction_names(dataset), palette_of(setting['dataset'])
    metric = SegmentationMetric(dataset.num_class, ignore_index=dataset.ignore_index,
                                absent_class=args.absent_class)
    excluded = []

    def exclude(index, reason):
        excluded.append({'index': index, 'reason': reason})
        print('error: %s; left out' % reason, file=sys.stderr)

    start = time.time()
    for index, pred, mask in iter_predictions(net, dataset, ctx, batch_size, evaluator,
                                              args.workers, not args.no_progress, exclude):
        if mask is not None:
            metric.update(mask, pred)
        if folder:
            save_label_png(os.path.join(folder, names[index] + '.png'), pred, palette)
    seconds = time.time() - start
    done = len(dataset) - len(excluded)
    if not done:
        print('error: none of the %d samples of %s %s could be read: nothing was %s'
              % (len(dataset), setting['dataset'], setting['split'],
                 'scored' if labeled else 'predicted'), file=sys.stderr)
        return 1
    scales = ('multi-scale %s%s' % (args.scales, '' if args.no_flip else ' + flip')
              if args.multi_scale else 'single scale')
    images = '%d images' % done if not excluded else '%d of %d images' % (done, len(dataset))
    written = 'Wrote %d palette PNGs (%s colours) to %s' % (done, palette, folder)
    if not labeled:
        print('%s on %s %s (%s, %s, %s): no labels, predictions only (%.1f s)'
              % (model_name, setting['dataset'], setting['split'], setting['mode'], images,
                 scales, seconds))
        print(written)
        return _report_excluded(excluded, len(dataset), 'have no prediction')
    summary = metric.summary(dataset.classes)
    result = {'model': model_name, 'checkpoint': args.checkpoint,
              'checkpoint_epoch': ckpt.get('epoch') if ckpt else None,
              'weights': 'checkpoint' if ckpt else (args.params or 'published'),
              'num_images': done, 'num_samples': len(dataset), 'excluded': excluded,
              'multi_scale': args.multi_scale,
              'scales': args.scales if args.multi_scale else [1.0],
              'flip': args.multi_scale and not args.no_flip,
              'combine': args.combine if args.multi_scale else None,
              'absent_class': args.absent_class, 'seconds': round(seconds, 2),
              'predictions': folder}
    result.update(setting)
    result.update(summary)
    result['confusion_matrix'] = metric.state_dict()['confusion_matrix']

    print('%s on %s %s (%s, %s scored, %s): pixAcc %.4f  mIoU %.4f'
          % (model_name, setting['dataset'], setting['split'], setting['mode'], images,
             scales, summary['pixAcc'], summary['mIoU']))
    print_table(summary, dataset.classes)
    if folder:
        print(written)
    output = args.output
    if output is None:
        parent = os.path.dirname(os.path.abspath(args.checkpoint)) if args.checkpoint \
            else os.path.join('runs', 'eval')
        output = os.path.join(parent, 'eval_%s_%s_%s%s.json' % (
            model_name, setting['dataset'], setting['split'], '_ms' if args.multi_scale
            else ''))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_atomically(output, lambda f: json.dump(result, f, indent=1), binary=False)
    print('Wrote %s (%.1f s)' % (output, seconds))
    return _report_excluded(excluded, len(dataset), 'were not scored: the scores above are '
                            'over the other %d' % done)


def _report_excluded(excluded, total, consequence):
    """Exit status 1 after a summary on stderr if samples were left out, else 0."""
    if not excluded:
        return 0
    print('error: %d of %d samples could not be read and %s (each named above; the sample '
          'indices: %s)' % (len(excluded), total, consequence,
                            ', '.join(str(e['index']) for e in excluded[:20])
                            + (' ...' if len(excluded) > 20 else '')), file=sys.stderr)
    return 1


def main(argv=None, description=None, task=None):
    return run(parse_args(argv, description, task))
