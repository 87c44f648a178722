"""Markdown tables of the registered models, generated from the registry's metadata (the
records of :mod:`.weights_table`).

``python scripts/update_model_tables.py`` writes them into README.md and docs/model_zoo.md;
a test fails when either file is stale.
"""
from .registry import list_models, model_info

__all__ = ['published_table', 'full_table']


def _metrics(weights):
    if not weights or not weights.metrics:
        return '-'
    return ', '.join('%s %.1f' % (k, v) for k, v in weights.metrics.items())


def _cost(weights):
    if weights.params is None:
        return '-', '-'
    return '%.1f' % (weights.params / 1e6), '%.1f' % weights.gmacs


def published_table(task=None):
    """One row per model with published weights: metrics with their protocol, the size and
    work of the model, and the file."""
    rows = ['| model | dataset | classes | published metric (%) | protocol | params (M) | GMACs '
            '| weights (SHA-1) |',
            '|---|---|---|---|---|---|---|---|']
    for name in list_models(pretrained=True, task=task):
        entry = model_info(name)
        weights = entry.weights[0]
        rows.append('| `%s` | %s | %d | %s | %s | %s | %s | `%s` |' % (
            (name, entry.dataset, entry.num_classes, _metrics(weights), weights.protocol or '-')
            + _cost(weights) + (weights.sha1 or 'local',)))
    return '\n'.join(rows) + '\n'


def _resize(rule):
    if not rule:
        return 'none (own size)'
    return ', '.join('%s %d' % (key.replace('_', ' '), value) for key, value in rule.items())


def full_table():
    """Every registered name, with architecture, task, input preprocessing and whether weights
    exist."""
    rows = ['| model | task | architecture | dataset | classes | input normalization (RGB) '
            '| resize | weights |',
            '|---|---|---|---|---|---|---|---|']
    for name in list_models():
        entry = model_info(name)
        norm = 'mean %s, std %s' % (entry.mean, entry.std)
        source = entry.weights[0].source if entry.weights else 'none (train it)'
        rows.append('| `%s` | %s | %s | %s | %d | %s | %s | %s |' % (
            name, entry.task, entry.architecture, entry.dataset, entry.num_classes, norm,
            _resize(entry.resize), source))
    return '\n'.join(rows) + '\n'
