# %% [markdown]
# # 6. Train Mask R-CNN on your own COCO-format data
#
# Instance segmentation data is usually exchanged in the **COCO format**: a folder of images and
# one JSON file listing the images, the categories and one annotation per object (its box, its
# mask as polygons or run-length encoding, its category). Most annotation tools export it. This
# notebook writes such a dataset (from the built-in ShapesInstance scenes, so that it runs
# anywhere), checks it by drawing it, trains a small Mask R-CNN on it with
# `scripts/instance/train_mask_rcnn.py`, plots the losses and the AP, evaluates the result with
# `scripts/instance/eval_mask_rcnn.py` and draws its predictions.
#
# The settings are small (250 iterations, a few minutes of CPU): the model reaches a mask AP of
# about 0.5 on these scenes, where the script's own Shapes default (500 iterations) reaches
# about 0.77. The commands for COCO and for fine-tuning a published model are at the end.

# %%
import os
import sys

import gluonseg

TRAIN_SCENES = int(os.environ.get('GLUONSEG_TUTORIAL_TRAIN_SCENES', 500))
VAL_SCENES = int(os.environ.get('GLUONSEG_TUTORIAL_VAL_SCENES', 20))
EPOCHS = int(os.environ.get('GLUONSEG_TUTORIAL_EPOCHS', 2))
SIZE = 128
# The training scripts of a source checkout (they are not part of the installed package).
SCRIPTS = os.environ.get('GLUONSEG_SCRIPTS', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(gluonseg.__file__))), 'scripts'))
print('scripts in', SCRIPTS)

# %% [markdown]
# ## A dataset in COCO format
#
# ```
# my_coco/
#   train/  000001.png ...              images
#   val/    ...
#   train.json, val.json                {"images": [...], "annotations": [...], "categories": [...]}
# ```
#
# Each annotation has `image_id`, `category_id`, `bbox` as `[x, y, width, height]`,
# `segmentation` (a list of polygons `[x1, y1, x2, y2, ...]`, or RLE), `area` and `iscrowd`
# (crowd regions are left out of training). `instances_to_coco` turns any dataset of
# `(image, boxes, class_ids, masks)` samples into that structure; we write it to disk as an
# annotation tool would.

# %%
import json

from PIL import Image
from gluonseg.data import ShapesInstance
from gluonseg.data.coco_format import instances_to_coco


def write_coco(split, scenes, folder='my_coco'):
    dataset = ShapesInstance(split, length=scenes, size=SIZE, seed=0)
    coco = instances_to_coco(dataset)
    os.makedirs(os.path.join(folder, split), exist_ok=True)
    for info in coco.dataset['images']:
        image = dataset[coco.dataset_indices[info['id']]][0]
        Image.fromarray(image).save(os.path.join(folder, split, info['file_name']))
    path = os.path.join(folder, split + '.json')
    with open(path, 'w') as f:
        json.dump(coco.dataset, f)
    return path, coco.dataset


train_json, content = write_coco('train', TRAIN_SCENES)
val_json, _ = write_coco('val', VAL_SCENES)
print('%s: %d images, %d objects, categories %s'
      % (train_json, len(content['images']), len(content['annotations']),
         [c['name'] for c in content['categories']]))
example = dict(content['annotations'][0])
example['segmentation'] = dict(example['segmentation'], counts=example['segmentation']
                               ['counts'][:20] + '...')
print('one annotation:', example)

# %% [markdown]
# ## Load and look at it
#
# `COCOInstance` reads any COCO-format file: the class names are the file's categories. Draw a
# few samples before training anything: boxes that miss their masks or classes that are
# swapped show up at once.

# %%
import matplotlib.pyplot as plt
from gluonseg.data import COCOInstance
from gluonseg.utils import viz

train_set = COCOInstance(split='train', annotation_file=train_json, image_dir='my_coco/train')
print(train_set, 'classes:', train_set.classes)

fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
for ax, i in zip(axes, range(4)):
    image, boxes, class_ids, masks = train_set[i]
    ax.imshow(viz.draw_instances(image, masks, boxes,
                                 [train_set.classes[c] for c in class_ids], legend=False))
    ax.axis('off')
plt.show()

# %% [markdown]
# ## Train
#
# `train_mask_rcnn.py --dataset coco` with `--train-json/--train-images` and
# `--val-json/--val-images` trains on any such data and validates with COCO AP after each
# epoch, keeping the best checkpoint. The options used here:
#
# - `--network resnet18_v1b --fpn --small`: an FPN Mask R-CNN on ResNet-18 with narrow heads
#   and fewer proposals (objects here are few and large);
# - `--no-pretrained-base --freeze-stages -1 --no-freeze-bn`: from random weights, everything
#   trained (on real photos keep the defaults: ImageNet backbone, frozen BatchNorm and stem);
# - `--short 128 --max-size 128`: the images' own size (COCO uses 800/1333);
# - `--batch-size 4 --lr 0.02 --lr-warmup 50 --lr-decay-epoch 1.5`: the schedule (linear
#   warmup over 50 iterations from lr/3, then x0.1 half-way through the last epoch).
#
# A killed run continues with the same command plus `--resume`.

# %%
import subprocess

