"""A Mask R-CNN's lean inference fused by oneDNN, and optionally quantized to int8.

:func:`optimize_mask_rcnn` (what :func:`gluonseg.optimize` does for a Mask R-CNN) runs the
stages of :class:`~gluonseg.model_zoo.rcnn.inference.LeanDetector` with the convolutional blocks
(backbone, RPN, box and mask heads) rebuilt as ``SymbolBlock``\\ s that share the
network's parameters and are partitioned for oneDNN (``optimize_for(backend='MKLDNN')``):
each Convolution -> BatchNorm -> ReLU (and the residual ``+``) runs as one fused
convolution, the frozen BatchNorm folded into the weights in float32, so the detections are
those of ``net.detect`` up to float rounding. Two rewrites give the same values with less
work:

* the mask head's 2x2/2 transposed conv runs as the equivalent 1x1 conv to 4 sub-pixels
  (:class:`SubpixelMaskFeatures`), which oneDNN fuses with its ReLU and quantizes, and the
  class predictor runs only for each RoI's class;
* in C4 ResNet-50/101 models stage 4's first 1x1 convs run once on the stage-3 map instead
  of on every proposal (:mod:`~gluonseg.model_zoo.rcnn.split_stage`).

With ``dtype='int8'`` the backbone (C4: stem to stage 3; FPN: the ResNet and the pyramid),
the RPN's convs, the box head (C4: stage 4 on the RoIs; FPN: its two FCs) and the mask head
are quantized by oneDNN (VNNI), calibrated on a few images; the box predictors and the mask
predictor stay float32. It is faster, but the detections change: it is opt-in, and its
accuracy on a trained model is what ``scripts/benchmark/optimize_mask_rcnn_accuracy.py``
measures (``docs/deploy.md``).
"""
import warnings

import mxnet as mx
from mxnet import autograd
from mxnet.contrib.quantization import quantize_net_v2

from ...utils.mxnet_compat import cached_graph
from ..rcnn.inference import LeanDetector
from ..rcnn.predict import predict_instances
from ..rcnn.rpn import RPNCandidates
from ..rcnn.split_stage import pool_entry_maps, split_stage
from .calibration import CALIB_MODES, calibration_batches, check_initialized, symbol_block

__all__ = ['OptimizedMaskRCNN', 'SubpixelMaskFeatures', 'optimize_mask_rcnn']


class OptimizedMaskRCNN(LeanDetector):
    """A Mask R-CNN for fast lean inference, made by :func:`optimize_mask_rcnn`.

    ``fast.detect(x)`` (or ``fast(x)``) returns what ``net.detect(x)`` returns;
    ``fast.predict(image)`` what ``net.predict(image)`` returns. Other attributes
    (``classes``, ``mask_size``, ...) are the network's. Inference only: ``net(x)``,
    training and ``reset_class`` stay on the network, which is not modified.

    Its ``mask`` block is the mask head up to the upsampling, which runs as a 1x1 conv
    (:class:`SubpixelMaskFeatures`); the class predictor is then applied to each RoI's
    class only.

    Attributes
    ----------
    dtype : str
        ``'float32'`` (fused, same detections) or ``'int8'`` (quantized backbone and RoI
        blocks).
    """

    def __init__(self, net, dtype, **blocks):
        super().__init__(net, **blocks)
        self.dtype = dtype

    def class_mask_logits(self, pooled, class_ids):
        """As :meth:`LeanDetector.class_mask_logits
        <gluonseg.model_zoo.rcnn.inference.LeanDetector.class_mask_logits>`: the predictor (a
        1x1 conv) is a dot product per output cell, taken here with the RoI's class's
        weights only."""
        features = self.mask(pooled)  # (R, C * 4, S, S): channel o * 4 + a * 2 + b
        count, channels, size = features.shape[0], features.shape[1] // 4, features.shape[2]
        predictor = self.net.mask.mask
        weight = predictor.weight.data(features.context).reshape((0, -1)).take(class_ids)
        bias = predictor.bias.data(features.context).take(class_ids)
        logits = mx.nd.batch_dot(weight.expand_dims(1),
                                 features.reshape((count, channels, -1)))
        # (R, 1, [a, b, i, j]) -> (R, [i, a], [j, b]): cell (i, j)'s sub-pixel (a, b)
        logits = logits.reshape((count, 2, 2, size, size)).transpose((0, 3, 1, 4, 2))
        return logits.reshape((count, 2 * size, 2 * size)) + bias.reshape((-1, 1, 1))

    def detect(self, x, score_thresh=0.001, max_dets=100):
        """See :meth:`~.mask_rcnn.MaskRCNN.detect`."""
        return self(x, score_thresh, max_dets)

    def predict(self, images, **kwargs):
        """See :func:`~.predict.predict_instances` (``raw=True`` is not available)."""
        if kwargs.get('raw'):
            raise ValueError('an OptimizedMaskRCNN runs lean inference only; call '
                             'predict(raw=True) on the network itself')
        return predict_instances(self, images, **kwargs)

    def collect_params(self, *args):
        return self.net.collect_params(*args)

    def __getattr__(self, name):
        # Only called for attributes not found here: the network's (classes, mask_size, ...).
        if name == 'net':
            raise AttributeError(name)
        return getattr(self.net, name)

    def __repr__(self):
        return 'OptimizedMaskRCNN(dtype=%r, %s)' % (self.dtype, type(self.net).__name__)


