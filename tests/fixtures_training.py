"""Small networks, data and trainers shared by the training tests (semantic and Mask R-CNN)."""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from gluonseg.data import (SegmentationTrainTransform, SegmentationValTransform, ShapesInstance,
                           ShapesSegmentation)
from gluonseg.data.instance_transforms import InstanceTrainTransform
from gluonseg.engine import SegmentationTrainer, TrainConfig
from gluonseg.engine.instance_trainer import InstanceTrainConfig, InstanceTrainer
from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn
from gluonseg.utils.mxnet_compat import set_loss_scaler_state, structural_params


# ------------------------------------------------------------------- semantic segmentation
class TinySegNet(nn.HybridBlock):
    """A few-hundred-parameter segmentation net with the zoo models' interface: logits at
    the input size, ``(out, aux)`` outputs, ``head_blocks()``."""

    def __init__(self, nclass=4, aux=True, dropout=0.1, batchnorm=True, **kwargs):
        super().__init__(**kwargs)
        self.nclass, self.aux = nclass, aux
        with self.name_scope():
            self.trunk = nn.HybridSequential()
            self.trunk.add(nn.Conv2D(8, 3, padding=1, in_channels=3, use_bias=not batchnorm))
            if batchnorm:
                self.trunk.add(nn.BatchNorm(in_channels=8))
            self.trunk.add(nn.Activation('relu'))
            self.head = nn.HybridSequential()
            self.head.add(nn.Conv2D(8, 3, padding=1, in_channels=8), nn.Activation('relu'))
            if dropout:
                self.head.add(nn.Dropout(dropout))
            self.head.add(nn.Conv2D(nclass, 1, in_channels=8))
            if aux:
                self.auxlayer = nn.Conv2D(nclass, 1, in_channels=8)

    def hybrid_forward(self, F, x):
        features = self.trunk(x)
        out = self.head(features)
        return (out, self.auxlayer(features)) if self.aux else out

    def head_blocks(self):
        return [self.head] + ([self.auxlayer] if self.aux else [])


def tiny_net(seed=0, ctx=mx.cpu(), **kwargs):
    mx.random.seed(seed)
    net = TinySegNet(**kwargs)
    net.initialize(mx.init.Xavier(), ctx=ctx)
    return net


def tiny_data(length=24, size=24):
    train = ShapesSegmentation('train', length=length, size=size)
    val = ShapesSegmentation('val', length=8, size=size, transform=SegmentationValTransform(size))
    augment = SegmentationTrainTransform(base_size=size, crop_size=size, scale_range=(0.75, 1.5))
    return train, val, augment


def tiny_trainer(net, save_dir=None, ctx=None, train=None, **overrides):
    settings = dict(epochs=2, batch_size=4, lr=0.05, warmup_epochs=0.5, progress=False,
                    seed=3, aux_weight=0.4)
    settings.update(overrides)
    train_set, val_set, augment = tiny_data()
    return SegmentationTrainer(net, train or train_set, val_set, ctx=ctx or [mx.cpu()],
                               config=TrainConfig(**settings), save_dir=save_dir,
                               train_transform=augment)


def weights_of(net):
    return {k: v.data(v.list_ctx()[0]).asnumpy() for k, v in structural_params(net).items()}


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_allclose(wa[key], wb[key], rtol=rtol, atol=atol, err_msg=key)


# ---------------------------------------------------------------------------- Mask R-CNN
SMALL = dict(frozen_bn=False, fpn_channels=32, rpn_channels=32, box_units=64, mask_channels=32,
             rpn_train_pre_nms=500, rpn_train_post_nms=64, rpn_test_pre_nms=200,
             rpn_test_post_nms=20, num_sample=32, rpn_num_sample=64)


def small_net(fpn=True, classes=('a', 'b', 'c'), seed=0, **kwargs):
    mx.random.seed(seed)
    net = mask_rcnn(18, 'v1b', fpn=fpn, classes=classes, **dict(SMALL, **kwargs))
    net.initialize(mx.init.Xavier())
    return net


def instance_trainer(net, ctx=(mx.cpu(),), **overrides):
    """An InstanceTrainer of ``net`` on 4 Shapes images of 64 pixels, no validation."""
    settings = dict(epochs=1, batch_size=1, lr=0.02, warmup_iters=1, step_epochs=(), seed=1,
                    val_interval=0, progress=False)
    settings.update(overrides)
    train = ShapesInstance('train', length=4, size=(64, 64), seed=1)
    return InstanceTrainer(net, train, InstanceTrainTransform(64, 64), ctx=list(ctx),
                           config=InstanceTrainConfig(**settings))


def same_start(count, tmp_path):
    """``count`` small Mask R-CNNs holding the same initial weights."""
    first = small_net(classes=ShapesInstance.CLASSES)
    first(mx.nd.zeros((1, 3, 64, 64)))  # completes the deferred initialization
    params = str(tmp_path / 'start.params')
    first.save_parameters(params)
    nets = [first]
    for _ in range(count - 1):
        net = small_net(classes=ShapesInstance.CLASSES, seed=7)
        net.load_parameters(params)
        nets.append(net)
    return nets


def trained_weights(trainer):
    # structural names: the global ones differ between two builds
    params = structural_params(trainer.net)
    return {name: p.data().asnumpy() for name, p in params.items() if p.grad_req != 'null'}


def assert_same_trained_weights(a, b):
    first, second = trained_weights(a), trained_weights(b)
    assert len(first) > 50 and first.keys() == second.keys()
    for key in first:
        np.testing.assert_allclose(second[key], first[key], rtol=1e-4, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------------------- float16 AMP
def install_loss_scaler(trainer, loss_scale, next_loss_scale):
    """float16 AMP's dynamic loss scaling (what amp.init_trainer sets up) on a float32
    trainer, which runs on the CPU without switching AMP on."""
    from mxnet.contrib.amp.loss_scaler import LossScaler
    scaler = LossScaler()
    set_loss_scaler_state(scaler, {'loss_scale': loss_scale, 'next_loss_scale': next_loss_scale,
                                   'unskipped': 0})
    trainer.trainer._amp_loss_scaler = scaler
    trainer.trainer._amp_original_scale = trainer.trainer._scale
    trainer._loss_scaler = scaler
    return scaler
