"""Lean Mask R-CNN inference in stages, and its oneDNN-fused (and int8) version.

:class:`LeanDetector` is what :meth:`~.mask_rcnn.MaskRCNN.detect` runs: the backbone, the
RPN, the box head on the valid proposals only, per-class NMS keeping the best ``max_dets``
detections, and the mask head on the kept detections only. The RPN runs up to its
candidate boxes (``proposal_candidates``), then its NMS imperatively, so that with numba
every NMS and the RoIAlign run in the kernels of :mod:`~.fast_nms` and
:mod:`~.fast_roi_align` (MXNet's values, several times faster). Each stage is a method, so
the stages can be timed one by one on the same input (``scripts/benchmark/mask_rcnn.py``).

:func:`optimize_mask_rcnn` (what ``gluonseg.optimize(net)`` does for a Mask R-CNN) runs
the same stages with the convolutional blocks (backbone, RPN, box and mask heads)
rebuilt as ``SymbolBlock``\\ s that share the network's parameters and are partitioned
for oneDNN (``optimize_for(backend='MKLDNN')``): each Convolution -> BatchNorm -> ReLU
(and the residual ``+``) runs as one fused convolution, the frozen BatchNorm folded into
the weights in float32. The detections are those of ``net.detect`` up to float rounding
(scores within 4e-5 relative on the golden weights); the mask head's transposed conv runs
as a 1x1 conv (:class:`SubpixelMaskFeatures`); in C4 ResNet-50/101 models stage 4's first
1x1 convs run once on the stage-3 map instead of on every proposal (:mod:`~.split_stage`: a
quarter fewer multiply-adds on the proposals, the same values). With ``dtype='int8'`` the
backbone (C4: stem to stage 3; FPN: the ResNet and the pyramid), the RPN's convs (FPN: about
half of the float32 time, most of it on P2), the box head (C4: stage 4 on the RoIs; FPN: its
two FCs) and the mask head are quantized by oneDNN (VNNI), calibrated on a few images; the
box predictors and the mask predictor stay float32.
Faster, but the detections change: on Shapes-trained FPN and C4 models the mask AP held
(within 0.6 points) while about 1 in 8 confident detections moved, and C4's box AP fell by
0.4 (naive calibration) and 1.5 points (entropy) (``docs/deploy.md``); the COCO AP of the
published weights in int8 was not measured (``eval_mask_rcnn.py --optimize int8`` does
it).
"""
import copy
import functools
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd

from . import fast_roi_align
from .roi_align import fpn_levels
from .rpn import RPNCandidates
from .split_stage import pool_entry_maps, shortcut_pooling, split_stage, splitting_block

__all__ = ['LeanDetector', 'OptimizedMaskRCNN', 'SubpixelMaskFeatures', 'box_head',
           'optimize_mask_rcnn']


