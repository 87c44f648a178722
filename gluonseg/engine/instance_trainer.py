"""The Mask R-CNN training loop: data-parallel SGD with warmup and step decay, per-epoch COCO
validation keeping the best checkpoint, logs, and exact resume.

It shares the engine's pieces with :class:`~gluonseg.engine.SegmentationTrainer`: atomic
checkpoints with optimizer and RNG states (:mod:`.checkpoint`), the per-iteration schedule
(:mod:`.lr_scheduler`), reproducible batches and per-sample augmentation (:mod:`.data`),
the per-iteration MXNet seeding and the log files. What differs is the data (images with a
variable number of objects), the loss (:class:`~gluonseg.model_zoo.rcnn.losses.MaskRCNNLoss`
on the network's training outputs) and the validation (box and mask AP).

What makes a resumed run continue exactly: batch ``b`` of epoch ``e`` and its flips come
from ``(seed, e, b)``; the learning rate is a function of the iteration; NumPy's global
generator (anchor and RoI sampling) and MXNet's are reseeded from ``(seed, iteration)``
before every iteration; weights, momentum and the best score are in the checkpoint.

The loss of each device is a mean over its images' sampled anchors, RoIs and mask pixels;
the gradients are averaged over the devices. With one image per device this is GluonCV's
published recipe (8 devices x 1 image, lr 0.01).
"""
import dataclasses
import json
import logging
import math
import os
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .checkpoint import (atomic_copy, capture_rng_state, load_checkpoint, restore_rng_state,
                         save_checkpoint)
from .data import EpochBatchSampler, SeededTransformDataset
from .instance_evaluation import coco_ground_truth, evaluate_instances
from .lr_scheduler import SegmentationLRScheduler
from .trainer import (BEST_CHECKPOINT, LATEST_CHECKPOINT, LOG_FILE, METRICS_FILE,
                      NonFiniteLossError, disable_bias_bn_weight_decay, iteration_seed)

__all__ = ['InstanceTrainConfig', 'InstanceTrainer', 'BEST_METRIC', 'mask_rcnn_model_info',
           'mask_rcnn_from_checkpoint']

logger = logging.getLogger('gluonseg.train')

BEST_METRIC = 'segm/AP'


@dataclasses.dataclass
class InstanceTrainConfig:
    """Settings of a Mask R-CNN training run (JSON-serialisable; saved in checkpoints).

    Defaults are GluonCV's published COCO recipe for 8 devices x 1 image.

    Parameters
    ----------
    epochs : int
    batch_size : int
        Images per device.
    lr : float
        Base learning rate (published: 0.01 for 8 images per step).
    warmup_iters : int
        Linear warmup from ``lr * warmup_factor`` to ``lr`` over these iterations (capped
        below the run's length).
    warmup_factor : float
    step_epochs : tuple of float
        Multiply the learning rate by ``step_factor`` at these epochs.
    step_factor : float
    momentum, wd : float
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
    val_interval : int
        Validate every this many epochs (and after the last one); 0: never.
    val_limit : int
        Validate on the first ``val_limit`` images only (0: all).
    checkpoint_interval : int
        Also write ``latest.ckpt`` every this many iterations inside an epoch (0: only at the
        end of each epoch).
    seed : int
    num_workers : int
    hybridize : bool
    progress : bool
    log_interval : int
    """

    epochs: int = 26
    batch_size: int = 1
    lr: float = 0.01
    warmup_iters: int = 1000
    warmup_factor: float = 1.0 / 3
    step_epochs: tuple = (17, 23)
    step_factor: float = 0.1
    momentum: float = 0.9
    wd: float = 1e-4
    no_wd_bias: bool = True
    clip_gradient: float = 0.0
    freeze_stages: int = 1
    freeze_bn: bool = True
    short: int = 800
    max_size: int = 1333
    val_score_thresh: float = 0.001
    val_max_dets: int = 100
    val_interval: int = 1
    val_limit: int = 0
    checkpoint_interval: int = 0
    seed: int = 233
    num_workers: int = 0
    hybridize: bool = True
    progress: bool = True
    log_interval: int = 20

    def to_dict(self):
        return dataclasses.asdict(self)


