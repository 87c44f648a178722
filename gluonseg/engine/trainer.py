"""The training loop: data-parallel SGD with a per-iteration schedule, validation,
checkpoints, logs, and exact resume.

One :class:`SegmentationTrainer` trains any network that returns logits (or ``(out, aux)``
while recording) at the input size. The scripts only parse arguments and build the pieces.

What makes a resumed run continue exactly where the killed one was:

- batch ``b`` of epoch ``e`` is drawn from ``(seed, e, b)`` (:mod:`gluonseg.engine.data`), so the
  resumed run skips the consumed batches of the epoch and sees the same next ones;
- the learning rate is a function of the iteration (:mod:`gluonseg.engine.lr_scheduler`);
- MXNet's generators (dropout) are reseeded from ``(seed, iteration)`` before every iteration,
  because MXNet cannot save their state;
- weights, BatchNorm statistics, momentum, best score and the python/numpy RNG states are in
  the checkpoint (:mod:`gluonseg.engine.checkpoint`).
"""
import dataclasses
import json
import logging
import math
import os
import time

import mxnet as mx
from mxnet import autograd, gluon

from .checkpoint import (atomic_copy, capture_rng_state, load_checkpoint, restore_rng_state,
                         save_checkpoint)
from .data import EpochBatchSampler, SeededTransformDataset
from .evaluation import evaluate_segmentation
from .loss import SegmentationLoss, count_labelled_pixels
from .lr_scheduler import SegmentationLRScheduler

__all__ = ['TrainConfig', 'SegmentationTrainer', 'NonFiniteLossError', 'iteration_seed',
           'set_head_lr_mult', 'disable_bias_bn_weight_decay', 'TqdmLoggingHandler',
           'LATEST_CHECKPOINT', 'BEST_CHECKPOINT', 'METRICS_FILE', 'LOG_FILE']

LATEST_CHECKPOINT = 'latest.ckpt'
BEST_CHECKPOINT = 'best.ckpt'
METRICS_FILE = 'metrics.jsonl'
LOG_FILE = 'train.log'