class LeanDetector(object):
    """The stages of lean inference of a :class:`~.mask_rcnn.MaskRCNN`.

    Parameters
    ----------
    net : MaskRCNN
    **blocks
        Replacements (with the same inputs and outputs) for ``features``, ``top_features``,
        ``rpn``, ``box_features`` or ``mask``; the network's own blocks otherwise, except
        ``rpn``: the RPN up to its NMS, returning its candidate rows (by default the RPN's
        ``proposal_candidates``; a graph of it is an :class:`~.rpn.RPNCandidates`), which
        :meth:`propose` suppresses imperatively (with :mod:`~.fast_nms` when it can).
        ``mask_top_features`` is C4's stage 4 for the mask head (default: ``top_features``):
        a block of its own keeps the shapes each one sees steady (about 1000 proposals,
        then at most 100 detections), which a cached graph reallocates for at every change.
        ``stage_entry``: C4 only, a :class:`~.split_stage.StageEntry` (or a graph of one)
        run on the stage-3 map; ``top_features`` is then a :class:`~.split_stage.StageTail`
        taking its two maps pooled on the proposals, ``mask_top_features`` stays stage 4
        (see :meth:`roi_features`). ``box_features`` starts after the 3x3/2 average pool
        of an FPN box head (:func:`box_head`), which the RoI pooling does.
    """

    PARTS = ('features', 'stage_entry', 'top_features', 'mask_top_features', 'rpn',
             'box_features', 'mask')

    def __init__(self, net, **blocks):
        unknown = set(blocks) - set(self.PARTS)
        if unknown:
            raise ValueError('LeanDetector: unknown blocks %s (known: %s)'
                             % (sorted(unknown), ', '.join(self.PARTS)))
        self.net = net
        for part in ('features', 'top_features', 'mask'):
            setattr(self, part, blocks[part] if part in blocks else getattr(net, part))
        head, self.pools_box_head = box_head(net)
        self.box_features = blocks.get('box_features', head)
        # The RPN's candidate rows: its own blocks, run imperatively by default.
        self.rpn = blocks['rpn'] if 'rpn' in blocks else functools.partial(
            net.rpn.proposal_candidates, mx.nd)
        self.mask_top_features = blocks.get('mask_top_features', self.top_features)
        self.stage_entry = blocks.get('stage_entry')
        if self.stage_entry is not None:
            first = splitting_block(net.top_features, net.roi_align)
            if first is None:
                raise ValueError('LeanDetector: stage_entry needs a C4 model whose stage 4 '
                                 'splits (see split_stage.splitting_block)')
            self.shortcut_pooling = shortcut_pooling(first, net.roi_align)

    def __call__(self, x, score_thresh=0.001, max_dets=100):
        """What :meth:`~.mask_rcnn.MaskRCNN.detect` returns: ids, scores, boxes, masks."""
        with autograd.predict_mode():
            features = self.backbone(x)
            proposals, counts = self.propose(x, features)
            ids, scores, boxes, kept = self.detect_boxes(features, proposals, counts,
                                                         score_thresh, max_dets)
            return ids, scores, boxes, self.detect_masks(features, ids, boxes, kept)

    def backbone(self, x):
        """The feature maps (a list: one map for C4, P2..P6 for FPN; with ``stage_entry``,
        C4's map is followed by that block's two maps)."""
        features = self.features(x)
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        if self.stage_entry is not None:
            features.extend(self.stage_entry(features[0]))
        return _BackboneMaps(features, len(self.net.roi_strides))

    def propose(self, x, features):
        """Proposals (B, post_nms, 4), best first, and the number of valid ones per image
        (the rest are -1 rows)."""
        rpn_maps = features if self.stage_entry is None else features[:1]
        scores, proposals = self.net.rpn.proposal.select(mx.nd, self.rpn(x, *rpn_maps))
        counts = (scores.reshape((x.shape[0], -1)) >= 0).sum(axis=1).asnumpy().astype(int)
        return proposals, counts

    def roi_features(self, rois, features, for_masks=False):
        """Pooled features of RoIs (R, 5) for the box head (the proposals) or, with
        ``for_masks``, the mask head (the kept detections); C4: through ``top_features``
        or ``mask_top_features``.

        FPN: each RoI is pooled on its own level only (the RoIs grouped by level here),
        which gives the values of :class:`~.roi_align.RoIAlignExtractor` without pooling
        every RoI on every level. On the CPU with numba installed, the pooling runs in
        :mod:`~.fast_roi_align` (the same values, several times faster). For the box head
        it includes the head's leading average pool, if any (:func:`box_head`).

        C4 with ``stage_entry``: the proposals go through the split stage 4
        (:mod:`~.split_stage`), exact only for RoIs on the map, which the RPN's clipping
        to the image ensures. The detections' boxes are not clipped (the box offsets can
        move them off the image), so the mask head takes the whole stage 4.
        """
        net = self.net
        extractor = net.roi_align
        if self.stage_entry is not None and not for_masks:
            return self.top_features(
                *pool_entry_maps(features[1:3], rois, extractor, self.shortcut_pooling))
        maps = features[:len(net.roi_strides)]
        if extractor.gluoncv_quirk:
            pooled = extractor(rois, *maps)
        else:
            if len(maps) == 1:
                level_rows = [np.arange(rois.shape[0])]
            else:
                levels = fpn_levels(mx.nd, rois, extractor.min_level,
                                    extractor.min_level + len(maps) - 1).asnumpy()
                level_rows = [np.flatnonzero(levels == extractor.min_level + i)
                              for i in range(len(maps))]
            maps = getattr(features, 'roi_maps', maps)  # copies shared by box and mask heads
            pooled = fast_roi_align.roi_align_by_level(
                maps, rois, level_rows, extractor.output_size[0],
                [1.0 / stride for stride in extractor.strides], extractor.sample_ratio,
                avg_pool=self.pools_box_head and not for_masks)
        if net.top_features is None:
            return pooled
        return (self.mask_top_features if for_masks else self.top_features)(pooled)

    def detect_boxes(self, features, proposals, counts, score_thresh, max_dets):
        """Box head on the valid proposals, then per-class NMS and the best ``max_dets``
        per image, those scoring at least ``score_thresh`` kept.

        Returns ids (B, max_dets, 1), scores (B, max_dets, 1), boxes (B, max_dets, 4) (-1
        beyond the kept rows) and ``kept``, a list of (image index, number kept).
        """
        F = mx.nd
        net = self.net
        batch = len(counts)
        ctx = proposals.context
        ids = F.full((batch, max_dets, 1), -1, ctx=ctx)
        out_scores = F.full((batch, max_dets, 1), -1, ctx=ctx)
        boxes = F.full((batch, max_dets, 4), -1, ctx=ctx)
        rois = [F.concat(F.full((n, 1), b, ctx=ctx),
                         F.slice_axis(proposals[b], axis=0, begin=0, end=n), dim=1)
                for b, n in enumerate(counts) if n]
        if not rois:
            return ids, out_scores, boxes, []
        box_feat = self.box_features(self.roi_features(F.concat(*rois, dim=0), features))
        class_logits = net.class_predictor(box_feat)
        box_deltas = net.box_predictor(box_feat)
        kept = []
        start = 0
        for b, n in enumerate(counts):
            if not n:
                continue
            rows = slice(start, start + n)
            start += n
            post = copy.copy(net.postprocess)
            post.max_dets = min(max_dets, n * net.num_class)
            b_ids, b_scores, b_boxes = post(
                F, class_logits[rows].expand_dims(0), box_deltas[rows].expand_dims(0),
                F.slice_axis(proposals[b], axis=0, begin=0, end=n).expand_dims(0))
            keep = np.flatnonzero((b_ids[0, :, 0].asnumpy() >= 0) &
                                  (b_scores[0, :, 0].asnumpy() >= score_thresh))
            if not len(keep):
                continue
            index = F.array(keep, ctx=ctx)
            k = len(keep)
            ids[b, :k] = b_ids[0].take(index)
            out_scores[b, :k] = b_scores[0].take(index)
            boxes[b, :k] = b_boxes[0].take(index)
            kept.append((b, k))
        return ids, out_scores, boxes, kept

    def detect_masks(self, features, ids, boxes, kept):
        """Mask probabilities (B, max_dets, M, M) of the kept detections' classes (0 in
        the other rows), the mask head run on the kept detections only."""
        F = mx.nd
        net = self.net
        batch, max_dets = ids.shape[:2]
        ctx = ids.context
        masks = F.zeros((batch, max_dets, net.mask_size, net.mask_size), ctx=ctx)
        if not kept:
            return masks
        rois = F.concat(*[F.concat(F.full((k, 1), b, ctx=ctx), boxes[b, :k], dim=1)
                          for b, k in kept], dim=0)
        class_ids = F.concat(*[ids[b, :k, 0] for b, k in kept], dim=0)
        probabilities = F.sigmoid(self.class_mask_logits(
            self.roi_features(rois, features, for_masks=True), class_ids))
        start = 0
        for b, k in kept:
            masks[b, :k] = probabilities[start:start + k]
            start += k
        return masks

    def class_mask_logits(self, pooled, class_ids):
        """The mask logits (R, M, M) of each RoI's class (``class_ids`` (R,)) from its
        pooled features."""
        logits = self.mask(pooled)
        pick = mx.nd.stack(mx.nd.arange(logits.shape[0], ctx=logits.context), class_ids)
        return mx.nd.gather_nd(logits, pick)


