"""Mask R-CNN inference in stages, run by one orchestration under two output contracts.

:class:`DetectionStages` holds the blocks and the stages shared by every inference path:
the backbone, the RPN's candidate boxes and their NMS, RoI pooling (the extractor's one
entry, which chooses the kernel), the box head with its predictors, the mask head; its
:meth:`~DetectionStages.run` is the one orchestration (backbone -> proposals -> box head and
post-processing -> mask head). Two subclasses differ only in which rows go through the heads
and how the output is selected and padded:

* :class:`LeanDetector`, what :meth:`~.mask_rcnn.MaskRCNN.detect` runs: the box head on the
  valid proposals only, per-class NMS keeping the best ``max_dets`` detections, and the mask
  head on the kept detections only (imperative, between cached graphs). The NMS and the
  RoIAlign then run in the CPU kernels of :mod:`~.fast_nms` and :mod:`~.fast_roi_align`
  (MXNet's values, faster). Its blocks can be replaced by ones with the same inputs and
  outputs: :mod:`gluonseg.model_zoo.optimize` passes fused and quantized graphs of them.
* :class:`RawDetector`, what ``net(x)`` runs (:meth:`~.mask_rcnn.MaskRCNN.hybrid_forward`):
  GluonCV's contract of a fixed number of rows (every proposal through the box head, the
  post-processor's ``max_dets`` rows through the mask head), written for ``mx.nd`` and
  ``mx.sym`` alike so that it hybridizes and exports.

Each stage is a method, so the stages can be timed one by one on the same input
(``scripts/benchmark/mask_rcnn.py``).
"""
import copy
import functools

import mxnet as mx
import numpy as np
from mxnet import autograd

from ...utils.mxnet_compat import layer_kwargs
from . import fast_roi_align
from .heads import select_class_masks
from .split_stage import pool_entry_maps, shortcut_pooling, splitting_block

__all__ = ['DetectionStages', 'LeanDetector', 'RawDetector', 'batch_rois', 'box_head']


