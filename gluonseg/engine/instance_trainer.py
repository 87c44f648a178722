"""The Mask R-CNN training loop: data-parallel SGD with warmup and step decay, per-epoch COCO
validation keeping the best checkpoint, logs, and exact resume.

The loop, the run's files and the exact resume are those of
:class:`~gluonseg.engine.base_trainer.BaseTrainer` (shared with
:class:`~gluonseg.engine.SegmentationTrainer`). What differs is the data (images with a
variable number of objects), the loss (:class:`~gluonseg.model_zoo.rcnn.losses.MaskRCNNLoss`
on the network's training outputs), the frozen backbone parts and the validation (box and
mask AP).

The loss of each device is a mean over its images' sampled anchors, RoIs and mask pixels;
the gradients are averaged over the devices. With one image per device this is GluonCV's
published recipe (8 devices x 1 image, lr 0.01).
"""
import dataclasses
import math

import mxnet as mx
from mxnet import autograd, gluon

from ..data.instance_transforms import instance_batchify
from ..model_zoo.rcnn.losses import MaskRCNNLoss
from ..model_zoo.rcnn.mask_rcnn import mask_rcnn
from .base_trainer import (BaseTrainConfig, BaseTrainer, _fmt, disable_bias_bn_weight_decay,
                           logger)
from .checkpoint import load_checkpoint
from .data import SeededTransformDataset
from .instance_evaluation import coco_ground_truth, evaluate_instances
from .lr_scheduler import SegmentationLRScheduler
from .mixed_precision import HYBRID_AMP_CPU_PROBLEM

__all__ = ['InstanceTrainConfig', 'InstanceTrainer', 'BEST_METRIC', 'mask_rcnn_model_info',
           'mask_rcnn_from_checkpoint']

BEST_METRIC = 'segm/AP'


@dataclasses.dataclass
class InstanceTrainConfig(BaseTrainConfig):
    """Settings of a Mask R-CNN training run (JSON-serialisable; saved in checkpoints): those
    of :class:`~gluonseg.engine.base_trainer.BaseTrainConfig` and the ones below.

    Defaults are GluonCV's published COCO recipe for 8 devices x 1 image (26 epochs, 1 image
    per device, lr 0.01 for 8 images per step, seed 233).

    Parameters
    ----------
    warmup_iters : int
        Linear warmup from ``lr * warmup_factor`` to ``lr`` over these iterations (capped
        below the run's length).
    warmup_factor : float
    step_epochs : tuple of float
        Multiply the learning rate by ``step_factor`` at these epochs.
    step_factor : float
    no_wd_bias : bool
        No weight decay on biases (as published) nor on BatchNorm gamma/beta (frozen in the
        published recipe anyway).
    clip_gradient : float
        Clip every gradient element to ``[-c, c]``; 0 turns it off.
    freeze_stages : int
        Backbone stages frozen with the stem (1 as published; -1: train the whole backbone).
    freeze_bn : bool
        Freeze the backbone's BatchNorm parameters (as published).
    short, max_size : int
        Validation resize.
    val_score_thresh, val_max_dets : float, int
        Detections kept per validation image.
    val_limit : int
        Validate on the first ``val_limit`` images only (0: all).
    """

    epochs: int = 26
    batch_size: int = 1
    seed: int = 233
    warmup_iters: int = 1000
    warmup_factor: float = 1.0 / 3
    step_epochs: tuple = (17, 23)
    step_factor: float = 0.1
    no_wd_bias: bool = True
    clip_gradient: float = 0.0
    freeze_stages: int = 1
    freeze_bn: bool = True
    short: int = 800
    max_size: int = 1333
    val_score_thresh: float = 0.001
    val_max_dets: int = 100
    val_limit: int = 0


