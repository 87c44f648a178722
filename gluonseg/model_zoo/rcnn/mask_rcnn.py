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

Training needs the target generators and losses, which are not part of this module yet.
"""
from mxnet import autograd
from mxnet.gluon import nn

from ...data.classes import COCO_INSTANCE_CLASSES
from .fpn import FPNFeatures
from .heads import MaskHead, box_predictors, fpn_box_features, select_class_masks
from .postprocess import DetectionPostProcessor
from .roi_align import RoIAlignExtractor
from .rpn import MultiLevelRPN, SingleLevelRPN

__all__ = ['MaskRCNN', 'mask_rcnn', 'MASK_RCNN_CONFIGS', 'PUBLISHED_AP']

# Published COCO val2017 results: name -> (SHA-1 of the weight file,
# (box AP, AP50, AP75), (mask AP, AP50, AP75)).
PUBLISHED_AP = {
    'mask_rcnn_resnet18_v1b_coco': ('e071cf1550bc0331c218a9072b59e9550595d1e7',
                                    (31.2, 51.1, 33.1), (28.4, 48.1, 29.8)),
    'mask_rcnn_fpn_resnet18_v1b_coco': ('14a922c38b0b196fdb1f7141be4666c10476f426',
                                        (34.9, 56.4, 37.4), (30.4, 52.2, 31.4)),
    'mask_rcnn_resnet50_v1b_coco': ('a3527fdc2cee5b1f32a61e5fd7cda8fb673e86e5',
                                    (38.3, 58.7, 41.4), (33.1, 54.8, 35.0)),
    'mask_rcnn_fpn_resnet50_v1b_coco': ('1364d0afe4de575af5d4389d50c2dbf22449ceac',
                                        (39.2, 61.2, 42.2), (35.4, 57.5, 37.3)),
    'mask_rcnn_resnet101_v1d_coco': ('4a3249c584f81c2a9b5d852b742637cd692ebdcb',
                                     (41.3, 61.7, 44.4), (35.2, 57.8, 36.9)),
    'mask_rcnn_fpn_resnet101_v1d_coco': ('89c7d8669b677a05c6eaa25375ead9a174109c69',
                                         (42.3, 63.9, 46.2), (37.7, 60.5, 40.0)),
}
PUBLISHED_PROTOCOL = 'COCO val2017, single scale 800/1333'

# The architecture settings of the published models that differ between them.
MASK_RCNN_CONFIGS = {
    # (fpn, depth, variant): RoI size, FPN box-head avg pool, mask-head 3x3 convs
    (False, 18, 'v1b'): dict(roi_size=14, box_pool=None, mask_convs=0),
    (False, 50, 'v1b'): dict(roi_size=14, box_pool=None, mask_convs=0),
    (False, 101, 'v1d'): dict(roi_size=14, box_pool=None, mask_convs=0),
    (True, 18, 'v1b'): dict(roi_size=7, box_pool=False, mask_convs=2),
    (True, 50, 'v1b'): dict(roi_size=14, box_pool=True, mask_convs=4),
    (True, 101, 'v1d'): dict(roi_size=14, box_pool=True, mask_convs=4),
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
    """

    def __init__(self, features, top_features, box_features, rpn, roi_strides, roi_size,
                 head_channels=(0, 0), classes=COCO_INSTANCE_CLASSES, mask_channels=256,
                 mask_convs=0, max_dets=1000, score_thresh=0.01, nms_thresh=0.5, box_clip=4.42,
                 gluoncv_roi_quirk=False, **kwargs):
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

    @property
    def mask_size(self):
        """Side M of the predicted masks."""
        return 2 * (self.roi_align.output_size[0] // (2 if self.top_features is not None
                                                        else 1))

    @staticmethod
    def _rois(F, boxes):
        """(B, N, 4) boxes -> (B * N, 5) RoIs ``batch_index, x1, y1, x2, y2``."""
        first = F.slice_axis(boxes, axis=-1, begin=0, end=1)
        batch_index = F.broadcast_like(
            F.contrib.arange_like(boxes, axis=0).reshape((-1, 1, 1)), first)
        return F.concat(batch_index, boxes, dim=-1).reshape((-3, 0))

    def _roi_head_input(self, F, rois, features):
        pooled = self.roi_align(rois, *features[:len(self.roi_strides)])
        return pooled if self.top_features is None else self.top_features(pooled)

    def predict(self, images, **kwargs):
        """Detections with full-size masks in each image's own pixels; see
        :func:`~gluonseg.model_zoo.rcnn.predict.predict_instances` for the options."""
        from .predict import predict_instances
        return predict_instances(self, images, **kwargs)

    def hybrid_forward(self, F, x):
        if autograd.is_training():
            raise NotImplementedError('MaskRCNN: training (target generation and losses) is '
                                      'not implemented yet; call the network outside '
                                      'autograd.train_mode() for inference')
        features = self.features(x)
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        with autograd.pause():
            _, proposals = self.rpn(x, *features)
            proposals = F.stop_gradient(proposals)
        num_proposals = self.rpn.proposal.post_nms
        box_feat = self.box_features(self._roi_head_input(F, self._rois(F, proposals),
                                                          features))
        class_logits = self.class_predictor(box_feat).reshape((-1, num_proposals,
                                                               self.num_class + 1))
        box_deltas = self.box_predictor(box_feat).reshape((-1, num_proposals,
                                                           self.num_class * 4))
        ids, scores, boxes = self.postprocess(F, class_logits, box_deltas, proposals)
        mask_feat = self._roi_head_input(F, self._rois(F, F.stop_gradient(boxes)), features)
        mask_logits = self.mask(mask_feat).reshape((-4, -1, self.postprocess.max_dets, -2))
        masks = F.sigmoid(select_class_masks(F, mask_logits, ids, self.num_class))
        return ids, scores, boxes, masks