command = [sys.executable, os.path.join(SCRIPTS, 'instance', 'train_mask_rcnn.py'),
           '--dataset', 'coco', '--train-json', train_json, '--train-images', 'my_coco/train',
           '--val-json', val_json, '--val-images', 'my_coco/val',
           '--network', 'resnet18_v1b', '--fpn', '--small', '--no-pretrained-base',
           '--freeze-stages', '-1', '--no-freeze-bn', '--short', str(SIZE),
           '--max-size', str(SIZE), '--batch-size', '4', '--epochs', str(EPOCHS),
           '--lr', '0.02', '--lr-warmup', '50', '--lr-decay-epoch', str(EPOCHS - 0.5),
           '--seed', '0', '--save-dir', 'runs/my_coco', '--no-progress']
print(' '.join(command[1:]))
run = subprocess.run(command, capture_output=True, text=True)
print('\n'.join(line for line in run.stderr.splitlines()
                if 'WARNING' not in line and line.strip())[-3000:])
assert run.returncode == 0, run.stderr[-3000:]
summary = json.loads(run.stdout.strip().splitlines()[-1])
print('mask AP %.4f, box AP %.4f after %d iterations (%.0f s of training steps)'
      % (summary['segm/AP'], summary['bbox/AP'], summary['iteration'],
         summary['train_seconds']))

# %% [markdown]
# ## Watch it learn
#
# `train.log` has the loss and its parts every 20 iterations (RPN objectness and box, R-CNN
# class and box, mask); `metrics.jsonl` the box and mask AP after each epoch.

# %%
import re

terms = {}
with open('runs/my_coco/train.log') as f:
    for line in f:
        match = re.search(r'iteration (\d+)/\d+: loss ([\d.]+) \(([^)]*)\)', line)
        if match:
            step = int(match.group(1))
            terms.setdefault('total', []).append((step, float(match.group(2))))
            for part in match.group(3).split(', '):
                name, value = part.rsplit(' ', 1)
                terms.setdefault(name, []).append((step, float(value)))
with open('runs/my_coco/metrics.jsonl') as f:
    records = [json.loads(line) for line in f]

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 3.8))
for name, points in terms.items():
    ax1.plot(*zip(*points), '.-' if name == 'total' else '--', label=name)
ax1.set(xlabel='iteration', ylabel='loss', title='training loss')
ax1.legend(fontsize=8)
ax2.plot([r['epoch'] for r in records], [r['bbox/AP'] for r in records], 'o-', label='box AP')
ax2.plot([r['epoch'] for r in records], [r['segm/AP'] for r in records], 's-', label='mask AP')
ax2.set(xlabel='epoch', ylim=(0, 1), title='validation (COCO AP)')
ax2.legend()
plt.show()

# %% [markdown]
# ## Evaluate
#
# `eval_mask_rcnn.py --checkpoint` rebuilds the network a checkpoint describes and scores it
# with pycocotools, on the data of its run unless told otherwise; it also writes the
# detections in COCO's results format.

# %%
evaluation = subprocess.run(
    [sys.executable, os.path.join(SCRIPTS, 'instance', 'eval_mask_rcnn.py'),
     '--checkpoint', 'runs/my_coco/best.ckpt', '--save-prefix', 'runs/my_coco/eval',
     '--no-progress'], capture_output=True, text=True)
assert evaluation.returncode == 0, evaluation.stderr[-3000:]
lines = evaluation.stdout.strip().splitlines()
print('\n'.join(lines[-4:]))

# %% [markdown]
# ## Predict
#
# `mask_rcnn_from_checkpoint` gives the trained network; `predict` works as in tutorial 5.

# %%
from gluonseg.engine.instance_trainer import mask_rcnn_from_checkpoint

net, checkpoint = mask_rcnn_from_checkpoint('runs/my_coco/best.ckpt')
val_set = COCOInstance(split='val', annotation_file=val_json, image_dir='my_coco/val')
fig, axes = plt.subplots(2, 4, figsize=(14, 7.5))
found = 0
for col in range(4):
    image, boxes, class_ids, masks = val_set[col]
    pred = net.predict(image, short=SIZE, max_size=SIZE, score_thresh=0.3)
    axes[0, col].imshow(viz.draw_instances(image, masks, boxes,
                                           [val_set.classes[c] for c in class_ids],
                                           legend=False))
    axes[0, col].set_title('ground truth', fontsize=9)
    axes[1, col].imshow(viz.draw_instances(image, pred, legend=False))
    axes[1, col].set_title('%d detections (score >= 0.3)' % len(pred), fontsize=9)
    found += len(pred)
for ax in axes.ravel():
    ax.axis('off')
plt.show()
print('detections on 4 validation images:', found)

# %% [markdown]
# ## On real data
#
# COCO 2017 with GluonCV's published recipe (8 GPUs x 1 image, lr 0.01, warmup 1000 iterations
# from lr/3, x0.1 at epochs 17 and 23, 26 epochs; these are the script's defaults for
# `--dataset coco`), after `python scripts/datasets/prepare_coco.py`:
#
# ```bash
# python scripts/instance/train_mask_rcnn.py --dataset coco --network resnet50_v1b --fpn \
#     --gpus 0,1,2,3,4,5,6,7
# python scripts/instance/eval_mask_rcnn.py --checkpoint runs/instance/coco/mask_rcnn_fpn_resnet50_v1b_coco/best.ckpt
# ```
#
# Your own photos in COCO format, starting from a published COCO model (its class layers are
# adapted to your categories, keeping the rows of categories with the same name):
#
# ```bash
# python scripts/instance/train_mask_rcnn.py --dataset coco \
#     --train-json my/train.json --train-images my/train \
#     --val-json my/val.json --val-images my/val \
#     --init-from mask_rcnn_fpn_resnet50_v1b_coco --gpus 0 --epochs 12 --lr-decay-epoch 8 11
# ```
#
# All options: [training.md](../training.md).
