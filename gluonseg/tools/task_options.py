"""Command lines that serve both tasks: ``gluonseg train`` and ``gluonseg eval`` take the options
of semantic segmentation and of Mask R-CNN on one parser, the model (or checkpoint) choosing
the task and ``--task`` choosing it without one; the scripts take one task's options only.
"""
__all__ = ['TASKS', 'TASK_NAMES', 'TaskOptions', 'settle_task']

TASKS = ('semantic', 'instance')
TASK_NAMES = {'semantic': 'semantic segmentation', 'instance': 'Mask R-CNN (instance)'}
TASK_MODELS = {'semantic': 'a semantic segmentation model', 'instance': 'a Mask R-CNN'}


class TaskOptions(object):
    """Adds options to ``parser`` for ``task`` ('semantic', 'instance', or None: both, with
    ``--task``), and records the task-specific ones for :func:`settle_task`."""

    def __init__(self, parser, task=None, task_help=None):
        self.parser, self.task = parser, task
        parser.task_options = {}  # dest -> (its task, its option string)
        if task is None:
            parser.add_argument('--task', choices=TASKS, help=task_help)
        else:
            parser.set_defaults(task=task)

    def add(self, group, only, *names, **kwargs):
        """Add an option of the task ``only`` (None: of both) to ``group`` when the parser
        serves that task."""
        if only is not None and self.task not in (None, only):
            return
        action = group.add_argument(*names, **kwargs)
        if only is not None:
            self.parser.task_options[action.dest] = (only, names[0])

    def text(self, semantic, instance, both=None):
        """The help of an option both tasks have, in the words of the parser's task: with
        both, ``both`` (e.g. to say "default" once), else the two joined."""
        return {'semantic': semantic, 'instance': instance}.get(
            self.task, both or '%s; Mask R-CNN: %s' % (semantic, instance))


def settle_task(p, args, found, source):
    """Set ``args.task``: ``--task`` (or the parser's own task), else ``found``, the task of
    the model or checkpoint named by ``source`` (e.g. "--model NAME"; None: not known), else
    semantic. Exit through ``p.error`` when ``--task`` contradicts ``found``, or an option of
    the other task was given."""
    own = p.get_default('task')  # the task of a one-task parser (a script)
    if args.task and found and found != args.task:
        p.error('%s is %s, not %s: %s' % (
            source, TASK_MODELS[found], TASK_MODELS[args.task],
            'this command takes %s only' % TASK_MODELS[own] if own else 'leave out --task'))
    if args.task:
        task, why = args.task, 'this command' if own else '--task %s' % args.task
    else:
        task, why = found or 'semantic', 'of %s' % source if found else 'the default'
    args.task = task
    for dest, (only, name) in sorted(getattr(p, 'task_options', {}).items()):
        if only != task and getattr(args, dest) != p.get_default(dest):
            p.error('%s is an option of %s; the task is %s (%s): leave it out, or choose the '
                    'task with --task' % (name, TASK_NAMES[only], TASK_NAMES[task], why))
    return args