class SubpixelMaskFeatures(mx.gluon.HybridBlock):
    """A :class:`~.heads.MaskHead` up to its class predictor, with the 2x2/2 transposed conv
    run as the equivalent 1x1 conv to 4 sub-pixels per channel (output channel
    ``o * 4 + a * 2 + b`` is channel o at output cell (2i + a, 2j + b)), followed by the
    ReLU: oneDNN fuses and quantizes a conv + ReLU, not a transposed conv (which, with its
    separate ReLU, was most of the FPN mask head's time). The 3x3 convs are the head's own;
    the 1x1 conv's weights are a copy of the transposed conv's, rearranged."""

    def __init__(self, head):
        super().__init__()
        deconv = head.deconv
        self.convs = deconv[:-1] if isinstance(deconv, mx.gluon.nn.HybridSequential) else None
        upsample = deconv[-1] if self.convs is not None else deconv
        weight = upsample.weight.data()  # (in, out, 2, 2)
        in_channels, channels = weight.shape[:2]
        with self.name_scope():
            self.upsample = mx.gluon.nn.Conv2D(channels * 4, 1, in_channels=in_channels)
        self.upsample.initialize(ctx=weight.context)
        self.upsample.weight.set_data(
            weight.transpose((1, 2, 3, 0)).reshape((channels * 4, in_channels, 1, 1)))
        self.upsample.bias.set_data(upsample.bias.data().repeat(4))

    def hybrid_forward(self, F, x):
        if self.convs is not None:
            x = self.convs(x)
        # Activation, not relu: oneDNN's conv fusion matches the former only.
        return F.Activation(self.upsample(x), act_type='relu')


def _fused(block, example):
    """``block`` partitioned for oneDNN (fused conv + BN + ReLU + add), run once on
    ``example`` (a list of NDArrays)."""
    fused = symbol_block(block, len(example))
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Cannot decide type')
        fused.optimize_for(*example, backend='MKLDNN', static_alloc=True)
    return fused


def optimize_mask_rcnn(net, dtype='float32', calib_data=None, calib_mode='naive',
                       num_calib_batches=4, ctx=None):
    """A faster lean-inference version of a Mask R-CNN (what :func:`gluonseg.optimize`
    returns for one; see the module docstring).

    Parameters
    ----------
    net : MaskRCNN
        Initialized; not modified (the float32 blocks share its parameters: optimize again
        after changing the weights).
    dtype : {'float32', 'int8'}
        ``'float32'``: fused, the detections of ``net.detect``. ``'int8'``: the backbone,
        the RPN's convs, the box head (C4: stage 4 on the RoIs; FPN: its FCs) and the mask
        head are also quantized (opt-in: the detections change, see the module
        docstring).
    calib_data : iterable, optional
        int8 (required): normalized image batches (B, 3, H, W) (NDArrays or numpy arrays,
        or ``(data, ...)`` tuples); the quantized blocks are calibrated on what they
        receive from these images (the RoI blocks on each image's 64 best proposals).
    calib_mode : {'naive', 'entropy'}
    num_calib_batches : int
        As for :func:`gluonseg.optimize`.
    ctx : Context, default cpu()
        oneDNN runs on the CPU only.

    Returns
    -------
    OptimizedMaskRCNN
    """
    if dtype not in ('float32', 'int8'):
        raise ValueError("a Mask R-CNN optimizes to dtype 'float32' or 'int8', not %r"
                         % (dtype,))
    if calib_mode not in CALIB_MODES:
        raise ValueError('calib_mode must be one of %s, not %r' % (CALIB_MODES, calib_mode))
    ctx = ctx or mx.cpu()
    if ctx.device_type != 'cpu':
        raise ValueError('optimize() fuses a Mask R-CNN for the CPU (oneDNN), not %s' % ctx)
    check_initialized(net)
    batches = None
    if dtype == 'int8':
        if calib_mode == 'none':
            raise ValueError("an int8 Mask R-CNN is calibrated on images: calib_mode 'naive' "
                             "or 'entropy' with calib_data")
        batches = calibration_batches(calib_data, num_calib_batches, calib_mode, ctx)
    # Example inputs of every block, from the network itself on a small image.
    plain = LeanDetector(net)
    image = mx.nd.zeros((1, 3, 128, 128), ctx=ctx)
    with autograd.predict_mode():
        features = plain.backbone(image)
        rois = mx.nd.array([[0, 8, 8, 72, 88]], ctx=ctx)
        pooled = net.roi_align(rois, *features[:len(net.roi_strides)])
        blocks = {'features': _fused(net.features, [image]),
                  'rpn': _fused(RPNCandidates(net.rpn), [image] + features)}
        split = split_stage(net.top_features, net.roi_align)
        if split is not None:  # C4's proposals: stage 4's first 1x1 convs on the map
            entry, tail = split
            blocks['stage_entry'] = _fused(entry, features[:1])
            blocks['top_features'] = _fused(tail, pool_entry_maps(
                entry(features[0]), rois, net.roi_align, entry.shortcut_pooling))
        elif net.top_features is not None:
            blocks['top_features'] = _fused(net.top_features, [pooled])
        if net.top_features is not None:
            blocks['mask_top_features'] = _fused(net.top_features, [pooled])
            pooled = net.top_features(pooled)
        # the box head as the lean path feeds it (FPN: after its average pool, see box_head)
        blocks['box_features'] = _fused(plain.box_features, [plain.roi_features(rois, features)])
        blocks['mask'] = _fused(SubpixelMaskFeatures(net.mask), [pooled])
        if dtype == 'int8':
            blocks.update(_quantized_blocks(net, plain, split, batches, calib_mode, ctx))
    return OptimizedMaskRCNN(net, dtype, **blocks)


