"""Mask R-CNN (C4 and FPN) composed of the parts in this package, and the six published
COCO models.

Inference (``net(x)`` on a normalized (B, 3, H, W) batch) returns GluonCV's raw contract:

* ``ids`` (B, K, 1) float class index 0..C-1, -1 for an empty row;
* ``scores`` (B, K, 1), best first (-1 for an empty row);
* ``boxes`` (B, K, 4) x1, y1, x2, y2 in the pixels of ``x`` (not clipped to the image);
* ``masks`` (B, K, M, M) mask probabilities of each row's class inside its box (0.5 for an
  empty row), M = 14 (C4, FPN ResNet-18) or 28 (FPN ResNet-50/101).

K = 1000 (at most the RPN's test-time proposals). Images in one batch share the padded size
of ``x``; the published models were evaluated one image at a time (short side 800, long
side at most 1333). ``net.predict(image)`` does that resizing and returns detections in the
image's own pixels with full-size masks (:mod:`.predict`).

Weight files: ``save_parameters`` writes GluonCV's published layout, anchors included. C4
models use structural names (``features.4.0.conv1.weight``); the FPN backbone and pyramid
use GluonCV's MXNet symbol names (``features.resnetv1b_layers1_conv0_weight``), translated
by :class:`~.fpn.FPNFeatures`. Published files therefore load strictly through
``gluonseg.get_model(name, pretrained=True)``, and saved files load back.

Training: while recording (``autograd.record()``), ``net(x, gt_boxes, gt_ids, gt_masks)``
samples anchors and RoIs, computes their targets and returns a :class:`MaskRCNNTrainOutput`
for :class:`~.losses.MaskRCNNLoss` (see :meth:`MaskRCNN.forward_train`). The published
recipe trains everything but the backbone's stem, first stage and BatchNorm layers
(:meth:`MaskRCNN.freeze_backbone`). :meth:`MaskRCNN.reset_class` adapts a trained model to
other classes.
"""
from collections import namedtuple

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from ...data.classes import COCO_INSTANCE_CLASSES
from ...utils.mxnet_compat import child_blocks, has_data, hybridize_flags, is_hybridized
from ..segbase import build_backbone, initialize_keeping_values
from .fpn import FPNFeatures
from .heads import MaskHead, box_predictors, fpn_box_features
from .inference import LeanDetector, RawDetector
from .mask_target import MaskTargetGenerator
from .postprocess import DetectionPostProcessor
from .predict import predict_instances
from .rcnn_target import RCNNTargetSampler
from .roi_align import RoIAlignExtractor
from .rpn import MultiLevelRPN, SingleLevelRPN
from .rpn_target import RPNTargetGenerator

__all__ = ['MaskRCNN', 'MaskRCNNTrainOutput', 'mask_rcnn', 'MASK_RCNN_CONFIGS']

MaskRCNNTrainOutput = namedtuple('MaskRCNNTrainOutput', [
    'rpn_logits', 'rpn_deltas', 'rpn_cls_targets', 'rpn_box_targets', 'rpn_box_masks',
    'cls_logits', 'cls_targets', 'box_pred', 'box_targets', 'mask_logits', 'mask_targets',
    'rois'], defaults=(None,))
MaskRCNNTrainOutput.__doc__ = """What :meth:`MaskRCNN.forward_train` returns (NDArrays).

Fields
------
rpn_logits, rpn_deltas : (B, N), (B, N, 4)
    RPN objectness logits and box offsets of every anchor (with gradients).
rpn_cls_targets, rpn_box_targets, rpn_box_masks : (B, N), (B, N, 4), (B, N, 4)
    Sampled anchors' labels (1, 0, -1 not sampled), offsets of their boxes, positives' mask.
cls_logits, cls_targets : (S, C + 1), (S,)
    Class logits of the S sampled RoIs of the batch and their labels (0 background).
box_pred, box_targets : (P, 4)
    The ground-truth class's box offsets of the P positive RoIs, and their targets.
mask_logits, mask_targets : (P, M, M)
    The ground-truth class's mask logits of the positive RoIs, and their soft targets.
rois : (S, 5)
    The sampled RoIs, ``batch_index, x1, y1, x2, y2``, positives first.

When the batch has no positive RoI (no object), the last four are ``None``.
"""

