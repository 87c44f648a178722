# %% [markdown]
# # 7. Bring your own semantic segmentation dataset
#
# `FolderSegmentation` reads any dataset laid out as a folder of images and a folder of label
# PNGs paired by file name. This notebook builds such a folder (from Shapes scenes, so that it
# runs anywhere), loads it, shows what the label checks catch, counts the class frequencies
# and trains on it for a few iterations with the same engine as tutorial 2.
#
# ## The format
#
# ```
# my_data/
#   images/<name>.jpg | .jpeg | .png     RGB pictures
#   labels/<name>.png                    one class id per pixel: greyscale (L) or palette (P) PNG
#   classes.txt                          one class name per line; line i is class id i
#   train.txt, val.txt                   optional split lists: one <name> per line
# ```
#
# Label pixel values are class ids `0 .. number of classes - 1`; the value **255** marks
# pixels that are neither trained on nor scored (object borders, "don't know").

# %%
import os
import shutil

import numpy as np
from PIL import Image
from gluonseg.data import ShapesSegmentation

root = 'my_data'
shutil.rmtree(root, ignore_errors=True)
os.makedirs(os.path.join(root, 'images'))
os.makedirs(os.path.join(root, 'labels'))

scenes = ShapesSegmentation('train', length=40, size=64, seed=7)
names = []
for i in range(len(scenes)):
    image, mask = scenes[i]
    name = 'scene_%03d' % i
    Image.fromarray(image).save(os.path.join(root, 'images', name + '.jpg'), quality=95)
    label = mask.astype(np.uint8)
    label[0, :] = 255        # pretend the top row was not annotated: ignored
    Image.fromarray(label, mode='L').save(os.path.join(root, 'labels', name + '.png'))
    names.append(name)
with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(scenes.classes) + '\n')
with open(os.path.join(root, 'train.txt'), 'w') as f:
    f.write('\n'.join(names[:32]) + '\n')
with open(os.path.join(root, 'val.txt'), 'w') as f:
    f.write('\n'.join(names[32:]) + '\n')
print(sorted(os.listdir(root)), len(os.listdir(os.path.join(root, 'images'))), 'images')

# %% [markdown]
# ## Load it

# %%
import matplotlib.pyplot as plt
from gluonseg.data import FolderSegmentation
from gluonseg.utils import viz

train_set = FolderSegmentation(root, split='train')
val_set = FolderSegmentation(root, split='val')
print(train_set)
print('classes:', train_set.classes)
print('train %d, val %d samples; verified %d labels'
      % (len(train_set), len(val_set), train_set.verify()))

fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, i in zip(axes, range(4)):
    image, mask = train_set[i]
    ax.imshow(viz.overlay(image, mask, train_set.num_class, alpha=0.5, legend=False))
    ax.set_title(train_set.ids[i], fontsize=9)
    ax.axis('off')
plt.show()

# %% [markdown]
# The ignored top row shows through uncoloured: `overlay` leaves label 255 out.
#
# ## What the label checks catch
#
# The two mistakes that most often make a custom dataset train to an mIoU of 0 or NaN without
# any error: labels saved as **colour** images (what an annotation tool's "export as picture"
# often gives), and **0/255 binary masks** for a two-class problem (255 is then read as
# "ignore", or as a class id that does not exist). gluonseg reads every label it loads and
# raises an error naming the file; `verify()` checks all of them up front.

# %%
k = next(i for i in range(len(train_set)) if (train_set[i][1] == 1).any())  # has a circle
bad = os.path.join(root, 'labels', names[k] + '.png')
good_label = Image.open(bad).copy()

# Mistake 1: the label saved as an RGB colour picture.
viz.colorize_mask(np.array(good_label), 4).convert('RGB').save(bad)
try:
    FolderSegmentation(root, split='train').verify()
except ValueError as err:
    print('colour label  ->', err)

# Mistake 2: a foreground/background mask saved as 0/255, with 255 meaning "circle".
binary = (np.array(good_label) == 1).astype(np.uint8) * 255
Image.fromarray(binary, mode='L').save(bad)
# With the default ignore_index=255 it loads, and every circle pixel is silently ignored:
two_class = FolderSegmentation(root, split='train', classes=['background', 'circle'])
_, read_back = two_class[k]
print('0/255 label, ignore_index=255 -> circle pixels left: %d, ignored pixels: %d'
      % ((read_back == 1).sum(), (read_back == 255).sum()))