logger = logging.getLogger('gluonseg.train')


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped before applying that update."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run (all JSON-serialisable; saved in every checkpoint).

    Parameters
    ----------
    epochs : int
    batch_size : int
        Images per device; the total batch is ``batch_size * len(ctx)``.
    lr : float
        Base learning rate of the backbone (heads get ``lr * head_lr_mult``). The loss is the
        mean over the labelled pixels of the whole batch, whatever the number of devices.
    lr_mode : {'poly', 'cosine', 'step'}
    power : float
        Poly exponent.
    warmup_epochs : float
        Linear warmup from 0 (fractions of an epoch allowed).
    step_epochs : tuple of float
        Milestones of the 'step' mode.
    momentum, wd : float
        SGD momentum and weight decay.
    no_wd_bias_bn : bool
        No weight decay on biases and normalization parameters (gamma, beta).
    head_lr_mult : float
        Learning-rate multiplier of ``net.head_blocks()``.
    aux_weight : float
        Weight of the auxiliary output's loss (scales its gradient).
    ignore_label : int
    val_interval : int
        Validate every this many epochs (and always after the last one); 0: never.
    val_batch_size : int
        Total validation batch; 0: the training total.
    checkpoint_interval : int
        Also write ``latest.ckpt`` every this many iterations inside an epoch (0: only at the
        end of each epoch), so a killed run loses at most that much work.
    seed : int
    num_workers : int
        DataLoader worker processes (0: load in the training process).
    hybridize : bool
    progress : bool
        Show a tqdm bar.
    log_interval : int
        Write a line to the log file every this many iterations.
    """

    epochs: int = 10
    batch_size: int = 4
    lr: float = 0.01
    lr_mode: str = 'poly'
    power: float = 0.9
    warmup_epochs: float = 0.0
    step_epochs: tuple = ()
    momentum: float = 0.9
    wd: float = 1e-4
    no_wd_bias_bn: bool = False
    head_lr_mult: float = 10.0
    aux_weight: float = 0.5
    ignore_label: int = 255
    val_interval: int = 1
    val_batch_size: int = 0
    checkpoint_interval: int = 0
    seed: int = 0
    num_workers: int = 0
    hybridize: bool = True
    progress: bool = True
    log_interval: int = 20

    def to_dict(self):
        return dataclasses.asdict(self)


def iteration_seed(seed, iteration):
    """The MXNet seed used before iteration ``iteration`` of a run seeded with ``seed``."""
    return (int(seed) * 1000003 + int(iteration)) % (2 ** 31 - 1)


def set_head_lr_mult(net, mult):
    """Give the parameters of ``net.head_blocks()`` the learning-rate multiplier ``mult``.

    Returns the names of the parameters changed (empty if the network has no
    ``head_blocks``)."""
    if not hasattr(net, 'head_blocks'):
        return []
    names = []
    for block in net.head_blocks():
        for name, param in block.collect_params().items():
            param.lr_mult = mult
            names.append(name)
    return names


def disable_bias_bn_weight_decay(net):
    """Set ``wd_mult = 0`` on biases and normalization gammas/betas; returns their names."""
    names = []
    for name, param in net.collect_params().items():
        if name.endswith(('bias', 'gamma', 'beta')):
            param.wd_mult = 0.0
            names.append(name)
    return names


class TqdmLoggingHandler(logging.Handler):
    """Console logging that does not break tqdm progress bars (for the scripts)."""

    def emit(self, record):
        from tqdm import tqdm
        try:
            tqdm.write(self.format(record))
        except Exception:  # pragma: no cover - never let logging kill training
            self.handleError(record)


class SegmentationTrainer(object):
    """Trains a segmentation network; see the module docstring for what a resume restores.

    Parameters
    ----------
    net : HybridBlock
        Initialized; returns ``out`` or ``(out, aux)`` logits at the input size.
    train_dataset : Dataset
        ``(image, mask)`` samples. With ``train_transform`` they are raw (uint8 HWC), and the
        transform is applied with randomness drawn from ``(seed, epoch, index)``; without it
        they must already be ``(float32 CHW, int HW)``.
    val_dataset : Dataset, optional
        ``(float32 CHW, int HW)`` samples (a dataset with a validation transform).
    ctx : Context or list of Context, default ``mx.cpu()``
        Devices; each batch is split across them.
    config : TrainConfig
    save_dir : str, optional
        Where ``latest.ckpt``, ``best.ckpt``, ``train.log`` and ``metrics.jsonl`` go. Without it
        nothing is written (and nothing can be resumed).
    train_transform : callable, optional
    nclass : int, optional
        Default ``val_dataset.num_class``, ``train_dataset.num_class`` or ``net.nclass``.
    class_names : list of str, optional
        For the per-class IoU of the metrics file.
    model_info : dict, optional
        How to rebuild the network (``{'name': ..., 'kwargs': {...}}``), stored in checkpoints
        for evaluation scripts.
    run_args : dict, optional
        The command-line arguments of the run, stored in checkpoints.
    """

    def __init__(self, net, train_dataset, val_dataset=None, ctx=None, config=None,
                 save_dir=None, train_transform=None, nclass=None, class_names=None,
                 model_info=None, run_args=None):
        self.net = net
        self.config = config = config or TrainConfig()
        self.ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
        self.save_dir = save_dir
        self.train_data = SeededTransformDataset(train_dataset, train_transform, config.seed) \
            if train_transform is not None else train_dataset
        self.val_dataset = val_dataset
        self.nclass = nclass or _first_attr('num_class', val_dataset, train_dataset) \
            or getattr(net, 'nclass', None)
        if not self.nclass:
            raise ValueError('Pass nclass: neither the datasets nor the network tell it')
        self.class_names = list(class_names) if class_names is not None else \
            _first_attr('classes', val_dataset, train_dataset)
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
        self.lr_scheduler = SegmentationLRScheduler.from_epochs(
            config.lr, config.epochs, self.iters_per_epoch, warmup_epochs=config.warmup_epochs,
            step_epochs=config.step_epochs, mode=config.lr_mode, power=config.power)
        self.loss = SegmentationLoss(aux_weight=config.aux_weight,
                                     ignore_label=config.ignore_label)

        net.collect_params().reset_ctx(self.ctx)
        self.head_params = set_head_lr_mult(net, config.head_lr_mult)
        self.no_wd_params = disable_bias_bn_weight_decay(net) if config.no_wd_bias_bn else []
        if config.hybridize:
            net.hybridize(static_alloc=True)
        # update_on_kvstore=False: gradients are summed across devices, then every device
        # applies the same update; the optimizer states then save and load the same way
        # for one device or many.
        self.trainer = gluon.Trainer(
            net.collect_params(), 'sgd',
            {'learning_rate': config.lr, 'momentum': config.momentum, 'wd': config.wd},
            kvstore='device' if len(self.ctx) > 1 else None, update_on_kvstore=False)

        self.iteration = 0
        self.best = {'mIoU': None, 'epoch': None, 'iteration': None}
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
        return {'epoch': self.epoch, 'iteration': self.iteration,
                'iters_per_epoch': self.iters_per_epoch,
                'total_batch_size': self.total_batch_size, 'num_devices': len(self.ctx),
                'train_samples': len(self.train_data),
                'lr_scheduler': self.lr_scheduler.state_dict(), 'best': dict(self.best),
                'last_metrics': self.last_metrics, 'train_seconds': self.train_seconds,
                'epoch_loss': list(self._epoch_loss),
                'rng': capture_rng_state(self.config.seed), 'nclass': self.nclass,
                'classes': self.class_names, 'model': self.model_info,
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
        """Continue from a checkpoint (default ``save_dir/latest.ckpt``).

        Restores weights, optimizer states, iteration, scheduler position, best score and RNG
        states, checks that the run's batch layout and schedule are the same, and drops
        metric records written after the checkpoint. Returns the :class:`Checkpoint`.
        """
        path = path or self.latest_path
        if path is None:
            raise ValueError('resume() needs a checkpoint path or a save_dir')
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
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
        logger.info('Resumed from %s at iteration %d/%d (epoch %d, batch %d; best mIoU %s)',
                    path, self.iteration, self.total_iters, self.epoch + 1,
                    self.iteration - self.epoch * self.iters_per_epoch, _fmt(self.best['mIoU']))
        return ckpt

    def _truncate_metrics_file(self, iteration):
        """Drop metric records of iterations after ``iteration`` (written after the
        checkpoint we resume from, they would be repeated)."""
        path = self._path(METRICS_FILE)
        if not path or not os.path.isfile(path):
            return
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        kept = [line for line in lines if json.loads(line).get('iteration', 0) <= iteration]
        if len(kept) != len(lines):
            tmp = path + '.tmp'
            with open(tmp, 'w') as f:
                f.writelines(kept)
            os.replace(tmp, path)

    # ------------------------------------------------------------------------------ loop
    def fit(self, max_iterations=None):
        """Train until ``config.epochs`` are done (or ``max_iterations`` in all, for a run
        stopped on purpose; its ``latest.ckpt`` then resumes it).

        Returns
        -------
        dict
            ``iteration``, ``epoch``, ``metrics`` (the last validation's summary),
            ``best``, ``latest_checkpoint``, ``best_checkpoint``, ``train_seconds``.

        Raises
        ------
        NonFiniteLossError
            When the loss becomes NaN or infinite; ``latest.ckpt`` is left as it was.
        """
        end = self.total_iters if max_iterations is None else min(self.total_iters,
                                                                   int(max_iterations))
        self._open_log()
        try:
            logger.info('Training %s on %s: %d epochs x %d iterations, batch %d (%d per device '
                        'on %s), lr %g (%s, warmup %g epochs, heads x%g), momentum %g, wd %g, '
                        'aux weight %g', self.model_info.get('name', type(self.net).__name__),
                        self.run_args.get('dataset', type(self.train_data).__name__),
                        self.config.epochs, self.iters_per_epoch, self.total_batch_size,
                        self.config.batch_size, ','.join(str(c) for c in self.ctx),
                        self.config.lr, self.config.lr_mode, self.config.warmup_epochs,
                        self.config.head_lr_mult, self.config.momentum, self.config.wd,
                        self.config.aux_weight)
            while self.iteration < end:
                self._run_epoch(end)
                if self.iteration % self.iters_per_epoch == 0:
                    self._end_epoch()
                else:  # stopped inside an epoch by max_iterations
                    self.save()
            return {'iteration': self.iteration, 'epoch': self.epoch,
                    'metrics': self.last_metrics, 'best': dict(self.best),
                    'latest_checkpoint': self.latest_path,
                    'best_checkpoint': self.best_path if self.best['mIoU'] is not None
                    else None, 'train_seconds': self.train_seconds}
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
                                       num_workers=self.config.num_workers)
        bar = None
        if self.config.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.iters_per_epoch, initial=start_batch, dynamic_ncols=True,
                       desc='epoch %d/%d' % (epoch + 1, self.config.epochs), leave=False)
        tic = time.time()
        images = 0
        try:
            for data, label in loader:
                step_tic = time.time()
                loss, lr = self._train_step(data, label)
                self.train_seconds += time.time() - step_tic
                self._epoch_loss[0] += loss
                self._epoch_loss[1] += 1
                images += data.shape[0]
                speed = images / max(time.time() - tic, 1e-9)
                mean_loss = self._epoch_loss[0] / self._epoch_loss[1]
                if bar is not None:
                    bar.set_postfix(loss='%.4f' % mean_loss, lr='%.2e' % lr,
                                    speed='%.1f img/s' % speed, refresh=False)
                    bar.update(1)
                if self.config.log_interval and self.iteration % self.config.log_interval == 0:
                    logger.debug('epoch %d iteration %d/%d: loss %.4f (epoch mean %.4f), '
                                 'lr %.3e, %.1f img/s', epoch + 1, self.iteration,
                                 self.total_iters, loss, mean_loss, lr, speed)
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
                    epoch + 1, self.config.epochs, self.iteration - epoch * self.iters_per_epoch,
                    self._epoch_loss[0] / max(self._epoch_loss[1], 1),
                    self.lr_scheduler(max(self.iteration - 1, 0)),
                    images / max(time.time() - tic, 1e-9))

    def _train_step(self, data, label):
        """One update; returns (loss, lr). Raises NonFiniteLossError before updating."""
        labelled = count_labelled_pixels(label, self.config.ignore_label)
        datas = gluon.utils.split_and_load(data, self.ctx, even_split=False)
        labels = gluon.utils.split_and_load(label, self.ctx, even_split=False)
        mx.random.seed(iteration_seed(self.config.seed, self.iteration))
        with autograd.record():
            # Every device divides by the labelled pixels of the whole batch: the summed
            # gradients are those of one mean, however the batch is split.
            losses = [self.loss(self.net(x), y, normalizer=labelled)
                      for x, y in zip(datas, labels)]
        autograd.backward(losses)
        loss = sum(float(part.asscalar()) for part in losses)
        lr = self.lr_scheduler(self.iteration)
        if not math.isfinite(loss):
            latest = self.latest_path
            kept = ('the last good checkpoint, %s, is unchanged' % latest
                    if latest and os.path.isfile(latest) else 'no checkpoint had been written')
            raise NonFiniteLossError(
                'Loss is %s at epoch %d, iteration %d (lr %.3e): training stopped before '
                'applying this update; %s. Lower the learning rate, add warmup, or check '
                'the data of this batch for NaN/inf values'
                % (loss, self.epoch + 1, self.iteration, lr, kept))
        self.trainer.set_learning_rate(lr)
        self.trainer.step(1)  # the loss is already a mean: no rescaling by the batch size
        self.iteration += 1
        self.last_loss = loss
        return loss, lr

    def _end_epoch(self):
        done = self.epoch  # completed epochs
        interval = self.config.val_interval
        if self.val_dataset is not None and interval and \
                (done % interval == 0 or done == self.config.epochs):
            self.validate()
        self.save()

    def validate(self):
        """Evaluate on the validation set, record the metrics (file and ``best``); returns
        the metrics summary dict."""
        metric = evaluate_segmentation(
            self.net, self.val_dataset, ctx=self.ctx,
            batch_size=self.config.val_batch_size or self.total_batch_size, nclass=self.nclass,
            ignore_index=self.config.ignore_label, num_workers=self.config.num_workers,
            progress=self.config.progress)
        summary = metric.summary(self.class_names if self.class_names is not None
                                 and len(self.class_names) == self.nclass else None)
        record = {'epoch': self.epoch, 'iteration': self.iteration,
                  'pixAcc': summary['pixAcc'], 'mIoU': summary['mIoU'],
                  'per_class_iou': summary['per_class_iou'],
                  'train_loss': self._epoch_loss[0] / max(self._epoch_loss[1], 1),
                  'lr': self.lr_scheduler(max(self.iteration - 1, 0)),
                  'train_seconds': round(self.train_seconds, 2),
                  'val_seconds': round(metric.seconds, 2)}
        miou = summary['mIoU']
        if miou is not None and (self.best['mIoU'] is None or miou > self.best['mIoU']):
            self.best = {'mIoU': miou, 'epoch': self.epoch, 'iteration': self.iteration}
        record['best_mIoU'] = self.best['mIoU']
        self.last_metrics = record
        if self.save_dir:
            os.makedirs(self.save_dir, exist_ok=True)
            with open(self._path(METRICS_FILE), 'a') as f:
                f.write(json.dumps(record) + '\n')
        logger.info('validation after epoch %d: pixAcc %.4f, mIoU %.4f (best %.4f at epoch '
                    '%d), %.1f s', self.epoch, summary['pixAcc'], miou, self.best['mIoU'],
                    self.best['epoch'], metric.seconds)
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


def _first_attr(name, *objects):
    for obj in objects:
        value = getattr(obj, name, None) if obj is not None else None
        if value:
            return value
    return None


def _fmt(value):
    return 'none' if value is None else '%.4f' % value
