# %% [markdown]
# # 3. The state-of-the-art VOC recipe: COCO -> VOC-Aug -> VOC, multi-scale, test server
#
# GluonCV's best Pascal VOC models (`deeplab_resnet152_voc` 86.7% and `deeplab_resnet101_voc`
# 86.2% mIoU on the VOC2012 test server) were not trained on VOC alone. They were trained in
# three stages, each starting from the weights of the previous one, with a learning rate ten
# times smaller at each step:
#
# | stage | data | images | GluonCV lr | epochs | starts from |
# |---|---|---|---|---|---|
# | 1 | COCO 2017 train, the 20 VOC classes (+ background) | ~92.5K | 0.01 | 30 | ImageNet backbone |
# | 2 | VOC-Aug (SBD) | 11,355 | 0.001 | 50 | stage 1 |
# | 3 | VOC2012 trainval | 2,913 | 0.0001 | 50 | stage 2 |
#
# Every stage: SGD with momentum 0.9, weight decay 1e-4, batch 16 on 4 GPUs (4 images each)
# with synchronized BatchNorm, the auxiliary head, poly schedule, heads at 10x the
# learning rate, random scale of base 520 and crops of 480 (the published training commands;
# see [training.md](../training.md)). Then predict VOC2012 test with multi-scale + flip
# evaluation and upload the PNGs to the evaluation server.
#
# **GPU-hours: unknown.** GluonCV published the commands and the final numbers but no training
# times that we have found, so we give none. What sets the cost is the number of iterations
# (our arithmetic, at 16 images per iteration): stage 1 about 92.5K / 16 x 30 = 173K iterations
# at 480 x 480, stage 2 about 11,355 / 16 x 50 = 35K, stage 3 about 2,913 / 16 x 50 = 9K:
# COCO pre-training is ~80% of the work.
#
# **gluonseg's learning rates differ by a factor, not in effect.** GluonCV's loss is a mean
# per GPU which is then divided by the whole batch again, so its nominal lr 0.01 with 4 GPUs x
# 4 images acts like lr 0.01 x 4 / 16 = 0.0025 (and wd 1e-4 like 4e-4) on the plain mean over
# the batch's pixels that gluonseg's trainer minimizes. `train.py`'s defaults for real data are
# those effective values (lr 0.0025, wd 4e-4), and the three stages become 0.0025, 0.00025 and
# 0.000025.
#
# The cells below run the whole recipe on **Shapes stand-ins** with tiny settings (three
# Shapes streams play COCO, VOC-Aug and VOC; a ResNet-18 DeepLabV3 at 64 x 64), so every command
# is exercised in a few minutes on a CPU, and the stand-in model learns little (about the
# mIoU of tutorial 2's short run); the real commands are shown next to each stage.

# %%
import json
import os
import subprocess
import sys

import gluonseg

SCRIPTS = os.environ.get('GLUONSEG_SCRIPTS', os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(gluonseg.__file__))), 'scripts'))
TRAIN = os.path.join(SCRIPTS, 'segmentation', 'train.py')
TEST = os.path.join(SCRIPTS, 'segmentation', 'test.py')
# Scenes and epochs of the three stand-in stages: most of the (tiny) budget goes to stage 1,
# as most of the real recipe's does.
SCENES = [int(n) for n in os.environ.get('GLUONSEG_TUTORIAL_STAGE_SCENES', '320,80,40').split(',')]
EPOCHS = [int(n) for n in os.environ.get('GLUONSEG_TUTORIAL_STAGE_EPOCHS', '2,1,1').split(',')]
# The stand-in model: FCN on ResNet-18 learns fastest from random weights on a CPU. The real
# recipe trains deeplab_resnet101 (or fcn_/psp_resnet101) the same way.
MODEL = 'fcn_resnet18_shapes'