# The architecture settings of the published models that differ between them.
MASK_RCNN_CONFIGS = {
    # (fpn, depth, variant): RoI size, FPN box-head avg pool, mask-head 3x3 convs, RoIs
    # sampled per training image
    (False, 18, 'v1b'): dict(roi_size=14, box_pool=None, mask_convs=0, num_sample=256),
    (False, 50, 'v1b'): dict(roi_size=14, box_pool=None, mask_convs=0, num_sample=128),
    (False, 101, 'v1d'): dict(roi_size=14, box_pool=None, mask_convs=0, num_sample=128),
    (True, 18, 'v1b'): dict(roi_size=7, box_pool=False, mask_convs=2, num_sample=512),
    (True, 50, 'v1b'): dict(roi_size=14, box_pool=True, mask_convs=4, num_sample=512),
    (True, 101, 'v1d'): dict(roi_size=14, box_pool=True, mask_convs=4, num_sample=512),
}


class MaskRCNN(nn.HybridBlock):
    """Backbone -> RPN -> RoIAlign -> box head -> detections -> RoIAlign -> mask head.

    Parameters
    ----------
    features : HybridBlock
        Image -> one feature map (C4: stem to stage 3, stride 16) or the pyramid
        (P2, ..., P6).
    top_features : HybridBlock or None
        Applied to pooled RoIs before the box and mask heads (C4: stage 4).
    box_features : HybridBlock
        Pooled (and ``top_features``) RoI features -> one vector per RoI.
    rpn : SingleLevelRPN or MultiLevelRPN
    roi_strides : sequence of int
        Strides of the feature maps RoIs are pooled from (C4: (16,); FPN: P2..P5).
    roi_size : int
        Side of the pooled RoI features.
    head_channels : (int, int)
        Channels entering the mask head and width of the box features (0: inferred).
    classes : sequence of str
        Foreground class names.
    mask_channels, mask_convs :
        Of the :class:`MaskHead`.
    max_dets, score_thresh, nms_thresh, box_clip :
        Of the :class:`DetectionPostProcessor`.
    gluoncv_roi_quirk : bool
        Pool FPN RoIs exactly as GluonCV did, including the ``ROIAlign`` bug that corrupts
        the first RoI's features (:class:`RoIAlignExtractor`); only for bit-level
        comparisons with GluonCV.
    num_sample, pos_iou_thresh, pos_ratio :
        Of the :class:`~.rcnn_target.RCNNTargetSampler` (training).
    rpn_num_sample : int
        Anchors sampled per image for the RPN loss (:class:`~.rpn_target.RPNTargetGenerator`).

    Attributes
    ----------
    rpn_target, rcnn_sampler, mask_target :
        The training target generators (plain objects; replace them to change the
        sampling).
    """

    def __init__(self, features, top_features, box_features, rpn, roi_strides, roi_size,
                 head_channels=(0, 0), classes=COCO_INSTANCE_CLASSES, mask_channels=256,
                 mask_convs=0, max_dets=1000, score_thresh=0.01, nms_thresh=0.5, box_clip=4.42,
                 gluoncv_roi_quirk=False, num_sample=512, pos_iou_thresh=0.5, pos_ratio=0.25,
                 rpn_num_sample=256, **kwargs):
        super().__init__(**kwargs)
        self.classes = tuple(classes)
        self.num_class = len(self.classes)
        self.roi_strides = tuple(roi_strides)
        with self.name_scope():
            self.features = features
            self.top_features = top_features
            self.box_features = box_features
            self.rpn = rpn
            self.class_predictor, self.box_predictor = box_predictors(self.num_class,
                                                                     head_channels[1])
            self.mask = MaskHead(self.num_class, mask_channels, mask_convs, head_channels[0])
            self.roi_align = RoIAlignExtractor(roi_size, roi_strides,
                                               gluoncv_quirk=gluoncv_roi_quirk)
        self.postprocess = DetectionPostProcessor(
            self.num_class, max_dets=min(max_dets, rpn.proposal.test_post_nms),
            score_thresh=score_thresh, nms_thresh=nms_thresh, clip=box_clip)
        self.rpn_target = RPNTargetGenerator(num_sample=rpn_num_sample,
                                             stds=rpn.proposal.coder.stds)
        self.rcnn_sampler = RCNNTargetSampler(num_sample, pos_iou_thresh, pos_ratio,
                                              stds=self.postprocess.coder.stds)
        self.mask_target = MaskTargetGenerator(self.mask_size)

    def initialize(self, init=mx.init.Uniform(), ctx=None, verbose=False, force_reinit=False):
        """Initialize the parameters that have no value yet; see
        :func:`~gluonseg.model_zoo.segbase.initialize_keeping_values`."""
        initialize_keeping_values(self, init, ctx, verbose, force_reinit)

    @property
    def mask_size(self):
        """Side M of the predicted masks."""
        return 2 * (self.roi_align.output_size[0] // (2 if self.top_features is not None
                                                        else 1))

    def _roi_head_input(self, F, rois, features):
        pooled = self.roi_align(rois, *features[:len(self.roi_strides)])
        return pooled if self.top_features is None else self.top_features(pooled)

    def detect(self, x, score_thresh=0.001, max_dets=100):
        """Lean inference: the kept detections only, computed without the empty work of the
        raw output's fixed 1000 rows.

        The box head runs on the valid proposals only (not on padding rows), post-processing
        keeps the ``max_dets`` best detections per image (the first ``max_dets`` rows of the
        raw output), those scoring at least ``score_thresh`` are kept, and the mask head runs
        on them only. The detections are those of the raw forward (``net(x)``) for the kept
        rows; GluonCV's raw contract stays available through ``net(x)``.

        It runs imperatively between hybridized parts (``net.hybridize()`` caches the
        backbone, RPN and heads), in the stages of :class:`~.inference.LeanDetector`;
        ``gluonseg.optimize(net)`` returns a fused, faster version with the same detections.

        Parameters
        ----------
        x : NDArray (B, 3, H, W)
        score_thresh : float
            Keep detections scoring at least this.
        max_dets : int
            At most this many detections per image, best first.

        Returns
        -------
        ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4), masks (B, K, M, M)
            K = ``max_dets``; rows beyond an image's kept detections have id and score -1,
            box -1 and mask 0.
        """
        return LeanDetector(self)(x, score_thresh, max_dets)

    def predict(self, images, **kwargs):
        """Detections with full-size masks in each image's own pixels; see
        :func:`~gluonseg.model_zoo.rcnn.predict.predict_instances` for the options."""
        return predict_instances(self, images, **kwargs)

    def forward(self, x, *targets):
        """Inference: ``net(x)``, GluonCV's raw outputs (module docstring). Training (while
        ``autograd.is_training()``): ``net(x, gt_boxes, gt_ids, gt_masks)``, see
        :meth:`forward_train`."""
        if autograd.is_training():
            if len(targets) != 3:
                raise TypeError(
                    'MaskRCNN in training mode (autograd.record() or train_mode()) needs the '
                    'targets: net(x, gt_boxes, gt_ids, gt_masks); got %d extra argument(s). '
                    'For inference call it outside autograd.record() / in predict_mode()'
                    % len(targets))
            return self.forward_train(x, *targets)
        if targets:
            raise TypeError('MaskRCNN takes targets only in training mode (inside '
                            'autograd.record()); got %d extra argument(s)' % len(targets))
        return super().forward(x)

    def forward_train(self, x, gt_boxes, gt_ids, gt_masks, rng=None):
        """Training pass: RPN outputs and targets, sampled RoIs through the box head, the
        positive RoIs through the box regressor and mask head, and their targets.

        It runs imperatively (the sampling happens in NumPy between the blocks); call
        ``net.hybridize()`` to run the backbone, RPN head, RoIAlign and heads as cached
        graphs anyway.

        Parameters
        ----------
        x : NDArray (B, 3, H, W)
            Normalized images (padded to a common size).
        gt_boxes : NDArray (B, G, 4)
            ``x1, y1, x2, y2`` in the pixels of ``x``; padding rows have class id -1.
        gt_ids : NDArray (B, G) or (B, G, 1)
            0-based class ids, -1 for padding.
        gt_masks : NDArray (B, G, H, W)
            Binary object masks in the pixels of ``x``.
        rng : numpy.random.RandomState, optional
            Source of the sampling (default: NumPy's global generator).

        Returns
        -------
        MaskRCNNTrainOutput
        """
        F = mx.nd
        rng = np.random if rng is None else rng
        batch, _, height, width = x.shape
        if gt_masks.ndim != 4 or gt_masks.shape[2:] != (height, width) or \
                gt_masks.shape[:2] != gt_boxes.shape[:2]:
            raise ValueError('gt_masks must be (B, G, H, W) = (%d, %d, %d, %d) like the boxes '
                             'and the images, got %s' % (gt_boxes.shape[0], gt_boxes.shape[1],
                                                         height, width, gt_masks.shape))
        features = self.features(x)
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        rpn_logits, rpn_deltas, anchors, scores, proposals = self.rpn.forward_train(
            x, *features)
        with autograd.pause():
            targets = self._sample(anchors, scores, proposals, gt_boxes, gt_ids, gt_masks,
                                   (height, width), rng)
        (rpn_cls, rpn_box, rpn_box_mask, rois, cls_targets, pos_classes, box_targets,
         mask_targets) = targets
        head_input = self._roi_head_input(F, rois, features)
        box_feat = self.box_features(head_input)
        cls_logits = self.class_predictor(box_feat)
        num_pos = len(pos_classes)
        box_pred = mask_logits = None
        if num_pos:
            pick = F.stack(F.arange(num_pos, ctx=x.context),
                           F.array(pos_classes, ctx=x.context))
            box_pred = self.box_predictor(F.slice_axis(box_feat, axis=0, begin=0,
                                                       end=num_pos))
            box_pred = F.gather_nd(box_pred.reshape((num_pos, self.num_class, 4)), pick)
            mask_logits = F.gather_nd(
                self.mask(F.slice_axis(head_input, axis=0, begin=0, end=num_pos)), pick)
        else:
            box_targets = mask_targets = None
        return MaskRCNNTrainOutput(rpn_logits.reshape((batch, -1)), rpn_deltas, rpn_cls,
                                   rpn_box, rpn_box_mask, cls_logits, cls_targets, box_pred,
                                   box_targets, mask_logits, mask_targets, rois)

    def _sample(self, anchors, scores, proposals, gt_boxes, gt_ids, gt_masks, image_size,
                rng):
        """RPN targets, the sampled RoIs (positives of all images first) and their targets,
        as NDArrays on the images' device."""
        ctx = proposals.context
        batch = proposals.shape[0]
        anchors = anchors.reshape((-1, 4)).asnumpy()
        scores = scores.asnumpy().reshape(batch, -1)
        proposals = proposals.asnumpy()
        boxes = gt_boxes.asnumpy().reshape(batch, -1, 4)
        ids = gt_ids.asnumpy().reshape(batch, -1)
        num_gt = boxes.shape[1]
        rpn = [[], [], []]
        pos_rois, neg_rois, pos_labels, pos_mask_index, box_targets = [], [], [], [], []
        for b in range(batch):
            objects = np.flatnonzero(ids[b] >= 0)
            for part, value in zip(rpn, self.rpn_target(anchors, boxes[b][objects],
                                                        image_size, rng)):
                part.append(value)
            samples = self.rcnn_sampler(proposals[b][scores[b] >= 0], boxes[b][objects],
                                        ids[b][objects], rng)
            p = samples.num_pos
            index = np.full((len(samples), 1), b, dtype=np.float32)
            rois = np.concatenate([index, samples.rois], axis=1)
            pos_rois.append(rois[:p])
            neg_rois.append(rois[p:])
            pos_labels.append(samples.labels[:p])
            pos_mask_index.append(b * num_gt + objects[samples.matches[:p]])
            box_targets.append(samples.box_targets)
        pos_rois = np.concatenate(pos_rois)
        pos_labels = np.concatenate(pos_labels)
        rois = np.concatenate([pos_rois] + neg_rois)
        labels = np.zeros(len(rois), dtype=np.float32)
        labels[:len(pos_labels)] = pos_labels
        mask_targets = self.mask_target(
            gt_masks.reshape((-3, 0, 0)), mx.nd.array(pos_rois[:, 1:], ctx=ctx),
            np.concatenate(pos_mask_index))
        rpn = [mx.nd.array(np.stack(part), ctx=ctx) for part in rpn]
        return (rpn[0], rpn[1], rpn[2], mx.nd.array(rois, ctx=ctx),
                mx.nd.array(labels, ctx=ctx), pos_labels - 1,
                mx.nd.array(np.concatenate(box_targets).reshape(-1, 4), ctx=ctx),
                mask_targets)

    # ------------------------------------------------------------------ training setup
    def _backbone_parts(self):
        """(stem blocks, [stage 1..4], blocks holding the whole backbone) of the models
        :func:`mask_rcnn` builds."""
        if isinstance(self.features, FPNFeatures):
            body = self.features.body
            return ([body.conv1, body.bn1], [body.layer1, body.layer2, body.layer3,
                                              body.layer4], [body])
        features = self.features
        if isinstance(features, nn.HybridSequential) and len(features) == 7 and \
                self.top_features is not None and len(self.top_features) == 1:
            return ([features[0], features[1]],
                    [features[4], features[5], features[6], self.top_features[0]],
                    [features, self.top_features])
        raise ValueError('MaskRCNN.freeze_backbone knows the ResNet backbones mask_rcnn() '
                         'builds; this model has a %s backbone' % type(features).__name__)

    def freeze_backbone(self, stages=1, batchnorm=True):
        """Stop training the backbone's stem and first ``stages`` stages (none with
        ``stages < 0``; the stem only with 0), and (``batchnorm``) the affine parameters of
        all its BatchNorm layers, as the published models were trained
        (``grad_req = 'null'``).

        Returns
        -------
        list of str
            The names of the parameters frozen.
        """
        stem, stage_blocks, backbone = self._backbone_parts()
        frozen = list(stem) + list(stage_blocks[:stages]) if stages >= 0 else []
        if batchnorm:
            for block in backbone:
                frozen.extend(_norm_layers(block))
        names = []
        for block in frozen:
            for name, param in block.collect_params().items():
                if param.grad_req != 'null':
                    param.grad_req = 'null'
                    names.append(name)
        return names

    # ------------------------------------------------------------------ other classes
    def reset_class(self, classes, reuse_weights=None):
        """Predict other classes: keep the backbone, RPN and heads, replace the class layers
        (class predictor, class-specific box regressor, mask predictor).

        Parameters
        ----------
        classes : sequence of str
            The new foreground class names.
        reuse_weights : None, True, sequence of str or dict
            Which new classes start from the weights of an old one (their rows of the class
            predictor and box regressor, their mask channel; the background row is kept
            too). None: none, every class layer is re-initialised. True: every new class
            whose name is an old class. A list of names: those (each must be an old and a
            new class). A dict: ``{new class: old class}`` by name or index.

        Notes
        -----
        New layers are initialised on the model's devices when its parameters are
        initialised; otherwise they are left for ``initialize()`` (reusing weights then
        needs initialised parameters).
        """
        classes = tuple(classes)
        if not classes:
            raise ValueError('reset_class needs at least one class name')
        if len(set(classes)) != len(classes):
            raise ValueError('reset_class: duplicate class names in %r' % (classes,))
        mapping = _reuse_mapping(classes, self.classes, reuse_weights)
        old = {'class': self.class_predictor, 'box': self.box_predictor,
               'mask': self.mask.mask}
        initialized = all(has_data(p) for b in old.values()
                          for p in b.collect_params().values())
        if mapping and not initialized:
            raise ValueError('reset_class(reuse_weights=...) needs initialised (trained) '
                             'class layers to copy from; initialize or load weights first')
        with self.name_scope():
            class_predictor, box_predictor = box_predictors(len(classes),
                                                            old['class']._in_units)
        mask_predictor = self.mask.new_predictor(len(classes), old['mask']._in_channels)
        if initialized:
            ctx = old['class'].weight.list_ctx()
            for block in (class_predictor, box_predictor, mask_predictor):
                block.initialize(ctx=ctx)
            _copy_rows(old['class'], class_predictor, [(0, 0)] + [
                (new + 1, prev + 1) for new, prev in mapping.items()] if mapping else [])
            _copy_rows(old['box'], box_predictor, [
                (4 * new + k, 4 * prev + k) for new, prev in mapping.items()
                for k in range(4)])
            _copy_rows(old['mask'], mask_predictor, list(mapping.items()))
        self.class_predictor, self.box_predictor = class_predictor, box_predictor
        self.mask.mask = mask_predictor
        self.classes = classes
        self.num_class = len(classes)
        self.postprocess.num_classes = len(classes)
        if is_hybridized(self):  # the cached graph holds the old layers
            self.hybridize(True, **hybridize_flags(self))
        return self

    def hybrid_forward(self, F, x):
        # GluonCV's raw contract: the inference pipeline with all rows (.inference).
        return RawDetector(self, F).run(x)


