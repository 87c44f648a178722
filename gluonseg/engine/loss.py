"""Softmax cross-entropy over the labelled pixels, with an auxiliary-head term that really is
weighted.

GluonCV's ``MixSoftmaxCrossEntropyLoss`` computes its terms with ``SoftmaxOutput``, whose
backward pass ignores the incoming gradient, so its ``aux_weight`` only changes the printed
loss: every published "aux 0.5" model was trained with an effective weight of 1. Here the
loss is built from differentiable operators (``log_softmax``, ``pick``), so the weight scales
the auxiliary head's gradient and nothing else.
"""
import mxnet as mx
import numpy as np

__all__ = ['SegmentationLoss', 'pixel_cross_entropy_sum', 'count_labelled_pixels']


def count_labelled_pixels(label, ignore_label=255):
    """Number of pixels of ``label`` that are not ``ignore_label`` (a python int)."""
    if hasattr(label, 'asnumpy'):
        label = label.asnumpy()
    return int((label != ignore_label).sum())


def pixel_cross_entropy_sum(logits, label, ignore_label=255):
    """Sum over the labelled pixels of ``-log softmax(logits)[label]``.

    Parameters
    ----------
    logits : NDArray
        (N, C, H, W) class scores; float16 or bfloat16 ones (AMP) are cast to float32 first.
    label : NDArray
        (N, H, W) class ids; pixels equal to ``ignore_label`` contribute nothing (neither loss
        nor gradient).
    ignore_label : int, default 255

    Returns
    -------
    NDArray
        Shape (1,).
    """
    if logits.ndim != 4 or label.ndim != 3 or logits.shape[0] != label.shape[0] \
            or logits.shape[2:] != label.shape[1:]:
        raise ValueError('logits must be (N, C, H, W) and labels (N, H, W) of the same N, H, W; '
                         'got logits %s and labels %s' % (logits.shape, label.shape))
    if logits.dtype not in (np.float32, np.float64):
        # Mixed precision: the loss is summed over every pixel, which float16 would overflow,
        # and NDArray.astype to bfloat16 garbles integer labels (MXNet 1.9.1).
        logits = logits.astype('float32')
    label = label.astype(logits.dtype, copy=False)
    log_prob = mx.nd.log_softmax(logits, axis=1)
    # 'clip' maps the ignore value to a valid class; the mask then removes those pixels.
    picked = mx.nd.pick(log_prob, label, axis=1, mode='clip')
    labelled = (label != ignore_label).astype(logits.dtype)
    return -(picked * labelled).sum().reshape((1,))


class SegmentationLoss(object):
    """Cross-entropy of the main output plus ``aux_weight`` times that of the auxiliary output
    (or a weighted sum over the outputs of a network that returns more, ``output_weights``).

    ``loss(outputs, label, normalizer)`` returns
    ``(CE_sum(main) + aux_weight * CE_sum(aux)) / normalizer``, where ``CE_sum`` sums the
    pixel cross-entropy over the labelled pixels. With the default ``normalizer`` (the
    labelled pixels of ``label``) it is the mean over this batch. A data-parallel loop passes
    the labelled-pixel count of the *whole* batch on every device, so the gradients summed
    across devices are those of one mean over the whole batch, whatever the split.

    Parameters
    ----------
    aux_weight : float, default 0.5
        Weight of the auxiliary output (the second one, when the network returns two).
        It multiplies the auxiliary head's gradient; the main head's gradient does not
        depend on it.
    ignore_label : int, default 255
        Label of pixels that are not trained on.
    output_weights : sequence of float, optional
        One weight per training output, main first, replacing ``(1, aux_weight)``: what a
        network with several outputs declares as ``training_output_weights`` (DANet's three
        summed outputs, ICNet's cascade).
    """

    def __init__(self, aux_weight=0.5, ignore_label=255, output_weights=None):
        if aux_weight < 0:
            raise ValueError('aux_weight must be >= 0, got %r' % (aux_weight,))
        self.aux_weight = float(aux_weight)
        self.ignore_label = ignore_label
        if output_weights is not None:
            output_weights = tuple(float(w) for w in output_weights)
            if not output_weights or min(output_weights) < 0:
                raise ValueError('output_weights must be non-negative floats, one per output, '
                                 'got %r' % (output_weights,))
        self.output_weights = output_weights

    def weights(self, num_outputs):
        """The weight of each of ``num_outputs`` outputs: ``output_weights`` when given
        (a cascade such as ICNet's), else 1 for the main output and aux_weight for the
        auxiliary one."""
        if self.output_weights is not None:
            if len(self.output_weights) != num_outputs:
                raise ValueError('the network returned %d outputs but the loss has %d '
                                 'output_weights %s' % (num_outputs, len(self.output_weights),
                                                        self.output_weights))
            return list(self.output_weights)
        if num_outputs > 2:
            raise ValueError('SegmentationLoss handles a main and an auxiliary output, got %d '
                             'outputs (a network with more declares training_output_weights)'
                             % num_outputs)
        return [1.0, self.aux_weight][:num_outputs]

    def __call__(self, outputs, label, normalizer=None):
        """The weighted loss, shape (1,).

        Parameters
        ----------
        outputs : NDArray or sequence of NDArray
            The network's logits: ``out`` or ``(out, aux)``, each (N, C, H, W).
        label : NDArray
            (N, H, W) class ids.
        normalizer : float, optional
            Divide by this instead of this batch's labelled-pixel count.
        """
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if normalizer is None:
            normalizer = count_labelled_pixels(label, self.ignore_label)
        total = None
        for weight, logits in zip(self.weights(len(outputs)), outputs):
            # A 0 weight still multiplies (rather than skips) so every head stays in the graph
            # and gets a (zero) gradient instead of a stale one.
            term = pixel_cross_entropy_sum(logits, label, self.ignore_label)
            term = term * weight if weight != 1 else term
            total = term if total is None else total + term
        # No labelled pixel: the loss is 0 (not 0/0 = NaN).
        return total / float(max(normalizer, 1))

    def __repr__(self):
        if self.output_weights is not None:
            return 'SegmentationLoss(output_weights=%s, ignore_label=%s)' % (
                self.output_weights, self.ignore_label)
        return 'SegmentationLoss(aux_weight=%g, ignore_label=%s)' % (self.aux_weight,
                                                                     self.ignore_label)
