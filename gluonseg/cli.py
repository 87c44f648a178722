"""The ``gluonseg`` command: ``gluonseg models``, ``gluonseg download``, ``gluonseg env``,
``gluonseg train``, ``gluonseg eval``, ``gluonseg predict``."""
import argparse
import sys

__all__ = ['main']


def _models(args):
    from .model_zoo import list_models, model_info
    pretrained = {'yes': True, 'no': False}.get(args.pretrained)
    names = list_models(args.pattern, pretrained=pretrained, task=args.task)
    for name in names:
        entry = model_info(name)
        metrics = entry.weights[0].metrics if entry.weights else {}
        print('%-28s %-14s %-28s %4d classes  %s' % (
            name, entry.task, entry.dataset, entry.num_classes,
            ', '.join('%s %.1f' % kv for kv in metrics.items()) or
            ('weights' if entry.weights else '-')))
    return 0 if names else 1


def _download(args):
    from .model_zoo.registry import UnknownModelError, fetch_weights, model_info
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


def _env(args):
    from .env import main as env_main
    return env_main(['--json'] if args.json else [])


def main(argv=None):
    parser = argparse.ArgumentParser(prog='gluonseg', description='gluonseg model zoo')
    sub = parser.add_subparsers(dest='command', required=True)
    models = sub.add_parser('models', help='list registered models')
    models.add_argument('pattern', nargs='?', default='*', help="shell wildcard, e.g. 'psp_*'")
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
    from .tools import evaluate, predict, tool_parser, train
    checks = {}  # sub-command -> its parser and the check of the combination of options
    for name, tool, text in (
            ('train', train, 'train a semantic segmentation model (scripts/segmentation/'
             'train.py)'),
            ('eval', evaluate, 'pixAcc / mIoU of a semantic model, prediction PNGs '
             '(scripts/segmentation/test.py)'),
            ('predict', predict, 'segment images and draw the results, semantic or Mask R-CNN '
             '(scripts/segmentation/demo.py, scripts/instance/demo_mask_rcnn.py)')):
        command = tool_parser(tool.__doc__, text, subparsers=sub, name=name, help=text)
        tool.add_arguments(command)
        command.set_defaults(run=tool.run)
        checks[name] = (command, tool.check_arguments)
    args = parser.parse_args(argv)
    if args.command in checks:
        command, check = checks[args.command]
        check(command, args)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