class InstanceTrainer(object):
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

    def __init__(self, net, train_dataset, train_transform, val_dataset=None, ctx=None,
                 config=None, save_dir=None, loss=None, model_info=None, run_args=None):
        from ..data.instance_transforms import instance_batchify
        from ..model_zoo.rcnn.losses import MaskRCNNLoss
        self.net = net
        self.config = config = config or InstanceTrainConfig()
        self.ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
        self.save_dir = save_dir
        self.train_data = SeededTransformDataset(train_dataset, train_transform, config.seed)
        self.batchify = instance_batchify
        self.val_dataset = val_dataset
        self._val_truth = None
        self.loss = loss or MaskRCNNLoss()
        self.model_info = dict(model_info or {})
        self.run_args = dict(run_args or {})
        self.total_batch_size = config.batch_size * len(self.ctx)
        self.iters_per_epoch = len(self.train_data) // self.total_batch_size
        if self.iters_per_epoch < 1:
            raise ValueError('The training set has %d samples, fewer than one batch of %d '
                             '(%d per device x %d devices)'
                             % (len(self.train_data), self.total_batch_size, config.batch_size,
                                len(self.ctx)))
        self.total_iters = config.epochs * self.iters_per_epoch
        warmup = min(int(config.warmup_iters), self.total_iters - 1)
        if warmup < config.warmup_iters:
            logger.warning('Warmup shortened from %d to %d iterations: the run has %d',
                           config.warmup_iters, warmup, self.total_iters)
        self.lr_scheduler = SegmentationLRScheduler(
            config.lr, self.total_iters, mode='step', warmup_iters=warmup,
            warmup_start_lr=config.lr * config.warmup_factor,
            step_iters=[int(round(e * self.iters_per_epoch)) for e in config.step_epochs],
            step_factor=config.step_factor)

        net.collect_params().reset_ctx(self.ctx)
        self.frozen_params = net.freeze_backbone(config.freeze_stages, config.freeze_bn)
        self.no_wd_params = disable_bias_bn_weight_decay(net) if config.no_wd_bias else []
        if config.hybridize:
            net.hybridize()
        optimizer = {'learning_rate': config.lr, 'momentum': config.momentum, 'wd': config.wd}
        if config.clip_gradient > 0:
            optimizer['clip_gradient'] = config.clip_gradient
        trainable = {name: p for name, p in net.collect_params().items()
                     if p.grad_req != 'null'}
        self.trainer = gluon.Trainer(trainable, 'sgd', optimizer,
                                     kvstore='device' if len(self.ctx) > 1 else None,
                                     update_on_kvstore=False)

        self.iteration = 0
        self.best = {BEST_METRIC: None, 'epoch': None, 'iteration': None}
        self.last_metrics = None
        self.last_loss = None
        self.train_seconds = 0.0
        self._epoch_loss = [0.0, 0]
        self._log_handler = None

    # ------------------------------------------------------------------------------ paths
    def _path(self, name):
        return os.path.join(self.save_dir, name) if self.save_dir else None

    @property
    def latest_path(self):
        return self._path(LATEST_CHECKPOINT)

    @property
    def best_path(self):
        return self._path(BEST_CHECKPOINT)

    @property
    def epoch(self):
        """The epoch in progress (0-based), i.e. completed epochs at an epoch boundary."""
        return self.iteration // self.iters_per_epoch

    # ------------------------------------------------------------------------- checkpoints
    def _meta(self):
        return {'task': 'instance', 'epoch': self.epoch, 'iteration': self.iteration,
                'iters_per_epoch': self.iters_per_epoch,
                'total_batch_size': self.total_batch_size, 'num_devices': len(self.ctx),
                'train_samples': len(self.train_data),
                'lr_scheduler': self.lr_scheduler.state_dict(), 'best': dict(self.best),
                'last_metrics': self.last_metrics, 'train_seconds': self.train_seconds,
                'epoch_loss': list(self._epoch_loss),
                'rng': capture_rng_state(self.config.seed),
                'classes': list(self.net.classes), 'model': self.model_info,
                'config': self.config.to_dict(), 'args': self.run_args}

    def save(self):
        """Write ``latest.ckpt`` (and ``best.ckpt`` when the last validation is the best)."""
        if not self.save_dir:
            return None
        path = save_checkpoint(self.latest_path, self.net, self.trainer, self._meta())
        if self.last_metrics is not None and self.best['iteration'] == self.iteration:
            atomic_copy(path, self.best_path)
        return path

    def resume(self, path=None):
        """Continue from a checkpoint (default ``save_dir/latest.ckpt``): weights,
        optimizer states, iteration, schedule position, best score, RNG states. The batch
        layout must be the same. Returns the :class:`~.checkpoint.Checkpoint`."""
        path = path or self.latest_path
        if path is None:
            raise ValueError('resume() needs a checkpoint path or a save_dir')
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        if meta.get('task') != 'instance':
            raise ValueError('%s is not a Mask R-CNN training checkpoint (task %r)'
                             % (path, meta.get('task')))
        if meta['iters_per_epoch'] != self.iters_per_epoch or \
                meta['total_batch_size'] != self.total_batch_size:
            raise ValueError(
                'Cannot resume %s: it was written with %d iterations per epoch of %d images '
                '(%d training samples), this run has %d of %d (%d samples). Use the same '
                'dataset and total batch size (per-device batch x devices)'
                % (path, meta['iters_per_epoch'], meta['total_batch_size'],
                   meta['train_samples'], self.iters_per_epoch, self.total_batch_size,
                   len(self.train_data)))
        self.lr_scheduler.load_state_dict(meta['lr_scheduler'])
        ckpt.load_into(self.net, ctx=self.ctx)
        ckpt.restore_trainer(self.trainer)
        self.iteration = int(meta['iteration'])
        self.best = dict(meta['best'])
        self.last_metrics = meta.get('last_metrics')
        self.train_seconds = float(meta.get('train_seconds', 0.0))
        self._epoch_loss = list(meta.get('epoch_loss', [0.0, 0]))
        restore_rng_state(meta['rng'])
        self._truncate_metrics_file(self.iteration)
        logger.info('Resumed from %s at epoch %d, iteration %d/%d (best %s %s)', path,
                    self.epoch, self.iteration, self.total_iters, BEST_METRIC,
                    _fmt(self.best[BEST_METRIC]))
        return ckpt

    def _truncate_metrics_file(self, iteration):
        """Drop records of iterations after ``iteration`` (they will be written again)."""
        path = self._path(METRICS_FILE)
        if not path or not os.path.isfile(path):
            return
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        kept = [line for line in lines if json.loads(line).get('iteration', 0) <= iteration]
        if len(kept) != len(lines):
            with open(path + '.tmp', 'w') as f:
                f.writelines(kept)
            os.replace(path + '.tmp', path)

    # ------------------------------------------------------------------------------ loop
    def fit(self, max_iterations=None):
        """Train until ``config.epochs`` are done (or ``max_iterations`` in all; the
        ``latest.ckpt`` of a run stopped that way resumes it).

        Returns
        -------
        dict
            ``iteration``, ``epoch``, ``metrics`` (last validation), ``best``,
            ``latest_checkpoint``, ``best_checkpoint``, ``train_seconds``, ``last_loss``.

        Raises
        ------
        NonFiniteLossError
            When the loss becomes NaN or infinite; ``latest.ckpt`` is left as it was.
        """
        end = self.total_iters if max_iterations is None else min(self.total_iters,
                                                                   int(max_iterations))
        self._open_log()
        try:
            c = self.config
            logger.info('Training %s: %d epochs x %d iterations, batch %d (%d per device on '
                        '%s), lr %g (warmup %d from x%.3g, x%g at epochs %s), momentum %g, '
                        'wd %g, %d parameters frozen',
                        self.model_info.get('name') or type(self.net).__name__,
                        c.epochs, self.iters_per_epoch, self.total_batch_size, c.batch_size,
                        ','.join(str(x) for x in self.ctx), c.lr,
                        self.lr_scheduler.warmup_steps, c.warmup_factor, c.step_factor,
                        list(c.step_epochs), c.momentum, c.wd, len(self.frozen_params))
            while self.iteration < end:
                self._run_epoch(end)
                if self.iteration % self.iters_per_epoch == 0:
                    self._end_epoch()
                else:  # stopped inside an epoch by max_iterations
                    self.save()
            return {'iteration': self.iteration, 'epoch': self.epoch,
                    'metrics': self.last_metrics, 'best': dict(self.best),
                    'latest_checkpoint': self.latest_path,
                    'best_checkpoint': self.best_path if self.best[BEST_METRIC] is not None
                    else None, 'train_seconds': self.train_seconds,
                    'last_loss': self.last_loss}
        except NonFiniteLossError as err:
            logger.error('%s', err)
            raise
        finally:
            self._close_log()

    def _run_epoch(self, end):
        epoch = self.epoch
        start_batch = self.iteration - epoch * self.iters_per_epoch
        if start_batch == 0:
            self._epoch_loss = [0.0, 0]
        sampler = EpochBatchSampler(len(self.train_data), self.total_batch_size,
                                    self.config.seed, epoch, start_batch)
        loader = gluon.data.DataLoader(self.train_data, batch_sampler=sampler,
                                       batchify_fn=self.batchify,
                                       num_workers=self.config.num_workers)
        bar = None
        if self.config.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.iters_per_epoch, initial=start_batch, dynamic_ncols=True,
                       desc='epoch %d/%d' % (epoch + 1, self.config.epochs), leave=False)
        tic = time.time()
        images = 0
        try:
            for batch in loader:
                step_tic = time.time()
                loss, terms, lr = self._train_step(batch)
                self.train_seconds += time.time() - step_tic
                self._epoch_loss[0] += loss
                self._epoch_loss[1] += 1
                images += batch[0].shape[0]
                speed = images / max(time.time() - tic, 1e-9)
                mean_loss = self._epoch_loss[0] / self._epoch_loss[1]
                if bar is not None:
                    bar.set_postfix(loss='%.3f' % mean_loss, lr='%.2e' % lr,
                                    speed='%.1f img/s' % speed, refresh=False)
                    bar.update(1)
                if self.config.log_interval and self.iteration % self.config.log_interval == 0:
                    logger.debug('epoch %d iteration %d/%d: loss %.4f (%s), epoch mean %.4f, '
                                 'lr %.3e, %.1f img/s', epoch + 1, self.iteration,
                                 self.total_iters, loss,
                                 ', '.join('%s %.4f' % kv for kv in terms.items()),
                                 mean_loss, lr, speed)
                at_epoch_end = self.iteration % self.iters_per_epoch == 0
                if self.config.checkpoint_interval and not at_epoch_end and \
                        self.iteration % self.config.checkpoint_interval == 0 and \
                        self.iteration < end:
                    self.save()
                if self.iteration >= end:
                    break
        finally:
            if bar is not None:
                bar.close()
        logger.info('epoch %d/%d: %d iterations, mean loss %.4f, lr %.3e, %.1f img/s',
                    epoch + 1, self.config.epochs,
                    self.iteration - epoch * self.iters_per_epoch,
                    self._epoch_loss[0] / max(self._epoch_loss[1], 1),
                    self.lr_scheduler(max(self.iteration - 1, 0)),
                    images / max(time.time() - tic, 1e-9))

    def _train_step(self, batch):
        """One update; returns (loss, {term: value}, lr). Raises NonFiniteLossError before
        updating."""
        parts = [gluon.utils.split_and_load(array, self.ctx, even_split=False)
                 for array in batch]
        seed = iteration_seed(self.config.seed, self.iteration)
        mx.random.seed(seed)
        np.random.seed(seed)  # anchor and RoI sampling
        with autograd.record():
            totals, terms = [], []
            for x, boxes, ids, masks in zip(*parts):
                total, device_terms = self.loss(self.net(x, boxes, ids, masks))
                totals.append(total)
                terms.append(device_terms)
        autograd.backward(totals)
        devices = len(totals)
        loss = sum(float(t.asscalar()) for t in totals) / devices
        summary = {name: sum(float(t[name].asscalar()) for t in terms) / devices
                   for name in terms[0]}
        lr = self.lr_scheduler(self.iteration)
        if not math.isfinite(loss):
            latest = self.latest_path
            kept = ('the last good checkpoint, %s, is unchanged' % latest
                    if latest and os.path.isfile(latest) else 'no checkpoint had been written')
            raise NonFiniteLossError(
                'Loss is %s (%s) at epoch %d, iteration %d (lr %.3e): training stopped '
                'before applying this update; %s. Lower the learning rate, lengthen the '
                'warmup or clip gradients' % (loss, summary, self.epoch + 1, self.iteration,
                                              lr, kept))
        self.trainer.set_learning_rate(lr)
        self.trainer.step(devices)  # each device's loss is a mean: average the devices
        self.iteration += 1
        self.last_loss = loss
        return loss, summary, lr

    def _end_epoch(self):
        done = self.epoch
        interval = self.config.val_interval
        if self.val_dataset is not None and interval and \
                (done % interval == 0 or done == self.config.epochs):
            self.validate()
        self.save()

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
        record = {'epoch': self.epoch, 'iteration': self.iteration}
        record.update({k: (None if isinstance(v, float) and math.isnan(v) else v)
                       for k, v in values.items()})
        record['train_loss'] = self._epoch_loss[0] / max(self._epoch_loss[1], 1)
        record['lr'] = self.lr_scheduler(max(self.iteration - 1, 0))
        record['train_seconds'] = round(self.train_seconds, 2)
        score = record.get(BEST_METRIC)
        if score is not None and (self.best[BEST_METRIC] is None or
                                  score > self.best[BEST_METRIC]):
            self.best = {BEST_METRIC: score, 'epoch': self.epoch, 'iteration': self.iteration}
        record['best_' + BEST_METRIC] = self.best[BEST_METRIC]
        self.last_metrics = record
        if self.save_dir:
            os.makedirs(self.save_dir, exist_ok=True)
            with open(self._path(METRICS_FILE), 'a') as f:
                f.write(json.dumps(record) + '\n')
        logger.info('validation after epoch %d: bbox AP %s, mask AP %s (best %s at epoch %s), '
                    '%.1f s', self.epoch, _fmt(record.get('bbox/AP')), _fmt(score),
                    _fmt(self.best[BEST_METRIC]), self.best['epoch'], values['seconds'])
        return record

    # ---------------------------------------------------------------------------- logging
    def _open_log(self):
        if self.save_dir and self._log_handler is None:
            os.makedirs(self.save_dir, exist_ok=True)
            handler = logging.FileHandler(self._path(LOG_FILE))
            handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
            handler.setLevel(logging.DEBUG)
            logger.addHandler(handler)
            if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
            self._log_handler = handler

    def _close_log(self):
        if self._log_handler is not None:
            logger.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


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
    from ..model_zoo.rcnn.mask_rcnn import mask_rcnn
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


def _fmt(value):
    return 'none' if value is None else '%.4f' % value
