"""Training and evaluation engine: schedule, loss, checkpoints, the loop, evaluation.

    >>> from gluonseg.engine import SegmentationTrainer, TrainConfig
    >>> trainer = SegmentationTrainer(net, train_set, val_set, ctx=[mx.cpu()],
    ...                               config=TrainConfig(epochs=4, lr=0.01), save_dir='runs/x')
    >>> trainer.fit()
"""
from .lr_scheduler import LR_MODES, SegmentationLRScheduler  # noqa: F401
from .loss import SegmentationLoss, count_labelled_pixels, pixel_cross_entropy_sum  # noqa: F401
from .checkpoint import (CHECKPOINT_FORMAT, Checkpoint, CheckpointError,  # noqa: F401
                         capture_rng_state, initialize_from, load_checkpoint, load_weights_from,
                         restore_rng_state, save_checkpoint, seed_everything)
from .data import (EpochBatchSampler, SeededTransformDataset, epoch_permutation,  # noqa: F401
                   get_segmentation_dataset, dataset_short_name)
from .evaluation import evaluate_segmentation, predict_batch  # noqa: F401
from .base_trainer import BaseTrainConfig, BaseTrainer, NonFiniteError  # noqa: F401
from .distributed import KVSTORES  # noqa: F401
from .guards import FiniteInputs  # noqa: F401
from .run_dir import (BEST_CHECKPOINT, LATEST_CHECKPOINT, LOG_FILE, METRICS_FILE,  # noqa: F401
                      RunDirectory, RunDirectoryInUse)
from .mixed_precision import AMP_DTYPES, init_amp  # noqa: F401
from .run_options import TqdmLoggingHandler  # noqa: F401
from .trainer import (NonFiniteLossError, SegmentationTrainer, TrainConfig,  # noqa: F401
                      iteration_seed)

__all__ = ['LR_MODES', 'SegmentationLRScheduler', 'SegmentationLoss', 'count_labelled_pixels',
           'pixel_cross_entropy_sum', 'CHECKPOINT_FORMAT', 'Checkpoint', 'CheckpointError',
           'capture_rng_state', 'initialize_from', 'load_checkpoint', 'load_weights_from',
           'restore_rng_state', 'save_checkpoint', 'seed_everything', 'EpochBatchSampler',
           'SeededTransformDataset', 'epoch_permutation', 'get_segmentation_dataset',
           'dataset_short_name', 'evaluate_segmentation', 'predict_batch', 'KVSTORES',
           'BaseTrainConfig', 'BaseTrainer', 'NonFiniteError', 'FiniteInputs', 'RunDirectory',
           'RunDirectoryInUse', 'AMP_DTYPES', 'init_amp', 'BEST_CHECKPOINT',
           'LATEST_CHECKPOINT', 'LOG_FILE', 'METRICS_FILE', 'NonFiniteLossError',
           'SegmentationTrainer', 'TqdmLoggingHandler', 'TrainConfig', 'iteration_seed']
