"""Mask R-CNN, built from parts that can be tested one by one.

=================  ===========================================================
module             concept
=================  ===========================================================
``anchors``        anchor grids (Detectron's reference-window convention)
``boxes``          corner/centre conversion, clipping, IoU, NMS
``box_coder``      boxes <-> offsets from reference boxes
``rpn``            RPN head, proposal layer, single- and multi-level RPN
``roi_align``      RoIAlign features, FPN level assignment
``fpn``            feature pyramid and GluonCV's symbol names of its weights
``heads``          box head, class/box predictors, mask head
``postprocess``    test-time per-class NMS and top-k
``mask_rcnn``      the model and the published COCO models
``paste``          box masks -> full-size image masks (sub-pixel accurate)
``predict``        any image in, detections in its own pixels out
=================  ===========================================================
"""
from .anchors import AnchorGenerator, grid_anchors, reference_anchors  # noqa: F401
from .box_coder import BoxCoder  # noqa: F401
from .boxes import box_iou, clip_to_image, corner_to_center, nms  # noqa: F401
from .fpn import FeaturePyramid, FPNFeatures  # noqa: F401
from .heads import MaskHead, box_predictors, fpn_box_features, select_class_masks  # noqa: F401
from .mask_rcnn import MaskRCNN, mask_rcnn  # noqa: F401
from .paste import paste_masks  # noqa: F401
from .postprocess import DetectionPostProcessor  # noqa: F401
from .predict import InstancePrediction, predict_instances, resize_short_within  # noqa: F401
from .roi_align import RoIAlignExtractor, fpn_levels  # noqa: F401
from .rpn import MultiLevelRPN, ProposalLayer, RPNHead, SingleLevelRPN  # noqa: F401