class InstanceTrainer(BaseTrainer):
    """Trains a :class:`~gluonseg.model_zoo.rcnn.MaskRCNN`.

    Parameters
    ----------
    net : MaskRCNN
        Initialized.
    train_dataset : Dataset
        Raw ``(image, boxes, class_ids, masks)`` samples.
    train_transform : callable
        E.g. :class:`gluonseg.data.instance_transforms.InstanceTrainTransform`; its ``rng``
        is seeded per sample.
    val_dataset : Dataset, optional
        Raw samples (COCOInstance or any instance dataset), scored with COCO AP.
    ctx : Context or list of Context
    config : InstanceTrainConfig
    save_dir : str, optional
        ``latest.ckpt``, ``best.ckpt`` (best ``segm/AP``), ``train.log`` and
        ``metrics.jsonl`` go there.
    loss : MaskRCNNLoss, optional
    model_info : dict, optional
        How to rebuild the network, stored in checkpoints (``{'name': ..., 'kwargs': ...}``
        or ``{'builder': 'mask_rcnn', 'kwargs': ...}``).
    run_args : dict, optional
    """

    BEST_METRIC = BEST_METRIC
    PLOT_METRICS = ('segm/AP', 'bbox/AP')
    TASK = 'instance'
    NONFINITE_ADVICE = 'Lower the learning rate, lengthen the warmup or clip gradients'
    DEVICE_MEAN_LOSS = True

    def __init__(self, net, train_dataset, train_transform, val_dataset=None, ctx=None,
                 config=None, save_dir=None, loss=None, model_info=None, run_args=None):
        config = config or InstanceTrainConfig()
        super().__init__(net, SeededTransformDataset(train_dataset, train_transform, config.seed),
                         val_dataset, ctx, config, save_dir=save_dir, model_info=model_info,
                         run_args=run_args, batchify_fn=instance_batchify)
        self._val_truth = None
        self.loss = loss or MaskRCNNLoss()
        warmup = min(int(config.warmup_iters), self.total_iters - 1)
        if warmup < config.warmup_iters:
            self.setup_warnings.append('Warmup shortened from %d to %d iterations: the run has %d'
                                       % (config.warmup_iters, warmup, self.total_iters))
        self.lr_scheduler = SegmentationLRScheduler(
            config.lr, self.total_iters, mode='step', warmup_iters=warmup,
            warmup_start_lr=config.lr * config.warmup_factor,
            step_iters=[int(round(e * self.iters_per_epoch)) for e in config.step_epochs],
            step_factor=config.step_factor)

        net.collect_params().reset_ctx(self.ctx)
        self.frozen_params = net.freeze_backbone(config.freeze_stages, config.freeze_bn)
        self.no_wd_params = disable_bias_bn_weight_decay(net) if config.no_wd_bias else []
        if config.hybridize and config.amp and any(c.device_type == 'cpu' for c in self.ctx):
            self.setup_warnings.append('Training imperatively (not hybridized) with AMP on the '
                                       'CPU: %s' % HYBRID_AMP_CPU_PROBLEM)
        elif config.hybridize:
            net.hybridize()
        optimizer = {'learning_rate': config.lr, 'momentum': config.momentum, 'wd': config.wd}
        if config.clip_gradient > 0:
            optimizer['clip_gradient'] = config.clip_gradient
        trainable = {name: p for name, p in net.collect_params().items()
                     if p.grad_req != 'null'}
        self.trainer = self._make_trainer(trainable, optimizer)

    def _task_meta(self):
        return {'classes': list(self.net.classes)}

    def _describe(self):
        c = self.config
        return ('%s: %d epochs x %d iterations, batch %d (%d per device on %s), lr %g (warmup '
                '%d from x%.3g, x%g at epochs %s), momentum %g, wd %g, %d parameters frozen'
                % (self.model_info.get('name') or type(self.net).__name__, c.epochs,
                   self.iters_per_epoch, self.total_batch_size, c.batch_size,
                   ','.join(str(x) for x in self.ctx), c.lr, self.lr_scheduler.warmup_steps,
                   c.warmup_factor, c.step_factor, list(c.step_epochs), c.momentum, c.wd,
                   len(self.frozen_params)))

    def _forward_backward(self, batches):
        totals, terms = [], []
        for batch in batches:
            parts = [gluon.utils.split_and_load(array, self.ctx, even_split=False)
                     for array in batch]
            with autograd.record():
                batch_totals = []
                for x, boxes, ids, masks in zip(*parts):
                    total, device_terms = self.loss(self.net(x, boxes, ids, masks))
                    batch_totals.append(total)
                    terms.append(device_terms)
            self._backward(batch_totals)
            totals.extend(batch_totals)
        return (sum(float(t.asscalar()) for t in totals),
                {name: sum(float(t[name].asscalar()) for t in terms) for name in terms[0]})

    def validate(self):
        """COCO box and mask AP on the validation set; records the metrics (file and
        ``best``) and returns them."""
        c = self.config
        if self._val_truth is None:
            self._val_truth = coco_ground_truth(self.val_dataset)
        values, _ = evaluate_instances(self.net, self.val_dataset, short=c.short,
                                       max_size=c.max_size, score_thresh=c.val_score_thresh,
                                       max_dets=c.val_max_dets, limit=c.val_limit or None,
                                       progress=c.progress, ground_truth=self._val_truth)
        record = self._record_validation(
            {k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in values.items()})
        logger.info('validation after epoch %d: bbox AP %s, mask AP %s (best %s at epoch %s), '
                    '%.1f s', self.epoch, _fmt(record.get('bbox/AP')),
                    _fmt(record.get(BEST_METRIC)), _fmt(self.best[BEST_METRIC]),
                    self.best['epoch'], values['seconds'])
        return record


def mask_rcnn_model_info(name=None, **builder_kwargs):
    """The ``model_info`` of a checkpoint from which :func:`mask_rcnn_from_checkpoint`
    rebuilds the network: the keyword arguments of
    :func:`gluonseg.model_zoo.rcnn.mask_rcnn` (JSON-serialisable), and a name for logs (the
    zoo name it started from, if any)."""
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in builder_kwargs.items()
              if k not in ('pretrained_base', 'root')}
    return {'builder': 'mask_rcnn', 'name': name, 'kwargs': kwargs}


def mask_rcnn_from_checkpoint(path, ctx=mx.cpu(), **overrides):
    """Rebuild the Mask R-CNN a training checkpoint holds and load its weights (strictly).

    Parameters
    ----------
    path : str
        A checkpoint written by :class:`InstanceTrainer`.
    ctx : Context or list of Context
    **overrides
        Replace builder arguments that do not change the weights (e.g.
        ``rpn_test_post_nms``).

    Returns
    -------
    (MaskRCNN, Checkpoint)
    """
    ckpt = load_checkpoint(path)
    model = ckpt.meta.get('model') or {}
    if model.get('builder') != 'mask_rcnn':
        raise ValueError('%s does not describe a Mask R-CNN (model info %r); it was not '
                         'written by InstanceTrainer' % (path, model))
    kwargs = dict(model['kwargs'])
    kwargs.update(overrides)
    net = mask_rcnn(pretrained_base=False, **kwargs)
    ckpt.load_into(net, ctx=ctx)
    return net, ckpt

