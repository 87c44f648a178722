"""Region proposal network: a shared conv head scoring and refining anchors, and the layer
turning its outputs into proposals.

``RPNHead``      3x3 conv (+ReLU) -> 1x1 objectness logits (A) and 1x1 box offsets (4A).
``ProposalLayer`` decode offsets against the anchors, clip to the image, drop boxes smaller
                 than ``min_size``, keep the ``pre_nms`` best, NMS, keep ``post_nms``.
``SingleLevelRPN`` the C4 network: head + one anchor grid (keys ``conv1.0``, ``score``,
                 ``loc``, ``anchor_generator.anchors``).
``MultiLevelRPN`` the FPN network: one head shared by the pyramid levels, one anchor grid
                 per level (keys ``rpn_head.*``, ``anchor_generator.{i}.anchors``); the
                 ``pre_nms`` cut and the NMS run over all levels together.
``RPNCandidates`` either network up to its NMS (lean inference runs the NMS apart).
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .boxes import clip_to_image, nms

__all__ = ['RPNHead', 'ProposalLayer', 'SingleLevelRPN', 'MultiLevelRPN', 'RPNCandidates']


class RPNHead(nn.HybridBlock):
    """Objectness logits (B, H*W*A, 1) and box offsets (B, H*W*A, 4) of a feature map.

    Rows are ordered as the anchors of :class:`AnchorGenerator`: cells row-major, then the
    A anchors of a cell.

    Parameters
    ----------
    num_anchors : int
        Anchors per cell (A).
    channels : int
        Width of the 3x3 conv (1024 in every published model).
    in_channels : int
        Channels of the feature map (0: inferred at the first call).
    """

    def __init__(self, num_anchors, channels=1024, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        init = dict(weight_initializer='normal')  # N(0, 0.01), the usual RPN init
        with self.name_scope():
            self.conv1 = nn.HybridSequential()
            self.conv1.add(nn.Conv2D(channels, 3, padding=1, in_channels=in_channels, **init),
                           nn.Activation('relu'))
            self.score = nn.Conv2D(num_anchors, 1, in_channels=channels, **init)
            self.loc = nn.Conv2D(num_anchors * 4, 1, in_channels=channels, **init)

    def hybrid_forward(self, F, x):
        x = self.conv1(x)
        logits = self.score(x).transpose((0, 2, 3, 1)).reshape((0, -1, 1))
        deltas = self.loc(x).transpose((0, 2, 3, 1)).reshape((0, -1, 4))
        return logits, deltas


class ProposalLayer(object):
    """Proposals from anchors and the RPN's outputs (no parameters, no gradient).

    Parameters
    ----------
    nms_thresh : float
        IoU above which a lower-scoring proposal is suppressed.
    train_pre_nms, train_post_nms, test_pre_nms, test_post_nms : int
        Best-scoring boxes entering NMS, and proposals kept after it, while training
        (``autograd.is_training()``) and at test time.
    min_size : float
        Boxes narrower or lower than this (after clipping to the image; ``x2 - x1 + 1``)
        are dropped.
    stds, clip :
        Of the RPN :class:`BoxCoder`.
    """

    def __init__(self, nms_thresh=0.7, train_pre_nms=12000, train_post_nms=2000,
                 test_pre_nms=6000, test_post_nms=1000, min_size=1, stds=(1., 1., 1., 1.),
                 clip=None):
        self.nms_thresh = nms_thresh
        self.train_pre_nms, self.train_post_nms = train_pre_nms, train_post_nms
        self.test_pre_nms, self.test_post_nms = test_pre_nms, test_post_nms
        self.min_size = min_size
        self.coder = BoxCoder(stds=stds, clip=clip)

    @property
    def post_nms(self):
        """Proposals per image in the current mode."""
        return self.train_post_nms if autograd.is_training() else self.test_post_nms

    def candidates(self, F, anchors, logits, deltas, image):
        """(B, N, 5) rows ``score, x1, y1, x2, y2`` before NMS; boxes too small get -1 rows."""
        boxes = clip_to_image(F, self.coder.decode(F, deltas, anchors), image)
        x1, y1, x2, y2 = F.split(boxes, axis=-1, num_outputs=4)
        # Sizes count both end pixels here (the published models' convention), so with
        # min_size 1 only boxes inverted by more than a pixel are dropped.
        small = (x2 - x1 + 1 < self.min_size) + (y2 - y1 + 1 < self.min_size)
        scores = F.where(small, F.ones_like(small) * -1, F.sigmoid(logits))
        boxes = F.where(F.repeat(small, repeats=4, axis=-1), F.ones_like(boxes) * -1, boxes)
        return F.concat(scores, boxes, dim=-1)

    def select(self, F, candidates):
        """Scores (B, post_nms, 1) and boxes (B, post_nms, 4) of the proposals, best first;
        when fewer survive NMS the remaining rows are -1."""
        training = autograd.is_training()
        pre_nms = self.train_pre_nms if training else self.test_pre_nms
        # Small images have fewer anchors than post_nms: append invalid rows so that the
        # output always has post_nms rows (they sort last and change nothing else).
        padding = F.broadcast_axis(F.ones_like(candidates.slice_axis(axis=1, begin=0, end=1)),
                                   axis=1, size=self.post_nms) * -1
        kept = nms(F, F.concat(candidates, padding, dim=1), self.nms_thresh, topk=pre_nms,
                   max_out=self.post_nms)
        return (F.slice_axis(kept, axis=-1, begin=0, end=1),
                F.slice_axis(kept, axis=-1, begin=1, end=None))


def _stop(F, *arrays):
    return [F.stop_gradient(a) for a in arrays]


class SingleLevelRPN(RPNHead):
    """RPN on one feature map (the C4 models, stride 16, 15 anchors per cell).

    Calling it with the image batch and the feature map returns the proposal scores
    (B, post_nms, 1) and boxes (B, post_nms, 4); the raw logits and offsets and the anchors
    are returned too while training.

    Parameters
    ----------
    stride, base_size, ratios, scales, alloc_size :
        Of the :class:`AnchorGenerator`.
    channels, in_channels : int
        Of the :class:`RPNHead`.
    **proposal_kwargs
        Of the :class:`ProposalLayer`.
    """

    def __init__(self, stride=16, base_size=16, ratios=(0.5, 1, 2), scales=(2, 4, 8, 16, 32),
                 alloc_size=(128, 128), channels=1024, in_channels=0, **proposal_kwargs):
        super().__init__(len(ratios) * len(scales), channels, in_channels)
        with self.name_scope():
            self.anchor_generator = AnchorGenerator(stride, alloc_size, base_size, ratios,
                                                    scales)
        self.proposal = ProposalLayer(**proposal_kwargs)

    def hybrid_forward(self, F, image, feature):
        anchors, logits, deltas, candidates = self._outputs(F, image, feature)
        with autograd.pause():
            scores, boxes = self.proposal.select(F, candidates)
        if autograd.is_training():
            return scores, boxes, logits, deltas, anchors
        return scores, boxes

    def proposal_candidates(self, F, image, feature):
        """The rows (B, N, 5) ``score, x1, y1, x2, y2`` that ``self.proposal.select``
        turns into proposals (NMS), one per anchor."""
        return self._outputs(F, image, feature)[3]

    def _outputs(self, F, image, feature):
        anchors = self.anchor_generator(feature)
        logits, deltas = RPNHead.hybrid_forward(self, F, feature)
        with autograd.pause():
            candidates = self.proposal.candidates(F, anchors, *_stop(F, logits, deltas),
                                                  image)
        return anchors, logits, deltas, candidates

    def forward_train(self, image, feature):
        """Training pass, run imperatively (the proposal counts depend on the mode, which a
        cached graph would freeze): logits (B, N, 1) and offsets (B, N, 4) with gradients,
        anchors (1, N, 4), and the training proposals' scores (B, post_nms, 1) and boxes
        (B, post_nms, 4)."""
        anchors, logits, deltas, candidates = self._outputs(mx.nd, image, feature)
        with autograd.pause():
            scores, boxes = self.proposal.select(mx.nd, candidates)
        return logits, deltas, anchors, scores, boxes


class MultiLevelRPN(nn.HybridBlock):
    """RPN on a feature pyramid (the FPN models): one :class:`RPNHead` shared by all levels,
    level i with anchors of stride ``strides[i]`` and the single scale ``scales[i]``.

    The anchor grids start at ``alloc_size`` for the first level and halve per level (not
    below 16 cells). Called with the image batch and the pyramid levels; returns what
    :class:`SingleLevelRPN` returns, with the logits, offsets and anchors of all levels
    concatenated.
    """

    def __init__(self, strides=(4, 8, 16, 32, 64), base_size=16, ratios=(0.5, 1, 2),
                 scales=(2, 4, 8, 16, 32), alloc_size=(384, 384), channels=1024, in_channels=0,
                 **proposal_kwargs):
        super().__init__()
        if len(strides) != len(scales):
            raise ValueError('MultiLevelRPN needs one anchor scale per level: %d strides, '
                             '%d scales' % (len(strides), len(scales)))
        with self.name_scope():
            self.anchor_generator = nn.HybridSequential()
            size = tuple(alloc_size)
            for stride, scale in zip(strides, scales):
                self.anchor_generator.add(AnchorGenerator(stride, size, base_size, ratios,
                                                          (scale,)))
                size = (max(size[0] // 2, 16), max(size[1] // 2, 16))
            self.rpn_head = RPNHead(len(ratios), channels, in_channels)
        self.proposal = ProposalLayer(**proposal_kwargs)

    def hybrid_forward(self, F, image, *features):
        anchors, logits, deltas, candidates = self._outputs(F, image, features)
        with autograd.pause():
            scores, boxes = self.proposal.select(F, candidates)
        if autograd.is_training():
            return scores, boxes, logits, deltas, anchors
        return scores, boxes

    def proposal_candidates(self, F, image, *features):
        """The rows (B, N, 5) of all levels that ``self.proposal.select`` turns into
        proposals, as :meth:`SingleLevelRPN.proposal_candidates`."""
        # Only the candidates are concatenated (imperatively the rest would be copied too).
        return F.concat(*self._level_outputs(F, image, features)[3], dim=1)

    def _outputs(self, F, image, features):
        """Anchors, logits, offsets and candidate rows, the levels concatenated."""
        return [F.concat(*parts, dim=1) for parts in self._level_outputs(F, image, features)]

    def _level_outputs(self, F, image, features):
        """Lists of each level's anchors, logits, offsets and candidate rows."""
        if len(features) != len(self.anchor_generator):
            raise ValueError('MultiLevelRPN got %d feature maps for %d levels'
                             % (len(features), len(self.anchor_generator)))
        anchors, logits, deltas, candidates = [], [], [], []
        for generator, feature in zip(self.anchor_generator, features):
            anchors.append(generator(feature))
            level_logits, level_deltas = self.rpn_head(feature)
            logits.append(level_logits)
            deltas.append(level_deltas)
            with autograd.pause():
                candidates.append(self.proposal.candidates(
                    F, anchors[-1], *_stop(F, level_logits, level_deltas), image))
        return anchors, logits, deltas, candidates

    def forward_train(self, image, *features):
        """Training pass, run imperatively; returns what
        :meth:`SingleLevelRPN.forward_train` returns, levels concatenated."""
        anchors, logits, deltas, candidates = self._outputs(mx.nd, image, features)
        with autograd.pause():
            scores, boxes = self.proposal.select(mx.nd, candidates)
        return logits, deltas, anchors, scores, boxes


class RPNCandidates(nn.HybridBlock):
    """An RPN's inference up to NMS, as a block of its own: called like the RPN, it returns
    its candidate rows (B, N, 5) (``rpn.proposal_candidates``); ``rpn.proposal.select``
    makes the proposals from them. Lean inference runs this part as a (fused, quantized)
    graph and the NMS imperatively, where :mod:`~.fast_nms` can take it. No parameters of
    its own: it shares the RPN's."""

    def __init__(self, rpn):
        super().__init__()
        self.rpn = rpn

    def hybrid_forward(self, F, image, *features):
        return self.rpn.proposal_candidates(F, image, *features)