def _backbone(depth, variant, pretrained_base, root):
    from ..segbase import build_backbone
    # Frozen BatchNorm (running statistics also while training), as the models were trained.
    return build_backbone('resnet%d_%s' % (depth, variant), dilated=False,
                          pretrained=pretrained_base, root=root,
                          norm_kwargs={'use_global_stats': True})


def mask_rcnn(depth=50, variant='v1b', fpn=False, classes=COCO_INSTANCE_CLASSES,
              pretrained_base=False, root=None, rpn_test_pre_nms=6000, rpn_test_post_nms=1000,
              **kwargs):
    """Build a Mask R-CNN with the published architecture settings.

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
    **kwargs
        Passed to :class:`MaskRCNN` (``max_dets``, ``score_thresh``, ``nms_thresh``, ...).
    """
    config = MASK_RCNN_CONFIGS.get((fpn, depth, variant))
    if config is None:
        known = ', '.join('%s resnet%d_%s' % ('FPN' if f else 'C4', d, v)
                          for f, d, v in MASK_RCNN_CONFIGS)
        raise ValueError('No Mask R-CNN configuration for %s resnet%d_%s; known: %s'
                         % ('FPN' if fpn else 'C4', depth, variant, known))
    resnet = _backbone(depth, variant, pretrained_base, root)
    proposals = dict(test_pre_nms=rpn_test_pre_nms, test_post_nms=rpn_test_post_nms, clip=4.42)
    if fpn:
        features = FPNFeatures(resnet, 'resnet%s_' % variant)
        top_features = None
        pooled_side = config['roi_size'] // 2 if config['box_pool'] else config['roi_size']
        box_features = fpn_box_features(pool=config['box_pool'],
                                        in_units=256 * pooled_side ** 2)
        rpn = MultiLevelRPN(strides=(4, 8, 16, 32, 64), scales=(2, 4, 8, 16, 32),
                            alloc_size=(384, 384), in_channels=256, **proposals)
        roi_strides = (4, 8, 16, 32)
        head_channels = (256, 1024)
    else:
        features = nn.HybridSequential()
        features.add(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1,
                     resnet.layer2, resnet.layer3)
        top_features = nn.HybridSequential()
        top_features.add(resnet.layer4)
        box_features = nn.GlobalAvgPool2D()
        stage3 = 256 * type(resnet.layer1[0]).expansion
        rpn = SingleLevelRPN(stride=16, scales=(2, 4, 8, 16, 32), alloc_size=(128, 128),
                             in_channels=stage3, **proposals)
        roi_strides = (16,)
        head_channels = (2 * stage3, 2 * stage3)
    return MaskRCNN(features, top_features, box_features, rpn, roi_strides,
                    config['roi_size'], head_channels, classes=classes,
                    mask_convs=config['mask_convs'], **kwargs)


def _register_published():
    from ..registry import Weights, register_model
    for (fpn, depth, variant) in MASK_RCNN_CONFIGS:
        name = 'mask_rcnn_%sresnet%d_%s_coco' % ('fpn_' if fpn else '', depth, variant)
        sha1, box_ap, mask_ap = PUBLISHED_AP[name]

        def builder(fpn=fpn, depth=depth, variant=variant, **kwargs):
            return mask_rcnn(depth, variant, fpn, **kwargs)

        builder.__doc__ = 'Mask R-CNN %s, ResNet-%d %s, COCO (80 classes).' % (
            'FPN' if fpn else 'C4', depth, variant)
        register_model(
            name, task='instance', dataset='MS COCO 2017', classes=COCO_INSTANCE_CLASSES,
            architecture='Mask R-CNN %s, ResNet-%d %s' % ('FPN' if fpn else 'C4', depth,
                                                          variant),
            weights=[Weights(sha1, metrics={'box AP': box_ap[0], 'mask AP': mask_ap[0]},
                             protocol=PUBLISHED_PROTOCOL, source='GluonCV model zoo')])(builder)


_register_published()
