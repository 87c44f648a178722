# %% [markdown]
# # 1. Segment an image with a pretrained FCN, PSPNet or DeepLabV3
#
# This tutorial loads a semantic segmentation model from the gluonseg model zoo, predicts a
# class for every pixel of a picture, colours the prediction, lays it over the picture and
# measures how much of the picture each class covers.
#
# **Weights.** `gluonseg.get_model(name, pretrained=True)` downloads the weight file GluonCV
# published for that name (checked against its SHA-1, cached in `~/.gluonseg/models`). With
# internet and the defaults below you get `deeplab_resnet101_voc` (86.2% mIoU on the VOC2012
# test server, GluonCV's number) and should point `IMAGE` at a photo of your own.
#
# The test suite runs this notebook offline: it sets the variables of the next cell to a
# small `fcn_resnet18_shapes` model that it trained for about a minute on the built-in
# synthetic Shapes data (background, circle, square, triangle) and to a Shapes picture.
# The code is the same for every model; only the pictures differ (a one-minute Shapes model
# is rough around the edges).

# %%
import os

MODEL = os.environ.get('GLUONSEG_TUTORIAL_MODEL', 'deeplab_resnet101_voc')
WEIGHTS = os.environ.get('GLUONSEG_TUTORIAL_WEIGHTS')   # a local .params file, or None
IMAGE = os.environ.get('GLUONSEG_TUTORIAL_IMAGE', 'my_photo.jpg')

# %% [markdown]
# ## Load a model
#
# Names follow `{method}_{backbone}_{dataset}`: `fcn_resnet101_voc`, `psp_resnet101_voc` and
# `deeplab_resnet101_voc` are the three methods with the same backbone, trained on the same
# data; they are used the same way. `list_models` shows which names have published weights.

# %%
import gluonseg
from gluonseg.model_zoo import model_info
from gluonseg.model_zoo.registry import register_weights

print('models with published VOC weights:', gluonseg.list_models('*_voc', pretrained=True))

if WEIGHTS:   # a local file instead of the published one (what the offline test does)
    register_weights(MODEL, path=WEIGHTS)
net = gluonseg.get_model(MODEL, pretrained=True)
info = model_info(MODEL)
print('%s: %s, trained on %s, %d classes' % (MODEL, info.architecture, info.dataset,
                                            info.num_classes))

# %% [markdown]
# The record `model_info(name)` also holds the class names and the input normalization the
# weights expect (ImageNet mean and standard deviation on RGB in [0, 1], for every model).

# %%
print('classes:', ', '.join(info.classes))
print('mean', info.mean, 'std', info.std)

# %% [markdown]
# ## Predict
#
# `net.predict` takes a file path, a PIL image or a uint8 `H x W x 3` RGB array, normalizes it
# with the model's mean and std and returns the class id of every pixel at the image's own
# size.

# %%
import numpy as np
from PIL import Image

image = Image.open(IMAGE).convert('RGB')
mask = net.predict(IMAGE)
print('image size (W x H): %d x %d' % image.size)
print('mask shape:', mask.shape, mask.dtype)

# %% [markdown]
# Under the hood `predict` calls the network on a normalized batch: `net(x)` returns logits of
# shape `(N, classes, H, W)`, already at the input's size (any `H x W` works, no padding to a
# multiple of 8). The softmax of the logits tells how sure the model is at each pixel.

# %%
from mxnet import autograd

x = net.preprocess(IMAGE)            # (1, 3, H, W) float32, normalized
with autograd.predict_mode():
    logits = net(x)
print('input', x.shape, '-> logits', logits.shape)
confidence = logits.softmax(axis=1).max(axis=1)[0].asnumpy()
assert (logits.argmax(axis=1)[0].asnumpy() == mask).all()

# %% [markdown]
# ## Colour and overlay
#
# `colorize_mask` turns the ids into a palette PNG (its pixel values stay the class ids, so it
# can be read back as an annotation); `overlay` blends the colours over the picture and adds a
# legend of the classes present. VOC and COCO models use the VOC palette, ADE20K and
# Cityscapes models their own.

# %%
import matplotlib.pyplot as plt
from gluonseg.utils import viz

suffix = MODEL.rsplit('_', 1)[-1]
palette = {'voc': 'voc', 'coco': 'voc', 'ade': 'ade20k', 'citys': 'cityscapes'}.get(
    suffix, info.num_classes)
coloured = viz.colorize_mask(mask, palette)
# The legend's text has a minimum size: on a small picture, draw on an enlarged copy.
factor = max(1, 400 // max(image.size))
blended = viz.overlay(image.resize((image.width * factor, image.height * factor), Image.BICUBIC),
                      np.kron(mask, np.ones((factor, factor), mask.dtype)), palette, alpha=0.5,
                      classes=info.classes)
coloured.save('prediction.png')
blended.save('overlay.png')

fig, axes = plt.subplots(1, 4, figsize=(16, 4))
panels = [(image, 'image'), (coloured.convert('RGB'), 'prediction'), (blended, 'overlay'),
          (confidence, 'confidence (max softmax)')]
for ax, (picture, title) in zip(axes, panels):
    shown = ax.imshow(picture, vmin=0, vmax=1) if title.startswith('conf') else ax.imshow(picture)
    ax.set_title(title)
    ax.axis('off')
fig.colorbar(shown, ax=axes[-1], fraction=0.046)
plt.show()

# %% [markdown]
# Low confidence gathers along object boundaries and on things the model has not seen: the
# picture to look at before trusting a prediction.
#
# ## How much of the picture each class covers

# %%
counts = np.bincount(mask.ravel(), minlength=info.num_classes)
share = counts / counts.sum()
present = np.flatnonzero(counts)
print('%-14s %8s %7s' % ('class', 'pixels', 'share'))
for c in present[np.argsort(-counts[present])]:
    print('%-14s %8d %6.1f%%' % (info.classes[c], counts[c], 100 * share[c]))
print('classes present:', len(present))

colours = viz.get_palette(palette)[present] / 255.0
fig, ax = plt.subplots(figsize=(6, 0.4 * len(present) + 1))
ax.barh([info.classes[c] for c in present], 100 * share[present], color=colours,
        edgecolor='black')
ax.set_xlabel('% of the pixels')
ax.invert_yaxis()
plt.show()

# %% [markdown]
# ## Next
#
# - Several images at once: `net.predict([path1, path2])` returns one mask per image;
#   `net(x)` takes a batch of equally sized, normalized images.
# - A GPU: `gluonseg.get_model(MODEL, pretrained=True, ctx=mx.gpu(0))`.
# - Better accuracy at a higher cost: multi-scale + flip evaluation, tutorial 4.
# - Faster CPU inference and export: tutorial 8 and [deploy.md](../deploy.md).
# - All models and their published numbers: [model_zoo.md](../model_zoo.md).
