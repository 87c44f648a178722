"""The semantic segmentation training loop: data-parallel SGD with a per-iteration schedule,
validation by mIoU, checkpoints, logs, and exact resume.

One :class:`SegmentationTrainer` trains any network that returns logits (or ``(out, aux)``
while recording) at the input size. The scripts only parse arguments and build the pieces.
The loop, the run's files and what makes a resumed run continue exactly are those of
:class:`~gluonseg.engine.base_trainer.BaseTrainer`; this module adds the pixel loss (the
mean over the labelled pixels of the whole batch) and the mIoU validation.
"""
import dataclasses

from mxnet import autograd, gluon

from ..model_zoo.segbase import set_reproducible_gradients
from .base_trainer import (BaseTrainConfig, BaseTrainer, NonFiniteLossError,
                           disable_bias_bn_weight_decay, iteration_seed, logger)
from .data import SeededTransformDataset
from .evaluation import evaluate_segmentation
from .loss import SegmentationLoss, count_labelled_pixels
from .lr_scheduler import SegmentationLRScheduler

__all__ = ['TrainConfig', 'SegmentationTrainer', 'NonFiniteLossError', 'iteration_seed',
           'set_head_lr_mult', 'disable_bias_bn_weight_decay']


@dataclasses.dataclass
class TrainConfig(BaseTrainConfig):
    """Settings of a segmentation training run (all JSON-serialisable; saved in every
    checkpoint): those of :class:`~gluonseg.engine.base_trainer.BaseTrainConfig` and

    Parameters
    ----------
    batch_size : int
        Images per device; the total batch is ``batch_size * len(ctx)`` (x the number of
        workers with a dist kvstore).
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
    no_wd_bias_bn : bool
        No weight decay on biases and normalization parameters (gamma, beta).
    head_lr_mult : float
        Learning-rate multiplier of ``net.head_blocks()``.
    aux_weight : float
        Weight of the auxiliary output's loss (scales its gradient).
    ignore_label : int
    val_batch_size : int
        Total validation batch; 0: the training total.
    """

    lr_mode: str = 'poly'
    power: float = 0.9
    warmup_epochs: float = 0.0
    step_epochs: tuple = ()
    no_wd_bias_bn: bool = False
    head_lr_mult: float = 10.0
    aux_weight: float = 0.5
    ignore_label: int = 255
    val_batch_size: int = 0


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