def _norm_layers(block):
    """Every normalization layer inside ``block`` (itself included)."""
    found = [block] if 'norm' in type(block).__name__.lower() else []
    for child in child_blocks(block).values():
        found.extend(_norm_layers(child))
    return found


def _class_index(name_or_index, classes, which):
    if isinstance(name_or_index, (int, np.integer)):
        if not 0 <= name_or_index < len(classes):
            raise ValueError('reset_class: %s class index %d outside 0..%d'
                             % (which, name_or_index, len(classes) - 1))
        return int(name_or_index)
    if name_or_index not in classes:
        raise ValueError('reset_class: %r is not one of the %s classes (%s)'
                         % (name_or_index, which, ', '.join(map(str, classes[:10])) +
                            (' ...' if len(classes) > 10 else '')))
    return classes.index(name_or_index)


def _reuse_mapping(new_classes, old_classes, reuse_weights):
    """{new class index: old class index} of the classes whose weights are kept."""
    if reuse_weights is None or reuse_weights is False:
        return {}
    if reuse_weights is True:
        return {n: old_classes.index(c) for n, c in enumerate(new_classes)
                if c in old_classes}
    if isinstance(reuse_weights, dict):
        pairs = reuse_weights.items()
    elif isinstance(reuse_weights, str):
        raise ValueError('reset_class: reuse_weights must be None, True, a list of class '
                         'names or a dict, got the string %r' % reuse_weights)
    else:
        pairs = [(c, c) for c in reuse_weights]
    return {_class_index(new, new_classes, 'new'): _class_index(old, old_classes, 'original')
            for new, old in pairs}


