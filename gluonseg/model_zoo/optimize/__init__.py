"""Fast CPU inference of gluonseg models: oneDNN operator fusion, bfloat16 (AMP) and int8.

    >>> net = gluonseg.get_model('deeplab_resnet101_voc', pretrained=True)
    >>> fast = gluonseg.optimize(net, dtype='int8', calib_data=[batch1, batch2])
    >>> logits = fast(x)            # (N, 3, H, W) float32 in -> (N, C, H, W) float32 out
    >>> fast.export('deeplab-int8')  # loads back with mx.gluon.SymbolBlock.imports

:func:`optimize` is the one entry for both model kinds:

* a semantic segmentation network (any gluonseg family, or a ``SymbolBlock`` of one) becomes an
  :class:`OptimizedSegmentation` (:mod:`.segmentation`: the float32, bfloat16 and int8
  paths; :mod:`.fast_resize`: its final resize on the CPU, by a numba kernel);
* a :class:`~gluonseg.model_zoo.rcnn.MaskRCNN` becomes an :class:`OptimizedMaskRCNN`, its
  lean inference with fused (float32) or quantized (int8) blocks (:mod:`.mask_rcnn`).

The models themselves do not import this package: optimization is a layer above them.
:mod:`.calibration` holds what both share (calibration batches, the initialization check).
"""
from ..rcnn.mask_rcnn import MaskRCNN
from .calibration import CALIB_MODES
from .mask_rcnn import OptimizedMaskRCNN, SubpixelMaskFeatures, optimize_mask_rcnn
from .segmentation import (DTYPES, OptimizedSegmentation, find_classifier, inference_symbol,
                           optimize_segmentation)

__all__ = ['optimize', 'OptimizedSegmentation', 'OptimizedMaskRCNN', 'SubpixelMaskFeatures',
           'DTYPES', 'CALIB_MODES', 'find_classifier', 'inference_symbol',
           'optimize_segmentation', 'optimize_mask_rcnn']


def optimize(net, dtype='float32', calib_data=None, calib_mode='naive', num_calib_batches=4,
             exclude_layers=None, ctx=None, quantized_dtype='auto', static_alloc=True,
             float_classifier=True):
    """Return a faster inference version of a network.

    A :class:`~gluonseg.model_zoo.rcnn.MaskRCNN` goes to :func:`optimize_mask_rcnn`
    (``dtype`` 'float32' or 'int8'; ``calib_data``, ``calib_mode``, ``num_calib_batches``
    and ``ctx`` apply); any other network to :func:`optimize_segmentation`, whose docstring
    describes every parameter.

    Returns
    -------
    OptimizedSegmentation
        Call it with an NDArray (N, 3, H, W) of any size; it returns float32 logits.
    OptimizedMaskRCNN
        For a Mask R-CNN: its lean inference (``detect``, ``predict``) with the backbone,
        RPN and heads fused by oneDNN (same detections), and with ``dtype='int8'``
        quantized.
    """
    if isinstance(net, MaskRCNN):
        return optimize_mask_rcnn(net, dtype, calib_data, calib_mode, num_calib_batches, ctx)
    return optimize_segmentation(net, dtype, calib_data, calib_mode, num_calib_batches,
                                 exclude_layers, ctx, quantized_dtype, static_alloc,
                                 float_classifier)
