# %% [markdown]
# # 4. Evaluate a model: single scale, multi-scale + flip, sliding windows, per-class IoU
#
# The published mIoU of a segmentation model depends on *how* it was evaluated as much as on
# the weights. GluonCV's numbers (the ones in [model_zoo.md](../model_zoo.md)) were measured
# on full-size images, averaging the class scores over six scales and horizontal flips, with
# sliding windows wherever a scaled image is larger than the crop size. This notebook runs
# both protocols on the same images, looks at the windows on a large image and compares
# per-class IoU.
#
# **Weights and data.** With internet and the VOC data prepared
# (`python scripts/datasets/prepare_voc.py`), the defaults below evaluate
# `deeplab_resnet101_voc` with GluonCV's published weights on VOC2012 val at GluonCV's sizes
# (base 520, crop 480). The test suite runs this notebook offline on Shapes val with a small
# `fcn_resnet18_shapes` trained for a minute (tutorial 2) and proportionally small sizes; the
# code is the same.

# %%
import os

MODEL = os.environ.get('GLUONSEG_TUTORIAL_MODEL', 'deeplab_resnet101_voc')
WEIGHTS = os.environ.get('GLUONSEG_TUTORIAL_WEIGHTS')     # a local .params file, or None
DATASET = os.environ.get('GLUONSEG_TUTORIAL_DATASET', 'voc')
LIMIT = int(os.environ.get('GLUONSEG_TUTORIAL_LIMIT', 0))  # first N images only (0: all)
BASE_SIZE = int(os.environ.get('GLUONSEG_TUTORIAL_BASE_SIZE', 520))
CROP_SIZE = int(os.environ.get('GLUONSEG_TUTORIAL_CROP_SIZE', 480))
SCALES = [float(s) for s in os.environ.get('GLUONSEG_TUTORIAL_SCALES',
                                           '0.5,0.75,1.0,1.25,1.5,1.75').split(',')]

# %% [markdown]
# ## The model and the images
#
# Evaluation uses full-size images ("testval"): `SegmentationTestValTransform` only normalizes
# them, the masks stay untouched, so every pixel of the original annotation is scored.
# VOC's object borders are labelled 255 and not scored.

# %%
import mxnet as mx
import numpy as np
import gluonseg
from gluonseg.data import SegmentationTestValTransform
from gluonseg.engine import get_segmentation_dataset
from gluonseg.model_zoo import model_info
from gluonseg.model_zoo.registry import register_weights

if WEIGHTS:
    register_weights(MODEL, path=WEIGHTS)
net = gluonseg.get_model(MODEL, pretrained=True)
net.hybridize(static_alloc=True)
info = model_info(MODEL)

extra = {'size': BASE_SIZE} if DATASET == 'shapes' else {}
dataset = get_segmentation_dataset(DATASET, 'val', transform=SegmentationTestValTransform(),
                                   **extra)
if LIMIT:
    dataset = mx.gluon.data.SimpleDataset([dataset[i] for i in range(LIMIT)])
classes = list(info.classes)
print('%s on %d %s val images' % (MODEL, len(dataset), DATASET))

# %% [markdown]
# ## Single scale
#
# One forward pass per image at its own size. `batch_size=1` because the images differ in
# size (`evaluate_segmentation` would otherwise pad them, with the padding not scored).

# %%
import time
from gluonseg.engine import evaluate_segmentation

single = evaluate_segmentation(net, dataset, batch_size=1, nclass=len(classes))
print('single scale:        pixAcc %.4f  mIoU %.4f  (%.1f s)'
      % (*single.get(), single.seconds))

# %% [markdown]
# ## Multi-scale + flip
#
# `MultiScaleEvaluator` resizes each image so that its long side is `base_size * scale`, runs
# the network on it and on its mirror image, in `crop_size` windows when the resized image is
# larger than one crop, and averages the class probabilities over windows, flips and scales at
# the original resolution. `combine='gluoncv'` reproduces GluonCV's exact arithmetic
# (`exp` of summed logits over flips, summed over scales) when you need to match a published
# number to the last digit; the default averages softmax probabilities.

# %%
from gluonseg.model_zoo.multiscale import MultiScaleEvaluator

evaluator = MultiScaleEvaluator(net, base_size=BASE_SIZE, crop_size=CROP_SIZE, scales=SCALES,
                                flip=True, mean=info.mean, std=info.std)
multi = evaluate_segmentation(net, dataset, batch_size=1, nclass=len(classes),
                              evaluator=evaluator)
print('multi-scale + flip:  pixAcc %.4f  mIoU %.4f  (%.1f s, scales %s)'
      % (*multi.get(), multi.seconds, SCALES))
print('cost: %.1fx the single-scale time' % (multi.seconds / max(single.seconds, 1e-9)))

# %% [markdown]
# ## Per-class IoU
#
# The mean hides which classes gain. IoU = TP / (TP + FP + FN) per class, from the confusion
# matrix summed over the whole dataset.

# %%
import matplotlib.pyplot as plt

iou_single, iou_multi = single.per_class_iou(), multi.per_class_iou()
print('%-14s %8s %8s' % ('class', 'single', 'multi'))
for name, a, b in zip(classes, iou_single, iou_multi):
    print('%-14s %8.4f %8.4f' % (name, a, b))

pos = np.arange(len(classes))
fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(classes)), 3.5))
ax.bar(pos - 0.2, iou_single, 0.4, label='single scale')
ax.bar(pos + 0.2, iou_multi, 0.4, label='multi-scale + flip')
ax.set_xticks(pos)
ax.set_xticklabels(classes, rotation=60 if len(classes) > 6 else 0, ha='right')
ax.set_ylabel('IoU')
ax.set_ylim(0, 1)
ax.legend()
plt.show()