def box_head(net):
    """``(block, pooled)``: the box head that :meth:`LeanDetector.roi_features` feeds.

    An FPN ResNet-50/101 box head starts with a 3x3/2 average pool (14x14 RoI features ->
    7x7). The RoI pooling does it (``fast_roi_align``'s ``avg_pool``: at 1000 proposals
    the 14x14 features, 200 MB, are never written), so the block is the head after it and
    ``pooled`` is True. Otherwise (C4, a head without the pool, GluonCV's RoIAlign quirk)
    the whole head and False."""
    head = net.box_features
    first = head[0] if isinstance(head, mx.gluon.nn.HybridSequential) and len(head) else None
    if (net.roi_align.gluoncv_quirk or not isinstance(first, mx.gluon.nn.AvgPool2D)
            or first._kwargs != mx.gluon.nn.AvgPool2D(3, 2, 1)._kwargs):
        return head, False
    return head[1:], True


class _BackboneMaps(list):
    """The backbone's maps, with ``roi_maps``: the first ``count`` (those the RoIs are
    pooled from) as :class:`~.fast_roi_align.ChannelsLastMaps`, whose copies the box and
    the mask head share."""

    def __init__(self, features, count):
        super().__init__(features)
        self.roi_maps = fast_roi_align.ChannelsLastMaps(features[:count])


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
        """As :meth:`LeanDetector.class_mask_logits`: the predictor (a 1x1 conv) is a dot
        product per output cell, taken here with the RoI's class's weights only."""
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
        from .predict import predict_instances
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


