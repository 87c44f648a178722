"""The ``gluonseg`` command: ``gluonseg models``, ``gluonseg download``, ``gluonseg env``,
``gluonseg train``, ``gluonseg eval``, ``gluonseg predict``.

``gluonseg --help``, ``gluonseg models`` (the weights table is plain data) and the help of every
sub-command answer without importing MXNet (seconds). A tool's command line (its options
module, plain Python) is imported when that sub-command is given, the module that runs it
(MXNet) once the options are checked.
"""
import argparse
import functools
import importlib
import sys

from .env import main as env_main
from .model_zoo.registry import (UnknownModelError, fetch_weights, list_models, model_info,
                                 similar_names)
from .tools import tool_parser

__all__ = ['main']

# sub-command -> (its options module and its running module in gluonseg.tools, its line in
# ``gluonseg --help``)
TOOL_COMMANDS = {
    'train': ('train_options', 'train', 'train a semantic segmentation model or a Mask R-CNN, '
              'as the model name says (scripts/segmentation/train.py, '
              'scripts/instance/train_mask_rcnn.py)'),
    'eval': ('evaluate_options', 'evaluate', 'pixAcc / mIoU of a semantic model, prediction '
             'PNGs; COCO box and mask AP of a Mask R-CNN (scripts/segmentation/test.py, '
             'scripts/instance/eval_mask_rcnn.py)'),
    'predict': ('predict_options', 'predict', 'segment images and draw the results, semantic '
                'or Mask R-CNN (scripts/segmentation/demo.py, '
                'scripts/instance/demo_mask_rcnn.py)'),
}

WILDCARD_CHARACTERS = '*?['


def _models(args):
    # A plain word is a part of a name: 'shapes' lists every model trained on shapes.
    plain_word = not any(c in args.pattern for c in WILDCARD_CHARACTERS)
    pattern = '*%s*' % args.pattern if plain_word else args.pattern
    pretrained = {'yes': True, 'no': False}.get(args.pretrained)
    names = list_models(pattern, pretrained=pretrained, task=args.task)
    if not names:
        filters = ['--%s %s' % (option, getattr(args, option))
                   for option in ('pretrained', 'task') if getattr(args, option)]
        if filters and list_models(pattern):
            hint = ' with %s' % ' '.join(filters)
        else:
            text = args.pattern.translate({ord(c): None for c in WILDCARD_CHARACTERS + ']'})
            close = similar_names(text, words=True)
            hint = ('. Did you mean: %s?' % ', '.join(close)) if close else ''
        print('gluonseg models: no model matches %r%s' % (args.pattern, hint), file=sys.stderr)
        return 1
    rows = []
    for name in names:
        entry = model_info(name)
        metrics = entry.weights[0].metrics if entry.weights else {}
        rows.append((name, entry.task, entry.dataset, '%d classes' % entry.num_classes,
                     ', '.join('%s %.1f' % kv for kv in metrics.items()) or
                     ('weights' if entry.weights else '-')))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print('  '.join([cell.ljust(width) for cell, width in zip(row[:3], widths)] +
                        [row[3].rjust(widths[3]), row[4]]))
    return 0


def _download(args):
    # Every name is checked before anything is downloaded.
    chosen = []
    for name in args.names:
        try:
            chosen.append((name, model_info(name).select_weights(args.pretrained or True)))
        except (UnknownModelError, ValueError) as err:  # a misspelled name, no such weights
            print('gluonseg download: error: %s' % err, file=sys.stderr)
            return 2
    for name, weights in chosen:
        try:
            print(fetch_weights(name, weights, args.root))
        except IOError as err:  # the message names the URLs, the file and what to do
            print('gluonseg download: error: %s' % err, file=sys.stderr)
            return 1
    return 0


def _run_tool(module_name, args):
    """Run a tool's checked ``args`` with its running module (imported now: MXNet)."""
    return importlib.import_module('%s.tools.%s' % (__package__, module_name)).run(args)


def _env(args):
    return env_main(['--json'] if args.json else [])


def main(argv=None):
    parser = argparse.ArgumentParser(prog='gluonseg', description='gluonseg model zoo')
    sub = parser.add_subparsers(dest='command', required=True)
    models = sub.add_parser('models', help='list registered models')
    models.add_argument('pattern', nargs='?', default='*',
                        help="a part of the name (e.g. 'shapes') or a shell wildcard (e.g. "
                             "'psp_*_voc')")
    models.add_argument('--pretrained', choices=['yes', 'no'],
                        help='only models with (yes) or without (no) published weights')
    models.add_argument('--task', choices=['semantic', 'instance', 'classification'])
    models.set_defaults(run=_models)
    download = sub.add_parser('download', help='download and verify published weights')
    download.add_argument('names', nargs='+')
    download.add_argument('--root', help='cache folder (default $GLUONSEG_HOME/models)')
    download.add_argument('--pretrained', help='SHA-1 prefix of the file to fetch')
    download.set_defaults(run=_download)
    env = sub.add_parser('env', help='describe the installation and what is wrong with it')
    env.add_argument('--json', action='store_true')
    env.set_defaults(run=_env)
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word is the sub-command (``gluonseg`` itself has no option taking a value):
    # only its options module is imported; the others are listed in --help by their line alone.
    given = next((arg for arg in argv if not arg.startswith('-')), None)
    check = None  # the given tool's parser and its check of the combination of options
    for name, (options_name, runner_name, text) in TOOL_COMMANDS.items():
        if name != given:
            sub.add_parser(name, help=text)
            continue
        options = importlib.import_module('%s.tools.%s' % (__package__, options_name))
        command = tool_parser(options.__doc__, text, subparsers=sub, name=name, help=text)
        options.add_arguments(command)
        command.set_defaults(run=functools.partial(_run_tool, runner_name))
        check = (command, options.check_arguments)
    args = parser.parse_args(argv)
    if check is not None:
        command, check_arguments = check
        check_arguments(command, args)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