def train(stage, split, scenes, epochs, lr, init_from=None):
    """One stage with train.py on a Shapes stream; returns its FINAL summary."""
    command = [sys.executable, TRAIN, '--dataset', 'shapes', '--model', MODEL, '--aux',
               '--train-split', split, '--train-length', str(scenes), '--val-length', '32',
               '--epochs', str(epochs), '--batch-size', '8', '--lr', str(lr),
               '--save-dir', 'runs/recipe/' + stage, '--no-progress', '--quiet']
    if init_from:
        command += ['--init-from', init_from]
    print('$ python scripts/segmentation/train.py ' + ' '.join(command[2:]))
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    final = json.loads([line for line in run.stdout.splitlines()
                        if line.startswith('FINAL ')][-1][6:])
    print('%s: val mIoU %.4f after %d epochs (%.0f s)'
          % (stage, final['mIoU'], final['epoch'], final['wall_seconds']))
    return final

# %% [markdown]
# ## Stage 1: "COCO"
#
# The real command (after `python scripts/datasets/prepare_coco.py`; `COCOSegmentation` keeps
# the ~92.5K training images with more than 1000 pixels of the VOC classes):
#
# ```bash
# python scripts/segmentation/train.py --dataset coco --model deeplab_resnet101_coco \
#     --aux --syncbn --gpus 0,1,2,3 --batch-size 4 --epochs 30 --lr 0.0025 --wd 4e-4 \
#     --workers 16 --save-dir runs/sota/coco
# ```
#
# (`--pretrained-base` is the default for real data: the backbone starts from ImageNet.
# gluonseg marks COCO's crowd regions "ignore", where GluonCV painted them with their class; see
# [datasets.md](../datasets.md).) The stand-in starts from random weights:

# %%
stage1 = train('stage1_coco', 'coco_standin', SCENES[0], EPOCHS[0], 0.02)

# %% [markdown]
# ## Stage 2: "VOC-Aug", from stage 1, lr / 10
#
# ```bash
# python scripts/segmentation/train.py --dataset voc_aug --train-split train_aug \
#     --model deeplab_resnet101_voc --init-from runs/sota/coco/best.ckpt --no-pretrained-base \
#     --aux --syncbn --gpus 0,1,2,3 --batch-size 4 --epochs 50 --lr 0.00025 --wd 4e-4 \
#     --workers 16 --save-dir runs/sota/voc_aug
# ```
#
# `train_aug` is the clean 10,582-image set (no VOC2012 val image in it); GluonCV trained on all
# 11,355 SBD images (`--train-split gluoncv_train`), which contain VOC2012 val images. Either
# way stage 1's classes are VOC's 21, so `--init-from` loads every array, classifier included.

# %%
stage2 = train('stage2_voc_aug', 'aug_standin', SCENES[1], EPOCHS[1], 0.002,
               init_from='runs/recipe/stage1_coco/best.ckpt')

# %% [markdown]
# ## Stage 3: "VOC trainval", from stage 2, lr / 100
#
# ```bash
# python scripts/segmentation/train.py --dataset voc --train-split trainval \
#     --model deeplab_resnet101_voc --init-from runs/sota/voc_aug/best.ckpt --no-pretrained-base \
#     --aux --syncbn --gpus 0,1,2,3 --batch-size 4 --epochs 50 --lr 0.000025 --wd 4e-4 \
#     --val-interval 0 --save-dir runs/sota/voc
# ```
#
# VOC trainval contains VOC val, so validating on val means nothing here (`--val-interval 0`);
# the model is judged on the test server. Choose settings on stage 2's model with VOC val.

# %%
stage3 = train('stage3_voc', 'voc_standin', SCENES[2], EPOCHS[2], 0.0002,
               init_from='runs/recipe/stage2_voc_aug/best.ckpt')

# %%
import matplotlib.pyplot as plt

