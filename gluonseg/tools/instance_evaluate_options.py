"""The Mask R-CNN part of ``gluonseg eval``'s command line (a Mask R-CNN checkpoint or model,
``--task instance``, and ``scripts/instance/eval_mask_rcnn.py``): the datasets and the check of
the options; the options themselves are :func:`gluonseg.tools.evaluate_options.add_arguments`'s,
the run :mod:`gluonseg.tools.instance_evaluate`.

Plain Python (no MXNet).
"""
from ..engine.choices import gpu_ids

__all__ = ['DATASETS', 'check_arguments']

#: The datasets a Mask R-CNN is evaluated on (coco: also any COCO-format files).
DATASETS = ('coco', 'shapes')


def check_arguments(p, args):
    """Exit through ``p.error`` on a contradictory or incomplete command line; fill the
    int8 calibration defaults."""
    if bool(args.model) == bool(args.checkpoint):
        p.error('give either a checkpoint or --model (with --pretrained or --params)')
    if args.model and not (args.pretrained or args.params):
        p.error('--model needs --pretrained or --params: random weights score nothing')
    if args.dataset is not None and args.dataset not in DATASETS:
        p.error('a Mask R-CNN is evaluated on %s (coco: also any COCO-format files with '
                '--val-json and --val-images), not %s' % (' or '.join(DATASETS), args.dataset))
    gpus = gpu_ids(args.gpus)
    if len(gpus) > 1:
        p.error('Mask R-CNN evaluation runs on one device: give one GPU, got --gpus %s'
                % args.gpus)
    if args.optimize and gpus:
        p.error('--optimize builds a oneDNN (CPU) model: leave out --gpus')
    if args.optimize != 'int8' and (args.calib_mode or args.num_calib_batches is not None):
        p.error('--calib-mode and --num-calib-batches calibrate --optimize int8 only')
    if args.num_calib_batches is not None and args.num_calib_batches < 1:
        p.error('--num-calib-batches must be at least 1, got %d' % args.num_calib_batches)
    args.calib_mode = args.calib_mode or 'naive'
    args.num_calib_batches = args.num_calib_batches or 4
    return args