class DetectionStages(object):
    """The blocks of a :class:`~.mask_rcnn.MaskRCNN`'s inference and the stages they share.

    Subclasses define which rows the heads see and what is returned: :meth:`propose`,
    :meth:`detect_boxes` and :meth:`detect_masks`. ``F`` (``mx.nd`` or ``mx.sym``) is what
    the stages compute with.

    Parameters
    ----------
    net : MaskRCNN
    **blocks
        Replacements (with the same inputs and outputs) for ``features``, ``top_features``,
        ``rpn``, ``box_features`` or ``mask``; the network's own blocks otherwise, except
        ``rpn``: the RPN up to its NMS, returning its candidate rows (by default the RPN's
        ``proposal_candidates``; a graph of it is an :class:`~.rpn.RPNCandidates`), which
        :meth:`proposals` suppresses.
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
    F = mx.nd

    def __init__(self, net, **blocks):
        unknown = set(blocks) - set(self.PARTS)
        if unknown:
            raise ValueError('%s: unknown blocks %s (known: %s)'
                             % (type(self).__name__, sorted(unknown), ', '.join(self.PARTS)))
        self.net = net
        for part in ('features', 'top_features', 'mask'):
            setattr(self, part, blocks[part] if part in blocks else getattr(net, part))
        head, self.pools_box_head = box_head(net)
        self.box_features = blocks.get('box_features', head)
        # The RPN's candidate rows: its own blocks by default.
        self.rpn = blocks['rpn'] if 'rpn' in blocks else functools.partial(
            net.rpn.proposal_candidates, self.F)
        self.mask_top_features = blocks.get('mask_top_features', self.top_features)
        self.stage_entry = blocks.get('stage_entry')
        if self.stage_entry is not None:
            first = splitting_block(net.top_features, net.roi_align)
            if first is None:
                raise ValueError('%s: stage_entry needs a C4 model whose stage 4 splits '
                                 '(see split_stage.splitting_block)' % type(self).__name__)
            self.shortcut_pooling = shortcut_pooling(first, net.roi_align)

    def run(self, x, score_thresh=None, max_dets=None):
        """The inference pipeline: ids, scores, boxes and masks of the detections in ``x``
        (what each contract's rows and padding make of them)."""
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

    def proposals(self, x, features):
        """The RPN's proposal scores (B, post_nms, 1) and boxes (B, post_nms, 4), best
        first, -1 rows after the valid ones."""
        rpn_maps = features if self.stage_entry is None else features[:1]
        return self.net.rpn.proposal.select(self.F, self.rpn(x, *rpn_maps))

    def box_predictions(self, rois, features):
        """Class logits (R, C + 1) and box offsets (R, 4C) of RoIs (R, 5)."""
        box_feat = self.box_features(self.roi_features(rois, features))
        return self.net.class_predictor(box_feat), self.net.box_predictor(box_feat)

    def roi_features(self, rois, features, for_masks=False):
        """Pooled features of RoIs (R, 5) for the box head (the proposals) or, with
        ``for_masks``, the mask head (the kept detections); C4: through ``top_features``
        or ``mask_top_features``.

        The network's :class:`~.roi_align.RoIAlignExtractor` pools them
        (:meth:`~.roi_align.RoIAlignExtractor.pool`: FPN RoIs on their own level only, in
        the kernel it chooses), for the box head with the head's leading average pool, if
        any (:func:`box_head`).

        C4 with ``stage_entry``: the proposals go through the split stage 4
        (:mod:`~.split_stage`), exact only for RoIs on the map, which the RPN's clipping
        to the image ensures. The detections' boxes are not clipped (the box offsets can
        move them off the image), so the mask head takes the whole stage 4.
        """
        net = self.net
        if self.stage_entry is not None and not for_masks:
            return self.top_features(
                *pool_entry_maps(features[1:3], rois, net.roi_align, self.shortcut_pooling))
        # _BackboneMaps: the maps' channels-last copies, shared by the box and the mask head
        maps = features.roi_maps if isinstance(features, _BackboneMaps) else \
            features[:len(net.roi_strides)]
        pooled = net.roi_align.pool(rois, maps, avg_pool=self.pools_box_head and not for_masks)
        if net.top_features is None:
            return pooled
        return (self.mask_top_features if for_masks else self.top_features)(pooled)


class LeanDetector(DetectionStages):
    """Lean inference of a :class:`~.mask_rcnn.MaskRCNN` (:meth:`~.mask_rcnn.MaskRCNN.detect`):
    the heads on the valid proposals and the kept detections only; the parameters as for
    :class:`DetectionStages`."""

    def __call__(self, x, score_thresh=0.001, max_dets=100):
        """What :meth:`~.mask_rcnn.MaskRCNN.detect` returns: ids, scores, boxes, masks."""
        with autograd.predict_mode():
            return self.run(x, score_thresh, max_dets)

    def propose(self, x, features):
        """Proposals (B, post_nms, 4), best first, and the number of valid ones per image
        (the rest are -1 rows)."""
        scores, proposals = self.proposals(x, features)
        counts = (scores.reshape((x.shape[0], -1)) >= 0).sum(axis=1).asnumpy().astype(int)
        return proposals, counts

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
        class_logits, box_deltas = self.box_predictions(F.concat(*rois, dim=0), features)
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


class RawDetector(DetectionStages):
    """GluonCV's raw contract (``net(x)``, :meth:`~.mask_rcnn.MaskRCNN.hybrid_forward`):
    every one of the RPN's ``post_nms`` proposals through the box head, the
    post-processor's ``max_dets`` rows (-1 after the detections) through the mask head, the
    mask of each row's class (0.5 in an empty row); with ``F`` ``mx.nd`` or ``mx.sym``."""

    def __init__(self, net, F):
        self.F = F
        super().__init__(net)

    def propose(self, x, features):
        """Proposals (B, post_nms, 4), and None: every row goes on."""
        return self.F.stop_gradient(self.proposals(x, features)[1]), None

    def detect_boxes(self, features, proposals, counts=None, score_thresh=None,
                     max_dets=None):
        """ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4) of the post-processor (K its
        ``max_dets``) from the box head on every proposal, and None."""
        F, net = self.F, self.net
        num_proposals = net.rpn.proposal.post_nms
        class_logits, box_deltas = self.box_predictions(batch_rois(F, proposals), features)
        ids, scores, boxes = net.postprocess(
            F, class_logits.reshape((-1, num_proposals, net.num_class + 1)),
            box_deltas.reshape((-1, num_proposals, net.num_class * 4)), proposals)
        return ids, scores, boxes, None

    def detect_masks(self, features, ids, boxes, kept=None):
        """Mask probabilities (B, K, M, M) of every row's class."""
        F, net = self.F, self.net
        pooled = self.roi_features(batch_rois(F, F.stop_gradient(boxes)), features,
                                   for_masks=True)
        logits = self.mask(pooled).reshape((-4, -1, net.postprocess.max_dets, -2))
        return F.sigmoid(select_class_masks(F, logits, ids, net.num_class))


def batch_rois(F, boxes):
    """(B, N, 4) boxes -> (B * N, 5) RoIs ``batch_index, x1, y1, x2, y2``."""
    first = F.slice_axis(boxes, axis=-1, begin=0, end=1)
    batch_index = F.broadcast_like(
        F.contrib.arange_like(boxes, axis=0).reshape((-1, 1, 1)), first)
    return F.concat(batch_index, boxes, dim=-1).reshape((-3, 0))


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
            or layer_kwargs(first) != layer_kwargs(mx.gluon.nn.AvgPool2D(3, 2, 1))):
        return head, False
    return head[1:], True


class _BackboneMaps(list):
    """The backbone's maps, with ``roi_maps``: the first ``count`` (those the RoIs are
    pooled from) as :class:`~.fast_roi_align.ChannelsLastMaps`, whose copies the box and
    the mask head share."""

    def __init__(self, features, count):
        super().__init__(features)
        self.roi_maps = fast_roi_align.ChannelsLastMaps(features[:count])
