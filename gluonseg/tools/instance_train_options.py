"""The Mask R-CNN part of ``gluonseg train``'s command line (``--task instance`` or a Mask
R-CNN model, and ``scripts/instance/train_mask_rcnn.py``): the datasets and backbones, the
model names, the per-dataset presets and the check of the options; the options themselves are
:func:`gluonseg.tools.train_options.add_arguments`'s, the run :mod:`gluonseg.tools.instance_train`.

Plain Python (no MXNet): ``--help`` and the checks answer at once.
"""
import os
import re

from ..model_zoo.registry import UnknownModelError, model_info
from .run_arguments import device_count

__all__ = ['DATASETS', 'NETWORKS', 'MODEL_NAME', 'PRESETS', 'architecture', 'check_arguments',
           'fill_defaults']

#: The datasets Mask R-CNN trains on: the built-in ShapesInstance scenes, and COCO or any
#: COCO-format files (``--train-json`` ...).
DATASETS = ('shapes', 'coco')

#: Backbone name -> (depth, variant) of :func:`gluonseg.model_zoo.rcnn.mask_rcnn`.
NETWORKS = {'resnet18_v1b': (18, 'v1b'), 'resnet50_v1b': (50, 'v1b'),
            'resnet101_v1d': (101, 'v1d')}

#: The names of the architectures trained here: ``_coco`` the published sizes, ``_small`` the
#: narrow model of :data:`gluonseg.tools.instance_train.SMALL_MODEL`.
MODEL_NAME = re.compile(r'^mask_rcnn_(fpn_)?(%s)_(coco|small)$' % '|'.join(NETWORKS))

# Per-dataset defaults of the options left unset. Shapes: a few minutes on 2 CPU cores.
# COCO: GluonCV's published recipe (lr and warmup follow the total batch, see fill_defaults).
PRESETS = {
    'shapes': dict(network='resnet18_v1b', fpn=True, small=True, pretrained_base=False,
                   image_size=128, short=128, max_size=128, train_length=1000,
                   val_length=100, batch_size=4, epochs=2, lr=0.02, lr_warmup=100,
                   lr_decay_epoch=[1.5], freeze_stages=-1, freeze_bn=False, seed=0,
                   flip=True, wd=1e-4),
    'coco': dict(network='resnet50_v1b', fpn=False, small=False, pretrained_base=True,
                 image_size=None, short=800, max_size=1333, train_length=None,
                 val_length=None, batch_size=1, epochs=26, lr=None, lr_warmup=None,
                 lr_decay_epoch=[17, 23], freeze_stages=1, freeze_bn=True, seed=233,
                 flip=True, wd=1e-4),
}


def architecture(name):
    """``(network, fpn, small)`` of a model name of :data:`MODEL_NAME`'s form; ValueError
    naming the form otherwise."""
    match = MODEL_NAME.match(name)
    if match is None:
        raise ValueError('%s is not a Mask R-CNN that gluonseg trains: the names are '
                         'mask_rcnn_[fpn_]NETWORK_coco (published sizes) or ..._small (narrow '
                         'heads), NETWORK one of %s' % (name, ', '.join(NETWORKS)))
    return match.group(2), bool(match.group(1)), match.group(3) == 'small'


def check_arguments(p, args):
    """Fill the unset options (:func:`fill_defaults`); exit through ``p.error`` on a
    combination that cannot train."""
    try:
        fill_defaults(args)
    except ValueError as err:
        p.error(err.args[0])
    return args


def fill_defaults(args):
    """Fill the unset options from the model name and the dataset's preset, and check them."""
    if args.dataset not in DATASETS:
        raise ValueError('Mask R-CNN trains on %s (coco also reads any COCO-format files: '
                         '--train-json, --train-images, --val-json, --val-images), not %s'
                         % (' or '.join(DATASETS), args.dataset))
    if args.model and args.init_from and args.model != args.init_from:
        raise ValueError('--init-from %s brings its own architecture: leave out --model %s'
                         % (args.init_from, args.model))
    if args.init_from:
        try:
            entry = model_info(args.init_from)
        except UnknownModelError as err:
            raise ValueError('--init-from needs a published Mask R-CNN name (e.g. '
                             'mask_rcnn_fpn_resnet50_v1b_coco): %s' % err.args[0]) from None
        if entry.task != 'instance' or not entry.weights:
            raise ValueError('--init-from needs a published Mask R-CNN name (e.g. '
                             'mask_rcnn_fpn_resnet50_v1b_coco), got %s' % args.init_from)
    named = args.model or args.init_from
    if named:
        network, fpn, small = architecture(named)
        for option, value in (('network', network), ('fpn', fpn), ('small', small)):
            given = getattr(args, option)
            if given is not None and given != value:
                raise ValueError('--%s %s contradicts the model %s' % (
                    option, given, named))
            setattr(args, option, value)
    for key, value in PRESETS[args.dataset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    # Images per update, as the trainer counts them: per device x devices x accumulated
    # batches x workers (a dist kvstore's worker count is in DMLC_NUM_WORKER).
    workers = int(os.environ.get('DMLC_NUM_WORKER', '1')) \
        if args.kvstore and args.kvstore.startswith('dist') else 1
    total_batch = args.batch_size * device_count(args) * args.accumulate * workers
    if args.lr is None:
        args.lr = 0.00125 * total_batch
    if args.lr_warmup is None:
        args.lr_warmup = max(8000 // total_batch, 1000)
    args.model = named or 'mask_rcnn_%s%s_%s' % ('fpn_' if args.fpn else '', args.network,
                                                  'small' if args.small else 'coco')
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', 'instance', args.dataset, args.model)