def _symbol_block(block, num_inputs, input_names=None):
    """``block``'s inference graph as a SymbolBlock sharing its parameters (inputs named
    ``input_names``, by default ``data, data1, data2, ...``)."""
    input_names = input_names or ['data' if i == 0 else 'data%d' % i for i in range(num_inputs)]
    inputs = [mx.sym.var(name) for name in input_names]
    with autograd.predict_mode():
        out = block(*inputs)
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group(list(out))
    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.simplefilter('ignore', UserWarning)
        return mx.gluon.SymbolBlock(out, inputs, params=block.collect_params())


def _fused(block, example):
    """``block`` partitioned for oneDNN (fused conv + BN + ReLU + add), run once on
    ``example`` (a list of NDArrays)."""
    fused = _symbol_block(block, len(example))
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Cannot decide type')
        fused.optimize_for(*example, backend='MKLDNN', static_alloc=True)
    return fused


def optimize_mask_rcnn(net, dtype='float32', calib_data=None, calib_mode='naive',
                       num_calib_batches=4, ctx=None):
    """A faster lean-inference version of a Mask R-CNN (see the module docstring).

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
    from ..optimize import CALIB_MODES, _calibration_batches, _check_initialized
    if dtype not in ('float32', 'int8'):
        raise ValueError("a Mask R-CNN optimizes to dtype 'float32' or 'int8', not %r"
                         % (dtype,))
    if calib_mode not in CALIB_MODES:
        raise ValueError('calib_mode must be one of %s, not %r' % (CALIB_MODES, calib_mode))
    ctx = ctx or mx.cpu()
    if ctx.device_type != 'cpu':
        raise ValueError('optimize() fuses a Mask R-CNN for the CPU (oneDNN), not %s' % ctx)
    _check_initialized(net)
    batches = None
    if dtype == 'int8':
        if calib_mode == 'none':
            raise ValueError("an int8 Mask R-CNN is calibrated on images: calib_mode 'naive' "
                             "or 'entropy' with calib_data")
        batches = _calibration_batches(calib_data, num_calib_batches, calib_mode, ctx)
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
        inputs, out = blocks['top_features']._cached_graph
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
    from mxnet.contrib.quantization import quantize_net_v2
    num_inputs = len(batches[0])
    # The names quantize_net_v2's calibration binds the inputs to: data; data, data0;
    # data0, data1, ... (mxnet.contrib.quantization._DataIterWrapper).
    names = (['data'] if num_inputs == 1 else ['data', 'data0'] if num_inputs == 2 else
             ['data%d' % i for i in range(num_inputs)])
    base = _symbol_block(block, num_inputs, names)
    # num_calib_examples counts samples (images, or RoIs), not batches.
    kwargs = dict(quantized_dtype='auto', quantize_mode='smart', calib_mode=calib_mode,
                  calib_data=batches,
                  num_calib_examples=sum(b[0].shape[0] for b in batches), ctx=ctx)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        quantized = quantize_net_v2(base, **kwargs)
    quantized.hybridize(static_alloc=True)
    return quantized
