# %% [markdown]
# # 2. Train a semantic segmentation model, watch it learn, evaluate it
#
# gluonseg ships a synthetic dataset, **Shapes**: textured, noisy backgrounds with circles,
# squares and triangles of random colours, generated on the fly (no download). It is small
# enough to train a real model on a laptop CPU, which makes it the place to learn the
# training loop before spending GPU-days on VOC.
#
# This notebook trains `fcn_resnet18_shapes` (FCN head on a dilated ResNet-18) from random
# weights with gluonseg's training engine, plots the loss and the validation mIoU, evaluates
# the result and saves it. The settings are tiny so that it runs in a minute or two on two CPU
# cores; the last section shows the same lines for Pascal VOC-Aug, the real thing.

# %%
import os

# Small on purpose (the test suite runs this notebook). Longer runs reach a much higher mIoU:
# scripts/segmentation/train.py's Shapes preset (6 epochs of 2000 scenes) is about 0.8.
EPOCHS = int(os.environ.get('GLUONSEG_TUTORIAL_EPOCHS', 3))
TRAIN_SCENES = int(os.environ.get('GLUONSEG_TUTORIAL_TRAIN_SCENES', 320))
VAL_SCENES = int(os.environ.get('GLUONSEG_TUTORIAL_VAL_SCENES', 64))
SIZE = 64          # image side in pixels
BATCH_SIZE = 8     # images per device
LR = 0.02

# %% [markdown]
# ## The data
#
# `ShapesSegmentation(split, length, size)` returns `(image, mask)` pairs: a uint8 RGB image
# and an int32 mask with 0 = background, 1 = circle, 2 = square, 3 = triangle. Each split is
# its own deterministic stream of scenes.

# %%
import matplotlib.pyplot as plt
import numpy as np
from gluonseg.data import ShapesSegmentation
from gluonseg.utils import viz

train_raw = ShapesSegmentation('train', length=TRAIN_SCENES, size=SIZE)
print(train_raw, 'classes:', train_raw.classes)

fig, axes = plt.subplots(1, 6, figsize=(15, 2.8))
for ax, i in zip(axes, range(6)):
    image, mask = train_raw[i]
    ax.imshow(viz.overlay(image, mask, train_raw.num_class, alpha=0.45, legend=False))
    ax.set_title(', '.join(train_raw.classes[c] for c in np.unique(mask) if c), fontsize=9)
    ax.axis('off')
plt.show()

# %% [markdown]
# Training samples go through `SegmentationTrainTransform` (random scale, crop, flip,
# normalization); validation samples through `SegmentationValTransform` (short side to the
# crop size, centre crop, normalization). The engine draws each sample's augmentation from
# `(seed, epoch, index)`, so a resumed run sees exactly the batches the killed one would have.

# %%
from gluonseg.data import SegmentationTrainTransform, SegmentationValTransform

train_transform = SegmentationTrainTransform(base_size=SIZE, crop_size=SIZE,
                                             scale_range=(1.0, 1.0))
val_set = ShapesSegmentation('val', length=VAL_SCENES, size=SIZE,
                             transform=SegmentationValTransform(SIZE))

# %% [markdown]
# ## The model and the run
#
# `pretrained_base=False` starts from random weights (on real data you start from the
# ImageNet backbone: `pretrained_base=True`, the default). Models are built with an auxiliary
# FCN head on stage 3, as GluonCV trained them; its loss is added with weight `aux_weight`.
#
# `TrainConfig` holds every setting: SGD with momentum, a per-iteration poly schedule
# `lr * (1 - t/T)^0.9`, heads at 10x the backbone's learning rate, weight decay 1e-4.
# `SegmentationTrainer` validates after each epoch and writes `latest.ckpt`, `best.ckpt`,
# `train.log` and `metrics.jsonl` to `save_dir`.

# %%
import mxnet as mx
import gluonseg
from gluonseg.engine import SegmentationTrainer, TrainConfig

mx.random.seed(0)
net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False)
config = TrainConfig(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=0, log_interval=5,
                     progress=False)
trainer = SegmentationTrainer(net, train_raw, val_set, ctx=[mx.cpu()], config=config,
                              save_dir='runs/shapes_tutorial', train_transform=train_transform)
print('%d epochs x %d iterations of %d images'
      % (EPOCHS, trainer.iters_per_epoch, trainer.total_batch_size))

# %%
result = trainer.fit()
print('Shapes val mIoU: %.4f (pixAcc %.4f) after %d iterations, %.0f s of training'
      % (result['metrics']['mIoU'], result['metrics']['pixAcc'], result['iteration'],
         result['train_seconds']))

# %% [markdown]
# ## Watch it learn
#
# `metrics.jsonl` has one line per validation (epoch, mIoU, per-class IoU, mean training
# loss, learning rate); `train.log` has the loss every `log_interval` iterations.

# %%
import json
import re

with open('runs/shapes_tutorial/metrics.jsonl') as f:
    records = [json.loads(line) for line in f]
