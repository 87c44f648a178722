"""Training and evaluation engine: schedule, loss, checkpoints, the loop, evaluation.

    >>> from gluonseg.engine import SegmentationTrainer, TrainConfig
    >>> trainer = SegmentationTrainer(net, train_set, val_set, ctx=[mx.cpu()],
    ...                               config=TrainConfig(epochs=4, lr=0.01), save_dir='runs/x')
    >>> trainer.fit()

The names below are imported on first use (PEP 562), so the command line's options can read
:mod:`.choices` and :mod:`.run_dir` without importing MXNet.
"""

from ..utils.lazy import lazy_exports

# module of this package -> the names it defines
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    'lr_scheduler': ('LR_MODES', 'SegmentationLRScheduler'),
    'loss': ('SegmentationLoss', 'count_labelled_pixels', 'pixel_cross_entropy_sum'),
    'checkpoint': ('CHECKPOINT_FORMAT', 'Checkpoint', 'CheckpointError', 'capture_rng_state',
                   'initialize_from', 'load_checkpoint', 'load_weights_from',
                   'restore_rng_state', 'save_checkpoint', 'seed_everything'),
    'data': ('EpochBatchSampler', 'SeededTransformDataset', 'epoch_permutation',
             'get_segmentation_dataset', 'dataset_short_name'),
    'evaluation': ('evaluate_segmentation', 'predict_batch'),
    'base_trainer': ('BaseTrainConfig', 'BaseTrainer', 'NonFiniteError'),
    'choices': ('KVSTORES', 'AMP_DTYPES'),
    'guards': ('FiniteInputs',),
    'run_dir': ('BEST_CHECKPOINT', 'LATEST_CHECKPOINT', 'LOG_FILE', 'METRICS_FILE',
                'RunDirectory', 'RunDirectoryInUse'),
    'mixed_precision': ('init_amp',),
    'run_options': ('TqdmLoggingHandler',),
    'trainer': ('NonFiniteLossError', 'SegmentationTrainer', 'TrainConfig', 'iteration_seed'),
})
