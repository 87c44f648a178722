"""Mask R-CNN, built from parts that can be tested one by one.

====================  ===========================================================
module                concept
====================  ===========================================================
``anchors``           anchor grids (Detectron's reference-window convention)
``boxes``             corner/centre conversion, clipping, IoU, NMS (the one NMS entry)
``box_coder``         boxes <-> offsets from reference boxes
``rpn``               RPN head, proposal layer, single- and multi-level RPN
``roi_align``         RoIAlign features, FPN level assignment (the one RoI-pooling entry)
``fpn``               feature pyramid and GluonCV's symbol names of its weights
``heads``             box head, class/box predictors, mask head
``postprocess``       test-time per-class NMS and top-k
``rpn_target``        RPN training targets: anchor labels and offsets, sampling
``rcnn_target``       RoI sampling (ground truth appended) with class and box targets
``mask_target``       mask targets: ground-truth masks seen through the positive RoIs
``losses``            RPN, R-CNN and mask losses with the published normalisations
``fast_nms``          NMS kernel on the CPU (numba), ``contrib.box_nms``'s rows
``fast_roi_align``    RoIAlign kernel on the CPU (numba), ``contrib.ROIAlign``'s values
``inference``         the one inference pipeline: lean (``detect``) and raw (``net(x)``) rows
``split_stage``       C4's stage 4 with its first 1x1 convs before RoIAlign (optimized path)
``mask_rcnn``         the model (inference and training passes) and the published COCO models
``predict``           any image in, detections in its own pixels out
====================  ===========================================================
"""
from ...data.instance_transforms import resize_short_within
from ...utils.paste import paste_masks
from .anchors import AnchorGenerator, grid_anchors, reference_anchors
from .box_coder import BoxCoder
from .boxes import box_iou, clip_to_image, corner_to_center, iou_matrix, nms
from .fpn import FeaturePyramid, FPNFeatures
from .heads import MaskHead, box_predictors, fpn_box_features, select_class_masks
from .losses import MaskRCNNLoss, mask_loss, rcnn_loss, rpn_loss
from .mask_rcnn import MaskRCNN, MaskRCNNTrainOutput, mask_rcnn
from .mask_target import MaskTargetGenerator
from .postprocess import DetectionPostProcessor
from .predict import InstancePrediction, predict_instances
from .rcnn_target import RCNNSamples, RCNNTargetSampler
from .roi_align import RoIAlignExtractor, fpn_levels
from .rpn import MultiLevelRPN, ProposalLayer, RPNHead, SingleLevelRPN
from .rpn_target import RPNTargetGenerator

__all__ = ['AnchorGenerator', 'grid_anchors', 'reference_anchors', 'BoxCoder', 'box_iou',
           'clip_to_image', 'corner_to_center', 'iou_matrix', 'nms', 'FeaturePyramid',
           'FPNFeatures', 'MaskHead', 'box_predictors', 'fpn_box_features',
           'select_class_masks', 'MaskRCNNLoss', 'mask_loss', 'rcnn_loss', 'rpn_loss',
           'MaskRCNN', 'MaskRCNNTrainOutput', 'mask_rcnn', 'MaskTargetGenerator',
           'paste_masks', 'DetectionPostProcessor', 'InstancePrediction', 'predict_instances',
           'resize_short_within', 'RCNNSamples', 'RCNNTargetSampler', 'RoIAlignExtractor',
           'fpn_levels', 'MultiLevelRPN', 'ProposalLayer', 'RPNHead', 'SingleLevelRPN',
           'RPNTargetGenerator']