steps, losses = [], []
with open('runs/shapes_tutorial/train.log') as f:
    for line in f:
        match = re.search(r'iteration (\d+)/\d+: loss ([\d.]+)', line)
        if match:
            steps.append(int(match.group(1)))
            losses.append(float(match.group(2)))

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.5))
ax1.plot(steps, losses, '.-')
ax1.set(xlabel='iteration', ylabel='training loss', title='loss')
ax2.plot([r['epoch'] for r in records], [r['mIoU'] for r in records], 'o-', label='mIoU')
ax2.plot([r['epoch'] for r in records], [r['pixAcc'] for r in records], 's--', label='pixAcc')
ax2.set(xlabel='epoch', ylim=(0, 1), title='validation')
ax2.legend()
iters = np.arange(trainer.total_iters)
ax3.plot(iters, [trainer.lr_scheduler(int(i)) for i in iters])
ax3.set(xlabel='iteration', ylabel='backbone lr', title='poly schedule')
plt.show()
for r in records:
    print('epoch %d: train loss %.3f, val mIoU %.4f' % (r['epoch'], r['train_loss'], r['mIoU']))

# %% [markdown]
# ## Evaluate
#
# `evaluate_segmentation` runs the network over a dataset and accumulates a confusion matrix
# in a `SegmentationMetric`: pixel accuracy, mIoU and per-class IoU. It is what the trainer
# ran after each epoch; here on the best checkpoint.

# %%
from gluonseg.engine import evaluate_segmentation, load_checkpoint

best = load_checkpoint('runs/shapes_tutorial/best.ckpt')
best.load_into(net)
metric = evaluate_segmentation(net, val_set, batch_size=16)
print('best checkpoint (epoch %d): pixAcc %.4f, mIoU %.4f'
      % (best['epoch'], *metric.get()))
for name, iou in zip(val_set.classes, metric.per_class_iou()):
    print('  %-10s IoU %.4f' % (name, iou))

# %%
fig, axes = plt.subplots(3, 5, figsize=(13, 8))
plain = ShapesSegmentation('val', length=VAL_SCENES, size=SIZE)
for col in range(5):
    image, truth = plain[col]
    pred = net.predict(image)
    for row, (picture, title) in enumerate([(image, 'image'), (truth, 'truth'),
                                            (pred, 'prediction')]):
        shown = picture if row == 0 else viz.colorize_mask(picture, 4).convert('RGB')
        axes[row, col].imshow(shown)
        axes[row, col].set_title(title, fontsize=9)
        axes[row, col].axis('off')
plt.show()

# %% [markdown]
# ## Keep the model
#
# A checkpoint holds the weights, the optimizer state and the run's settings (to resume:
# `trainer.resume('runs/shapes_tutorial/latest.ckpt')` before `fit()`). For inference only the
# weights are needed; registered under the model's name, `pretrained=True` loads them like a
# published file (the other tutorials' offline runs use a file like this one).

# %%
from gluonseg.model_zoo.registry import register_weights

net.save_parameters('fcn_resnet18_shapes_tutorial.params')
register_weights('fcn_resnet18_shapes', path='fcn_resnet18_shapes_tutorial.params')
again = gluonseg.get_model('fcn_resnet18_shapes', pretrained=True)
x = val_set[0][0][None]
print('reloaded model agrees:', bool((again.predict(mx.nd.array(x)) ==
                                       net.predict(mx.nd.array(x))).min().asscalar()))

# %% [markdown]
# ## The same lines for Pascal VOC-Aug
#
# Nothing above is specific to Shapes. For VOC-Aug (SBD's 10,582 `train_aug` images, see
# [datasets.md](../datasets.md)), prepare the data once
# (`python scripts/datasets/prepare_voc.py` and `python scripts/datasets/prepare_sbd.py`), start
# from the ImageNet backbone, and use GluonCV's sizes (random scale of base 520, crops of
# 480). The cell below is not executed here (it needs the data and, in practice, GPUs): set
# `RUN_VOC = True` on a machine that has both.

# %%
RUN_VOC = False

if RUN_VOC:
    from gluonseg.data import VOCAugSegmentation, VOCSegmentation

    gpus = [mx.gpu(i) for i in range(mx.context.num_gpus())] or [mx.cpu()]
    voc_train = VOCAugSegmentation(split='train_aug')
    voc_val = VOCSegmentation(split='val', transform=SegmentationValTransform(480))
    voc_net = gluonseg.get_model('fcn_resnet101_voc', pretrained_base=True, ctx=gpus)
    voc_trainer = SegmentationTrainer(
        voc_net, voc_train, voc_val, ctx=gpus,
        # GluonCV's lr 0.01 / wd 1e-4 (4 GPUs x 4 images) on gluonseg's plain mean loss
        config=TrainConfig(epochs=50, batch_size=4, lr=0.0025, wd=4e-4, num_workers=8),
        train_transform=SegmentationTrainTransform(base_size=520, crop_size=480),
        save_dir='runs/voc_aug/fcn_resnet101_voc')
    voc_trainer.fit()

# %% [markdown]
# The same run from the command line, with the options described in
# [training.md](../training.md) (SyncBatchNorm across 4 GPUs, 4 images each):
#
# ```bash
# python scripts/segmentation/train.py --dataset voc_aug --train-split train_aug \
#     --model fcn_resnet101_voc --gpus 0,1,2,3 --batch-size 4 --aux --syncbn --epochs 50 \
#     --workers 8
# python scripts/segmentation/test.py runs/voc_aug/fcn_resnet101_voc/best.ckpt
# ```
#
# (`train.py`'s defaults for real data are lr 0.0025 and wd 4e-4: GluonCV's published lr 0.01
# and wd 1e-4 restated for gluonseg's loss, see tutorial 3), and the Shapes run of this
# notebook with the script's own, longer preset (5 epochs of 2000 scenes, lr 0.04: mIoU about
# 0.8 in 4-5 minutes on 2 CPU cores):
#
# ```bash
# python scripts/segmentation/train.py          # fcn_resnet18_shapes, prints the val mIoU
# ```