def _quantized_blocks(net, plain, split, batches, calib_mode, ctx, rois_per_image=64):
    """int8 versions of the backbone, of the RPN's convs and of the blocks the RoI
    features go through (C4: stage 4, for the proposals its tail when ``split``
    (``split_stage``'s blocks; the entry on the map, 1% of the work, stays float32), and the
    mask head; FPN: the box head's FCs and the mask head), calibrated on what each block
    receives from the calibration images (the RoIs: each image's best proposals)."""
    inputs = {'features': [[b] for b in batches], 'rpn': [], 'top_features': [],
              'mask_top_features': [], 'box_features': [], 'mask': []}
    for batch in batches:
        features = plain.backbone(batch)
        inputs['rpn'].append([batch] + features)
        proposals, counts = plain.propose(batch, features)
        rois = mx.nd.concat(*[mx.nd.concat(
            mx.nd.full((min(n, rois_per_image), 1), b, ctx=ctx),
            proposals[b, :min(n, rois_per_image)], dim=1) for b, n in enumerate(counts)],
            dim=0)
        pooled = net.roi_align(rois, *features[:len(net.roi_strides)])
        if split is not None:  # the mask head's stage 4 is calibrated on its own
            entry = split[0]
            inputs['top_features'].append(
                pool_entry_maps(entry(features[0]), rois, net.roi_align,
                                entry.shortcut_pooling))
            inputs['mask_top_features'].append([pooled])
        elif net.top_features is not None:
            inputs['top_features'].append([pooled])
        if net.top_features is not None:
            pooled = net.top_features(pooled)
        else:  # FPN: the box head's two FCs (C4's is a global average pool)
            inputs['box_features'].append([plain.roi_features(rois, features)])
        inputs['mask'].append([pooled])
    sources = {'features': net.features, 'rpn': RPNCandidates(net.rpn),
               'top_features': split[1] if split is not None else net.top_features,
               'mask_top_features': net.top_features, 'box_features': plain.box_features,
               'mask': SubpixelMaskFeatures(net.mask)}
    blocks = {}
    for part, calib in inputs.items():
        if calib:  # no top_features in an FPN model
            blocks[part] = _quantized(sources[part], calib, calib_mode, ctx)
    if 'top_features' in blocks and split is None:  # the mask head's copy (LeanDetector)
        inputs, out = cached_graph(blocks['top_features'])
        with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
            warnings.simplefilter('ignore', UserWarning)
            twin = mx.gluon.SymbolBlock(out, inputs,
                                        params=blocks['top_features'].collect_params())
        twin.hybridize(static_alloc=True)
        blocks['mask_top_features'] = twin
    return blocks


def _quantized(block, batches, calib_mode, ctx):
    """``block`` quantized to int8 by oneDNN, calibrated on ``batches`` (lists of its
    inputs)."""
    num_inputs = len(batches[0])
    # The names quantize_net_v2's calibration binds the inputs to: data; data, data0;
    # data0, data1, ... (mxnet.contrib.quantization._DataIterWrapper).
    names = (['data'] if num_inputs == 1 else ['data', 'data0'] if num_inputs == 2 else
             ['data%d' % i for i in range(num_inputs)])
    base = symbol_block(block, num_inputs, names)
    # num_calib_examples counts samples (images, or RoIs), not batches.
    kwargs = dict(quantized_dtype='auto', quantize_mode='smart', calib_mode=calib_mode,
                  calib_data=batches,
                  num_calib_examples=sum(b[0].shape[0] for b in batches), ctx=ctx)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        quantized = quantize_net_v2(base, **kwargs)
    quantized.hybridize(static_alloc=True)
    return quantized