class SegmentationTrainer(BaseTrainer):
    """Trains a segmentation network; see :mod:`gluonseg.engine.base_trainer` for what a
    resume restores.

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
        Devices; each batch is split across them (and across the workers, with a dist
        ``config.kvstore``).
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

    BEST_METRIC = 'mIoU'
    PLOT_METRICS = ('mIoU', 'pixAcc')
    TASK = 'semantic'
    NONFINITE_ADVICE = 'Lower the learning rate or add warmup'

    def __init__(self, net, train_dataset, val_dataset=None, ctx=None, config=None,
                 save_dir=None, train_transform=None, nclass=None, class_names=None,
                 model_info=None, run_args=None):
        config = config or TrainConfig()
        # Also without a transform: the sampler's keys are (epoch, index) pairs.
        train_data = SeededTransformDataset(train_dataset, train_transform, config.seed)
        super().__init__(net, train_data, val_dataset, ctx, config, save_dir=save_dir,
                         model_info=model_info, run_args=run_args)
        self.nclass = nclass or _first_attr('num_class', val_dataset, train_dataset) \
            or getattr(net, 'nclass', None)
        if not self.nclass:
            raise ValueError('Pass nclass: neither the datasets nor the network tell it')
        self.class_names = list(class_names) if class_names is not None else \
            _first_attr('classes', val_dataset, train_dataset)
        self.lr_scheduler = SegmentationLRScheduler.from_epochs(
            config.lr, config.epochs, self.iters_per_epoch, warmup_epochs=config.warmup_epochs,
            step_epochs=config.step_epochs, mode=config.lr_mode, power=config.power)
        # A network with several training outputs (DANet, ICNet) says how to weight them.
        self.loss = SegmentationLoss(
            aux_weight=config.aux_weight, ignore_label=config.ignore_label,
            output_weights=getattr(net, 'training_output_weights', None))

        net.collect_params().reset_ctx(self.ctx)
        self.head_params = set_head_lr_mult(net, config.head_lr_mult)
        self.no_wd_params = disable_bias_bn_weight_decay(net) if config.no_wd_bias_bn else []
        # Gradients that repeat bit for bit, so a run (and a resumed one) repeats exactly.
        set_reproducible_gradients(net)
        if config.hybridize:
            net.hybridize(static_alloc=True)
        self.trainer = self._make_trainer(
            net.collect_params(),
            {'learning_rate': config.lr, 'momentum': config.momentum, 'wd': config.wd})

    def _task_meta(self):
        return {'nclass': self.nclass, 'classes': self.class_names}

    def _describe(self):
        c = self.config
        return ('%s on %s: %d epochs x %d iterations, batch %d (%d per device on %s), lr %g '
                '(%s, warmup %g epochs, heads x%g), momentum %g, wd %g, %s'
                % (self.model_info.get('name', type(self.net).__name__),
                   self.run_args.get('dataset', type(self.train_data).__name__), c.epochs,
                   self.iters_per_epoch, self.total_batch_size, c.batch_size,
                   ','.join(str(x) for x in self.ctx), c.lr, c.lr_mode, c.warmup_epochs,
                   c.head_lr_mult, c.momentum, c.wd, self._loss_weights_text()))

    def _loss_weights_text(self):
        if self.loss.output_weights is not None:
            return 'output loss weights %s' % ','.join('%g' % w for w in self.loss.output_weights)
        return 'aux weight %g' % self.config.aux_weight

    def _forward_backward(self, batches):
        labelled = self._allreduce([sum(count_labelled_pixels(label, self.config.ignore_label)
                                        for _, label in batches)])[0]
        losses = []
        for data, label in batches:
            datas = gluon.utils.split_and_load(data, self.ctx, even_split=False)
            labels = gluon.utils.split_and_load(label, self.ctx, even_split=False)
            with autograd.record():
                # Every device divides by the labelled pixels of the whole update (all its
                # batches, all the workers): the summed gradients are those of one mean,
                # however it is split.
                parts = [self.loss(self.net(x), y, normalizer=labelled)
                         for x, y in zip(datas, labels)]
            self._backward(parts)
            losses.extend(parts)
        return sum(float(part.asscalar()) for part in losses), {}

    def validate(self):
        """Evaluate on the validation set, record the metrics (file and ``best``); returns
        the metrics record."""
        metric = evaluate_segmentation(
            self.net, self.val_dataset, ctx=self.ctx,
            batch_size=self.config.val_batch_size or self.total_batch_size, nclass=self.nclass,
            ignore_index=self.config.ignore_label, num_workers=self.config.num_workers,
            progress=self.config.progress)
        summary = metric.summary(self.class_names if self.class_names is not None
                                 and len(self.class_names) == self.nclass else None)
        record = self._record_validation({
            'pixAcc': summary['pixAcc'], 'mIoU': summary['mIoU'],
            'per_class_iou': summary['per_class_iou'], 'val_seconds': round(metric.seconds, 2)})
        logger.info('validation after epoch %d: pixAcc %.4f, mIoU %.4f (best %.4f at epoch '
                    '%d), %.1f s', self.epoch, summary['pixAcc'], summary['mIoU'],
                    self.best['mIoU'], self.best['epoch'], metric.seconds)
        return record


def _first_attr(name, *objects):
    for obj in objects:
        value = getattr(obj, name, None) if obj is not None else None
        if value:
            return value
    return None
