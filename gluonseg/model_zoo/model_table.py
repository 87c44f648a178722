"""Markdown tables of the registered models, generated from the registry's metadata.

``python scripts/update_model_tables.py`` writes them into README.md and docs/model_zoo.md;
a test fails when either file is stale.
"""
from .registry import list_models, model_info

__all__ = ['published_table', 'full_table']


def _metrics(weights):
    if not weights or not weights.metrics:
        return '-'
    return ', '.join('%s %.1f' % (k, v) for k, v in weights.metrics.items())


def published_table(task=None):
    """One row per model with published weights: metrics with their protocol and the file."""
    rows = ['| model | dataset | classes | published metric (%) | protocol | weights (SHA-1) |',
            '|---|---|---|---|---|---|']
    for name in list_models(pretrained=True, task=task):
        entry = model_info(name)
        weights = entry.weights[0]
        rows.append('| `%s` | %s | %d | %s | %s | `%s` |' % (
            name, entry.dataset, entry.num_classes, _metrics(weights),
            weights.protocol or '-', weights.sha1 or 'local'))
    return '\n'.join(rows) + '\n'


def full_table():
    """Every registered name, with architecture, task and whether weights exist."""
    rows = ['| model | task | architecture | dataset | classes | input normalization (RGB) '
            '| weights |',
            '|---|---|---|---|---|---|---|']
    for name in list_models():
        entry = model_info(name)
        norm = 'mean %s, std %s' % (entry.mean, entry.std)
        source = entry.weights[0].source if entry.weights else 'none (train it)'
        rows.append('| `%s` | %s | %s | %s | %d | %s | %s |' % (
            name, entry.task, entry.architecture, entry.dataset, entry.num_classes, norm, source))
    return '\n'.join(rows) + '\n'