def _copy_rows(source, target, pairs):
    """target.weight[t] = source.weight[s] (and the bias) for (t, s) in ``pairs``."""
    if not pairs:
        return
    rows_to = [t for t, _ in pairs]
    rows_from = [s for _, s in pairs]
    for name in ('weight', 'bias'):
        src, dst = getattr(source, name), getattr(target, name)
        values = dst.data().asnumpy()
        values[rows_to] = src.data().asnumpy()[rows_from]
        dst.set_data(mx.nd.array(values))


def _backbone(depth, variant, pretrained_base, root, frozen_bn=True):
    # Frozen BatchNorm (running statistics also while training), as the models were trained.
    return build_backbone('resnet%d_%s' % (depth, variant), dilated=False,
                          pretrained=pretrained_base, root=root,
                          norm_kwargs={'use_global_stats': True} if frozen_bn else None)


def mask_rcnn(depth=50, variant='v1b', fpn=False, classes=COCO_INSTANCE_CLASSES,
              pretrained_base=False, root=None, rpn_test_pre_nms=6000, rpn_test_post_nms=1000,
              rpn_train_pre_nms=12000, rpn_train_post_nms=2000, num_sample=None,
              frozen_bn=True, fpn_channels=256, rpn_channels=1024, box_units=1024,
              mask_channels=256, **kwargs):
    """Build a Mask R-CNN with the published architecture settings.

    The defaults build the published models; the width options make smaller models (e.g.
    for quick training on the synthetic Shapes data), whose files then have other shapes.

    Parameters
    ----------
    depth, variant : int, str
        The ResNetV1b backbone (published: 18 v1b, 50 v1b, 101 v1d).
    fpn : bool
        FPN model (pyramid P2..P6) instead of C4 (stride-16 stage 3, stage 4 as RoI head).
    classes : sequence of str
        Foreground class names.
    pretrained_base : bool
        Start the backbone from its ImageNet weights.
    root : str
        Weight cache folder.
    rpn_test_pre_nms, rpn_test_post_nms : int
        Proposals entering the RPN's NMS and kept after it at test time (6000/1000 as
        published; fewer is faster and caps the detections per image).
    rpn_train_pre_nms, rpn_train_post_nms : int
        The same while training (12000/2000 as published).
    num_sample : int, optional
        RoIs sampled per training image (default as published: 512 FPN, 128 C4 ResNet-50/101,
        256 C4 ResNet-18).
    frozen_bn : bool
        Backbone BatchNorm uses its running statistics also while training (as published,
        for a pretrained backbone). False: ordinary BatchNorm, for training from scratch.
    fpn_channels, rpn_channels, box_units, mask_channels : int
        Widths of the pyramid (FPN), the RPN conv, the FPN box head's Dense layers and the
        mask head (published: 256, 1024, 1024, 256).
    **kwargs
        Passed to :class:`MaskRCNN` (``max_dets``, ``score_thresh``, ``nms_thresh``,
        ``rpn_num_sample``, ...).
    """
    config = MASK_RCNN_CONFIGS.get((fpn, depth, variant))
    if config is None:
        known = ', '.join('%s resnet%d_%s' % ('FPN' if f else 'C4', d, v)
                          for f, d, v in MASK_RCNN_CONFIGS)
        raise ValueError('No Mask R-CNN configuration for %s resnet%d_%s; known: %s'
                         % ('FPN' if fpn else 'C4', depth, variant, known))
    resnet = _backbone(depth, variant, pretrained_base, root, frozen_bn)
    proposals = dict(test_pre_nms=rpn_test_pre_nms, test_post_nms=rpn_test_post_nms,
                     train_pre_nms=rpn_train_pre_nms, train_post_nms=rpn_train_post_nms,
                     clip=4.42)
    if fpn:
        features = FPNFeatures(resnet, 'resnet%s_' % variant, channels=fpn_channels)
        top_features = None
        pooled_side = config['roi_size'] // 2 if config['box_pool'] else config['roi_size']
        box_features = fpn_box_features(pool=config['box_pool'], units=box_units,
                                        in_units=fpn_channels * pooled_side ** 2)
        rpn = MultiLevelRPN(strides=(4, 8, 16, 32, 64), scales=(2, 4, 8, 16, 32),
                            alloc_size=(384, 384), channels=rpn_channels,
                            in_channels=fpn_channels, **proposals)
        roi_strides = (4, 8, 16, 32)
        head_channels = (fpn_channels, box_units)
    else:
        features = nn.HybridSequential()
        features.add(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1,
                     resnet.layer2, resnet.layer3)
        top_features = nn.HybridSequential()
        top_features.add(resnet.layer4)
        box_features = nn.GlobalAvgPool2D()
        stage3 = 256 * type(resnet.layer1[0]).expansion
        rpn = SingleLevelRPN(stride=16, scales=(2, 4, 8, 16, 32), alloc_size=(128, 128),
                             channels=rpn_channels, in_channels=stage3, **proposals)
        roi_strides = (16,)
        head_channels = (2 * stage3, 2 * stage3)
    return MaskRCNN(features, top_features, box_features, rpn, roi_strides,
                    config['roi_size'], head_channels, classes=classes,
                    mask_channels=mask_channels, mask_convs=config['mask_convs'],
                    num_sample=num_sample or config['num_sample'], **kwargs)