# %% [markdown]
# The confusion matrix shows *what* each class is mistaken for (rows: ground truth, columns:
# prediction, normalized per row).

# %%
cm = multi.confusion_matrix.astype(float)
cm /= np.maximum(cm.sum(axis=1, keepdims=True), 1)
fig, ax = plt.subplots(figsize=(4 + 0.25 * len(classes), 3.5 + 0.25 * len(classes)))
ax.imshow(cm, cmap='Blues', vmin=0, vmax=1)
ax.set_xticks(range(len(classes)))
ax.set_xticklabels(classes, rotation=90)
ax.set_yticks(range(len(classes)))
ax.set_yticklabels(classes)
ax.set(xlabel='predicted', ylabel='ground truth')
plt.show()

# %% [markdown]
# ## Sliding windows on a large image
#
# A picture much larger than the training crops is cut into `crop_size` windows with a stride
# of 2/3 of the crop; overlapping windows are averaged. We build a large picture by tiling
# validation images (so the objects keep the size the model was trained on), run the
# evaluator at a single scale whose long side is the picture's own (so it is evaluated at full
# resolution), and draw the windows.

# %%
import math
from PIL import Image, ImageDraw
from gluonseg.data import load_image
from gluonseg.utils import viz

plain = get_segmentation_dataset(DATASET, 'val', **extra)
tiles = [plain[i] for i in range(6)]
th = tw = CROP_SIZE   # each tile the size of one training crop
big_image = np.zeros((2 * th, 3 * tw, 3), np.uint8)
big_truth = np.zeros((2 * th, 3 * tw), np.int32)
for k, (img, lab) in enumerate(tiles):
    r, c = divmod(k, 3)
    big_image[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = np.asarray(
        Image.fromarray(img).resize((tw, th), Image.BILINEAR))
    big_truth[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = np.asarray(
        Image.fromarray(lab.astype(np.uint8)).resize((tw, th), Image.NEAREST))
H, W = big_truth.shape

windowed = MultiScaleEvaluator(net, base_size=max(H, W), crop_size=CROP_SIZE, scales=[1.0],
                               flip=False, mean=info.mean, std=info.std)
x = net.preprocess(big_image)
pred_windows = windowed.predict(x)[0].asnumpy()
pred_whole = net.predict(big_image)          # one pass over the whole picture

stride = windowed.stride
rows = int(math.ceil(max(H - CROP_SIZE, 0) / stride)) + 1
cols = int(math.ceil(max(W - CROP_SIZE, 0) / stride)) + 1
print('picture %d x %d, crop %d, stride %d: windows %d x %d' % (H, W, CROP_SIZE, stride,
                                                              rows, cols))

from gluonseg.utils.metrics import SegmentationMetric
for name, pred in [('whole picture', pred_whole), ('sliding windows', pred_windows)]:
    m = SegmentationMetric(len(classes))
    m.update(big_truth, pred)
    print('%-16s mIoU %.4f' % (name, m.get()[1]))

# %%
suffix = MODEL.rsplit('_', 1)[-1]
palette = {'voc': 'voc', 'coco': 'voc', 'ade': 'ade20k', 'citys': 'cityscapes'}.get(
    suffix, len(classes))
grid = viz.overlay(big_image, pred_windows, palette, alpha=0.5, legend=False)
draw = ImageDraw.Draw(grid)
coverage = np.zeros((H, W), np.int32)
window_colours = viz.get_palette('ade20k')
for k, (r, c) in enumerate((r, c) for r in range(rows) for c in range(cols)):
    y0, x0 = r * stride, c * stride
    y1, x1 = min(y0 + CROP_SIZE, H), min(x0 + CROP_SIZE, W)
    coverage[y0:y1, x0:x1] += 1
    inset = k % 3   # shift the outlines a little so overlapping windows stay visible
    draw.rectangle([x0 + inset, y0 + inset, x1 - 1 - inset, y1 - 1 - inset],
                   outline=tuple(int(v) for v in window_colours[k % len(window_colours)]),
                   width=max(1, CROP_SIZE // 120))
fig, axes = plt.subplots(1, 3, figsize=(16, 4))
axes[0].imshow(viz.overlay(big_image, big_truth, palette, alpha=0.5, classes=classes))
axes[0].set_title('ground truth')
axes[1].imshow(grid)
axes[1].set_title('sliding-window prediction, %d windows' % (rows * cols))
shown = axes[2].imshow(coverage, cmap='magma')
axes[2].set_title('windows covering each pixel')
fig.colorbar(shown, ax=axes[2], fraction=0.03)
for ax in axes:
    ax.axis('off')
plt.show()

# %% [markdown]
# ## From the command line
#
# `scripts/segmentation/test.py` runs the same evaluations and writes the per-class numbers to
# JSON. GluonCV's published protocol for a zoo model:
#
# ```bash
# python scripts/segmentation/test.py --model deeplab_resnet101_voc --pretrained \
#     --dataset voc --split val --multi-scale --combine gluoncv --absent-class zero --gpus 0
# ```
#
# `--absent-class zero` counts a class missing from both the labels and the predictions as
# IoU 0, as GluonCV's metric does; gluonseg's default leaves it out of the mean (the two agree
# on a full benchmark split, where every class occurs). A checkpoint of `train.py` is
# evaluated with the dataset and sizes of its run: `python scripts/segmentation/test.py
# runs/shapes/fcn_resnet18_shapes/best.ckpt --multi-scale`.