stages = [('1 "COCO"', 'stage1_coco'), ('2 "VOC-Aug"', 'stage2_voc_aug'), ('3 "VOC"', 'stage3_voc')]
fig, ax = plt.subplots(figsize=(7, 3.5))
offset = 0
for label, folder in stages:
    with open(os.path.join('runs/recipe', folder, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    ax.plot([offset + r['epoch'] for r in records], [r['mIoU'] for r in records], 'o-',
            label='stage ' + label)
    offset += records[-1]['epoch']
ax.set(xlabel='epochs (all stages)', ylabel='Shapes val mIoU', ylim=(0, 1),
       title='each stage starts from the previous one')
ax.legend()
plt.show()

# %% [markdown]
# ## Multi-scale + flip evaluation
#
# `test.py` evaluates a checkpoint with the dataset and sizes of its run; `--multi-scale` adds
# scales and flips (tutorial 4 shows what that does). For the real stage 2 model on VOC2012 val
# at GluonCV's scales:
#
# ```bash
# python scripts/segmentation/test.py runs/sota/voc_aug/best.ckpt --dataset voc --split val \
#     --mode testval --multi-scale --gpus 0
# ```

# %%
def evaluate(*extra, scenes=32):
    """test.py on stage 3's checkpoint; prints its result line, returns its whole output."""
    command = [sys.executable, TEST, 'runs/recipe/stage3_voc/best.ckpt', '--length',
               str(scenes), '--no-progress'] + list(extra)
    print('$ python scripts/segmentation/test.py ' + ' '.join(command[2:]))
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout.splitlines()[0])
    return run.stdout


evaluate()
evaluate('--multi-scale', '--scales', '0.75', '1.0', '1.25')

# %% [markdown]
# ## A VOC2012 test-server submission
#
# The server takes a tar archive of PNGs, one per test image, named by the image id, with the
# class ids as palette indices (VOC's own palette) at the original image size, in
# `results/VOC2012/Segmentation/comp6_test_cls/` ("comp6": trained with data from outside VOC,
# here COCO; "comp5" is VOC data only). The test images come from the VOC2012 test archive of
# the evaluation server (see [datasets.md](../datasets.md)) and have no labels, so `test.py`
# only predicts them; `--save-predictions DIR` writes the PNGs (any split, single- or
# multi-scale; `gluonseg eval` is the same command):
#
# ```bash
# python scripts/segmentation/test.py runs/sota/voc/best.ckpt --dataset voc --split test \
#     --multi-scale --gpus 0 --save-predictions results/VOC2012/Segmentation/comp6_test_cls
# tar -czf results.tgz results
# ```
#
# The stand-in predicts 12 Shapes "test" scenes, named by their index (Shapes scenes have
# labels, so test.py scores them too).

# %%
import tarfile

SUBMISSION = 'results/VOC2012/Segmentation/comp6_test_cls'
output = evaluate('--split', 'test', '--multi-scale', '--scales', '0.75', '1.0', '1.25',
                  '--save-predictions', SUBMISSION, scenes=12)
print([line for line in output.splitlines() if 'palette PNGs' in line][0])
with tarfile.open('results.tgz', 'w:gz') as archive:
    archive.add('results')
files = sorted(os.listdir(SUBMISSION))
print('%d PNGs in %s, e.g. %s; archive results.tgz (%d bytes)'
      % (len(files), SUBMISSION, files[0], os.path.getsize('results.tgz')))

# %%
import numpy as np
from PIL import Image

from gluonseg.data import ShapesSegmentation

scenes = ShapesSegmentation('test', length=12, size=64)   # the images test.py predicted
fig, axes = plt.subplots(2, 6, figsize=(14, 5))
for col in range(6):
    name = '%s.png' % scenes.ids[col]
    png = Image.open(os.path.join(SUBMISSION, name))
    assert png.mode == 'P' and png.size == (64, 64)   # palette PNG: pixel values are class ids
    axes[0, col].imshow(scenes[col][0])
    axes[0, col].set_title(name, fontsize=8)
    axes[1, col].imshow(png.convert('RGB'))
for ax in axes.ravel():
    ax.axis('off')
plt.show()
print('class ids in %s:' % name, sorted(np.unique(np.array(png)).tolist()))
