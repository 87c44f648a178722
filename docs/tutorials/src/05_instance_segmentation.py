# %% [markdown]
# # 5. Instance segmentation with a pretrained Mask R-CNN
#
# Semantic segmentation says which class each pixel belongs to; instance segmentation also
# separates the objects: two people standing side by side get two masks. gluonseg's Mask
# R-CNN models load the six COCO models GluonCV published (C4 and FPN, ResNet-18/50/101).
# `net.predict(image)` returns the detections of an image with boxes in its own pixels and
# masks at its full size.
#
# **Weights.** With internet, the defaults below download `mask_rcnn_fpn_resnet50_v1b_coco`
# (39.2 box AP, 35.4 mask AP on COCO val2017, GluonCV's numbers) and you should point `IMAGE`
# at a photo with people, animals or vehicles in it.
#
# The test suite runs this notebook offline with **random weights**: it saves a randomly
# initialized `mask_rcnn_resnet18_v1b_coco` (the smallest layout) to a file and sets the
# variables below to it, with a small input size and a score threshold of 0. Its detections
# are therefore meaningless (whatever class and score the random layers happen to produce, at
# random places, with noise for masks); what the run shows is that every step works and what
# the outputs look like. Tutorial 6
# trains a Mask R-CNN whose detections do mean something.

# %%
import os

MODEL = os.environ.get('GLUONSEG_TUTORIAL_MODEL', 'mask_rcnn_fpn_resnet50_v1b_coco')
WEIGHTS = os.environ.get('GLUONSEG_TUTORIAL_WEIGHTS')    # a local .params file, or None
IMAGE = os.environ.get('GLUONSEG_TUTORIAL_IMAGE', 'my_photo.jpg')
SHORT = int(os.environ.get('GLUONSEG_TUTORIAL_SHORT', 800))         # resize: short side
MAX_SIZE = int(os.environ.get('GLUONSEG_TUTORIAL_MAX_SIZE', 1333))  # resize: long side at most
SCORE_THRESH = float(os.environ.get('GLUONSEG_TUTORIAL_SCORE_THRESH', 0.5))
# Proposals per image kept by the RPN: 1000 as published; fewer is faster (and caps the
# number of detections). The offline test uses 100.
PROPOSALS = int(os.environ.get('GLUONSEG_TUTORIAL_PROPOSALS', 1000))

# %% [markdown]
# ## Load the model

# %%
import gluonseg
from gluonseg.model_zoo import model_info
from gluonseg.model_zoo.registry import register_weights

print('Mask R-CNN models:', gluonseg.list_models('mask_rcnn_*'))
if WEIGHTS:
    register_weights(MODEL, path=WEIGHTS)
net = gluonseg.get_model(MODEL, pretrained=True, rpn_test_post_nms=PROPOSALS)
net.hybridize()
info = model_info(MODEL)
print('%s: %s, %d classes (%s, ...)' % (MODEL, info.architecture, info.num_classes,
                                        ', '.join(info.classes[:5])))

# %% [markdown]
# ## Predict
#
# The image is resized so that its short side is `SHORT` (800 for the published AP; the long
# side at most 1333), run through the network, and the detections scoring at least
# `score_thresh` are mapped back to the original pixels.

# %%
from PIL import Image

image = Image.open(IMAGE).convert('RGB')
pred = net.predict(IMAGE, short=SHORT, max_size=MAX_SIZE, score_thresh=SCORE_THRESH,
                   max_dets=10)
print('image %d x %d (W x H): %d detections' % (image.size + (len(pred),)))
print('masks', pred.masks.shape, pred.masks.dtype, '| boxes', pred.boxes.shape)
for name, score, box in zip(pred.class_names, pred.scores, pred.boxes):
    print('  %-14s %.3f  box (%.0f, %.0f, %.0f, %.0f)' % ((name, score) + tuple(box)))

# %% [markdown]
# An `InstancePrediction` holds, best first: `class_ids`, `class_names`, `scores`, `boxes`
# (`x1, y1, x2, y2` in the image's pixels) and `masks`, one boolean mask per detection at the
# image's full size.
#
# ## Draw

# %%
import matplotlib.pyplot as plt
from gluonseg.utils import viz

drawn = viz.draw_instances(image, pred)
drawn.save('instances.png')
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
axes[0].imshow(image)
axes[0].set_title('image')
axes[1].imshow(drawn)
axes[1].set_title('%d detections' % len(pred))
for ax in axes:
    ax.axis('off')
plt.show()

# %% [markdown]
# ## What the network computes: small box masks, pasted at full size
#
# The network itself (`net(x)`, GluonCV's output format) returns a fixed number of rows per
# image (as many as the RPN keeps proposals): class ids (-1 for empty rows), scores, boxes in
# the *resized* input's pixels, and a
# small `M x M` mask probability map per box (14 x 14 or 28 x 28 depending on the model).
# `predict` scales the boxes back and pastes each small mask into its box with sub-pixel
# accuracy, then thresholds it at 0.5.

# %%
import numpy as np
from mxnet import autograd
from gluonseg.data import load_image, normalize_image
from gluonseg.model_zoo.rcnn import resize_short_within
import mxnet as mx

resized, scale = resize_short_within(load_image(IMAGE), SHORT, MAX_SIZE)
x = mx.nd.array(normalize_image(resized)[None])
with autograd.predict_mode():
    ids, scores, boxes, masks = net(x)
print('network input', x.shape)
print('ids', ids.shape, 'scores', scores.shape, 'boxes', boxes.shape, 'masks', masks.shape)

if len(pred):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    axes[0].imshow(masks[0, 0].asnumpy(), cmap='viridis', vmin=0, vmax=1)
    axes[0].set_title('box mask of the best detection (%d x %d)' % masks.shape[2:])
    axes[1].imshow(pred.masks[0], cmap='gray')
    axes[1].set_title('pasted at full size')
    x1, y1, x2, y2 = pred.boxes[0]
    axes[1].add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color='red'))
    axes[2].imshow(viz.draw_instances(image, pred.masks[:1], pred.boxes[:1],
                                      pred.class_names[:1], pred.scores[:1], legend=False))
    axes[2].set_title('drawn')
    for ax in axes:
        ax.axis('off')
    plt.show()

# %% [markdown]
# ## Options worth knowing
#
# - `short=600, max_size=1000` is faster and what GluonCV's demos used; the published AP was
#   measured at 800/1333.
# - `score_thresh=0.001, max_dets=100` is the COCO evaluation setting
#   (`scripts/instance/eval_mask_rcnn.py` scores a model that way).
# - A list of images gives a list of predictions: `net.predict([path1, path2])`.
# - Other classes than COCO's: `gluonseg.get_model(MODEL, pretrained=True,
#   classes=['cat', 'dog', 'kite'])` keeps the rows of those COCO classes and is ready to be
#   fine-tuned (tutorial 6).
# - On a GPU: `gluonseg.get_model(MODEL, pretrained=True, ctx=mx.gpu(0))`.
