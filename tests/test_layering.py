"""The package's layers import downward only: utils <- data <- model_zoo <- engine <- tools.

An upward import (a dataset reader importing a model, a metric importing a model helper) ties
a low layer to everything above it and is how import cycles start; this test reads every
import statement of the package, at module level and inside functions, and names each one
that points up.
"""
import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'gluonseg'
# Top-level modules: _cuda runs before MXNet and sits below everything; env and cli are tools.
LAYERS = {'_cuda': 0, 'utils': 1, 'data': 2, 'model_zoo': 3, 'engine': 4, 'tools': 5,
          'env': 5, 'cli': 5}
LAYER_NAMES = {0: '_cuda', 1: 'utils', 2: 'data', 3: 'model_zoo', 4: 'engine', 5: 'tools'}


def layer_of(module):
    """Layer number of a dotted gluonseg module name (None: not gluonseg, or the package)."""
    parts = module.split('.')
    if parts[0] != 'gluonseg' or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path):
    """(line, dotted module) of every import in ``path``; relative imports resolved."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            if node.module:
                yield node.lineno, target
            else:  # `from .. import data` names a subpackage
                for alias in node.names:
                    yield node.lineno, target + '.' + alias.name


def upward_imports():
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        own = layer_of(module_name(path))
        if own is None:
            continue
        for line, target in imported_modules(path):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                found.append('%s:%d (%s) imports %s (%s)' % (
                    path.relative_to(PACKAGE.parent), line, LAYER_NAMES[own], target,
                    LAYER_NAMES[theirs]))
    return sorted(set(found))


def test_no_layer_imports_a_higher_one():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # The check itself must catch a function-level upward import in a low layer.
    fake = tmp_path / 'gluonseg'
    (fake / 'utils').mkdir(parents=True)
    (fake / 'utils' / 'bad.py').write_text(
        'def f():\n    from ..model_zoo import registry\n    return registry\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', fake)
    (fake / 'utils' / 'worse.py').write_text('from .. import engine\n')
    assert upward_imports() == [
        'gluonseg/utils/bad.py:2 (utils) imports gluonseg.model_zoo (model_zoo)',
        'gluonseg/utils/worse.py:1 (utils) imports gluonseg.engine (engine)']


HEAVY_FOR_A_DEEPLAB = ('gluonseg.model_zoo.rcnn', 'scipy.io', 'numba', 'gluonseg.engine',
                       'gluonseg.tools')


def test_building_a_deeplab_loads_no_detection_training_or_scipy_code():
    code = ('import sys, gluonseg\n'
            'gluonseg.get_model("deeplab_resnet50_voc", pretrained_base=False)\n'
            'heavy = %r\n'
            'print(sorted(m for m in sys.modules if m.startswith(heavy)))\n'
            % (HEAVY_FOR_A_DEEPLAB,))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


if __name__ == '__main__':
    pytest.main([__file__, '-q'])
