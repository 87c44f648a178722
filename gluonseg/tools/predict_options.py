"""Segment images (files, folders, wildcards) and write the results as pictures: the command
line of ``gluonseg predict``, ``scripts/segmentation/demo.py`` and
``scripts/instance/demo_mask_rcnn.py``.

The options of both tasks (the demo scripts take one task's) and the check of their
combination; the run is :mod:`gluonseg.tools.predict`'s. Plain Python: ``gluonseg predict
--help`` and the checks answer without MXNet; checking the weight files given imports it (the
run needs it next).
"""
import os

from . import tool_parser
from .evaluate_options import check_weight_files

__all__ = ['add_arguments', 'check_arguments', 'parse_args']


def add_arguments(p, task=None):
    """The options of ``gluonseg predict`` on an ``argparse`` parser; ``task`` 'semantic' or
    'instance' leaves out the other task's options (the demo scripts)."""
    p.add_argument('inputs', nargs='+', metavar='IMAGE',
                   help='image files, folders (their images) or wildcards such as "dir/*.jpg"')
    g = p.add_argument_group('model (one of)')
    g.add_argument('--model', help='registered model name, with --pretrained or --params')
    g.add_argument('--pretrained', nargs='?', const=True, default=False, metavar='SHA1',
                   help='the published weights of --model (or the file whose SHA-1 starts '
                   'with SHA1)')
    g.add_argument('--params', help='a .params weight file of --model\'s layout')
    g.add_argument('--checkpoint', help='a checkpoint of %s' % {
        'semantic': 'train.py', 'instance': 'train_mask_rcnn.py'}.get(
            task, 'train.py or train_mask_rcnn.py'))
    if task != 'instance':
        g.add_argument('--aux', action='store_true',
                       help='build --model with its auxiliary head (when --params has it)')
    g = p.add_argument_group('output')
    g.add_argument('--output', default=os.path.join('runs', 'predict'),
                   help='folder of the pictures written')
    g.add_argument('--alpha', type=float, default=0.5, help='opacity of the colours')
    g.add_argument('--no-legend', action='store_true')
    if task != 'instance':
        g.add_argument('--draw-background', action='store_true',
                       help='colour the background class too; without it the picture '
                       'shows through')
    semantic_short = ('semantic: resize each image so that its shorter side is N pixels '
                      'before predicting (without it: at its own size), for a model trained '
                      'on objects of another scale; the outputs keep the image\'s size')
    instance_short = ('Mask R-CNN: the short side to resize to (default 800, or the '
                      'checkpoint\'s)')
    g = p.add_argument_group('resize')
    g.add_argument('--short', type=int, metavar='N', help={
        'semantic': semantic_short, 'instance': instance_short}.get(
            task, semantic_short + '; ' + instance_short))
    if task != 'semantic':
        g = p.add_argument_group('Mask R-CNN')
        g.add_argument('--max-size', type=int, help='resize: long side at most (default 1333, '
                       'or the checkpoint\'s)')
        g.add_argument('--score-thresh', type=float, default=0.5,
                       help='draw detections scoring at least this')
        g.add_argument('--max-dets', type=int, default=100)
        g.add_argument('--mask-thresh', type=float, default=0.5)
    p.add_argument('--gpu', type=int, help='GPU index (default: CPU)')
    return p


def check_arguments(p, args):
    """Exit through ``p.error`` unless exactly one model source is given."""
    if bool(args.model) == bool(args.checkpoint):
        p.error('give either --model NAME (with --pretrained or --params FILE) or '
                '--checkpoint FILE')
    if args.model and not (args.pretrained or args.params):
        p.error('--model %s needs --pretrained (published weights) or --params FILE'
                % args.model)
    if args.model and args.pretrained and args.params:
        p.error('give --pretrained or --params, not both')
    if not 0.0 <= args.alpha <= 1.0:
        p.error('--alpha must be between 0 and 1, got %g' % args.alpha)
    if args.short is not None and args.short < 1:
        p.error('--short must be a positive number of pixels, got %d' % args.short)
    return check_weight_files(p, args, 'pass it with --checkpoint %s')


def parse_args(argv=None, description=None, task=None):
    p = tool_parser(__doc__, description)
    add_arguments(p, task)
    return check_arguments(p, p.parse_args(argv))