# Saying that the data has no ignore value turns the mistake into an error:
two_class = FolderSegmentation(root, split='train', classes=['background', 'circle'],
                               ignore_index=None)
try:
    two_class[k]
except ValueError as err:
    print('0/255 label, ignore_index=None ->', err)

good_label.save(bad)   # put the right label back
print('after the fix: %d labels verified' % FolderSegmentation(root, split='train').verify())

# %% [markdown]
# The fix for the second case is to write class ids (0 and 1) instead of 0 and 255. If your
# data has no "not annotated" pixels, pass `ignore_index=None` so that any value other than a
# class id is an error; the class frequencies below are the other check (a class with 0
# pixels is a warning sign).
#
# ## Class frequencies
#
# Real datasets are unbalanced: a class covering 0.1% of the pixels contributes little to the
# loss. gluonseg's training loss has no per-class weights (it is the mean cross-entropy over
# the labelled pixels, as in GluonCV's recipes), so measure the balance first; the usual
# remedies are more images of the rare classes in the split list, or larger crops around them.

# %%
counts = np.zeros(train_set.num_class, np.int64)
ignored = 0
for i in range(len(train_set)):
    _, mask = train_set[i]
    counts += np.bincount(mask[mask != 255].ravel(), minlength=train_set.num_class)
    ignored += int((mask == 255).sum())
share = counts / counts.sum()
for name, n, s in zip(train_set.classes, counts, share):
    print('%-10s %7d pixels  %5.1f%%' % (name, n, 100 * s))
print('ignored    %7d pixels' % ignored)
# The inverse-frequency weights many papers use, for reference:
print('inverse-frequency weights:', np.round(1 / np.maximum(share, 1e-12) / train_set.num_class, 2))

fig, ax = plt.subplots(figsize=(5, 2.5))
ax.bar(train_set.classes, 100 * share, color=viz.get_palette(train_set.num_class) / 255.0,
       edgecolor='black')
ax.set_ylabel('% of labelled pixels')
plt.show()

# %% [markdown]
# ## Train on it
#
# A `FolderSegmentation` is an ordinary dataset of `(image, mask)` pairs, so the engine of
# tutorial 2 trains on it unchanged (here 8 iterations, only to show the wiring; see
# tutorial 2 for a real run). Start from ImageNet weights (`pretrained_base=True`, the
# default) on real data, and give the model your number of classes with `nclass`.

# %%
import mxnet as mx
import gluonseg
from gluonseg.data import SegmentationTrainTransform, SegmentationValTransform
from gluonseg.engine import SegmentationTrainer, TrainConfig

val_set = FolderSegmentation(root, split='val', transform=SegmentationValTransform(64))
net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False,
                         nclass=train_set.num_class)
trainer = SegmentationTrainer(
    net, train_set, val_set, config=TrainConfig(epochs=2, batch_size=8, lr=0.02,
                                                progress=False),
    train_transform=SegmentationTrainTransform(base_size=64, crop_size=64,
                                               scale_range=(0.75, 1.25)),
    save_dir='runs/my_data')
result = trainer.fit()
print('iterations %d, last loss %.3f, val mIoU %.4f'
      % (result['iteration'], trainer.last_loss, result['metrics']['mIoU']))

# %% [markdown]
# For a real dataset, pick the architecture and backbone by name (`'deeplab_resnet101_voc'`
# with `nclass=...` builds DeepLabV3-ResNet-101 for your classes, starting from the ImageNet
# backbone) and the sizes of your pictures (`base_size`, `crop_size`). The command line does
# the same for a folder with `train.txt` and `val.txt` split lists:
# `gluonseg train --dataset folder --root DIR --model deeplab_resnet101_voc --base-size 520
# --crop-size 480` (or `scripts/segmentation/train.py` with the same options; the class
# count comes from `classes.txt`; the options are described in [training.md](../training.md)).
