"""The package's layers import downward only: utils <- data <- model_zoo <- engine <- tools.

An upward import (a dataset reader importing a model, a metric importing a model helper) ties
a low layer to everything above it and is how import cycles start; this test reads every
import statement of the package, at module level and inside functions, and names each one
that points up. An import inside a function hides a cycle as well as it defers an optional
package, so each one says why it is there (``# lazy: <reason>`` on its first line).
"""
import ast
import pathlib
import re
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


def check_a_fake_package(tmp_path, monkeypatch, files):
    """Make the checks read a ``gluonseg`` tree of ``{path in it: source}`` in ``tmp_path``."""
    fake = tmp_path / 'gluonseg'
    for name, source in files.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(source)
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', fake)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # The check itself must catch a function-level upward import in a low layer.
    check_a_fake_package(tmp_path, monkeypatch, {
        'utils/bad.py': 'def f():\n    from ..model_zoo import registry\n    return registry\n',
        'utils/worse.py': 'from .. import engine\n'})
    assert upward_imports() == [
        'gluonseg/utils/bad.py:2 (utils) imports gluonseg.model_zoo (model_zoo)',
        'gluonseg/utils/worse.py:1 (utils) imports gluonseg.engine (engine)']


LAZY_REASON = re.compile(r'#\s*lazy:\s*\S')


def function_level_imports_without_reason():
    """``path:line: statement`` of every import inside a function that has no ``# lazy:``
    reason on its (first) line."""
    found = set()  # a set: a nested function's imports are its outer function's too
    for path in sorted(PACKAGE.rglob('*.py')):
        text = path.read_text()
        lines = text.splitlines()
        for function in ast.walk(ast.parse(text, str(path))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.update(
                    (str(path.relative_to(PACKAGE.parent)), node.lineno,
                     lines[node.lineno - 1].strip())
                    for node in ast.walk(function)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                    and not LAZY_REASON.search(lines[node.lineno - 1]))
    return ['%s:%d: %s' % place for place in sorted(found)]


def test_every_function_level_import_says_why():
    # An optional package (pycocotools, onnx, matplotlib) or a module that must stay free
    # of MXNet is a reason; a cycle between gluonseg modules is not (move the code instead).
    assert function_level_imports_without_reason() == []


def test_the_check_sees_a_function_level_import_without_reason(tmp_path, monkeypatch):
    check_a_fake_package(tmp_path, monkeypatch, {'model_zoo/net.py': (
        'import json\n'
        'if json:\n'
        '    import os\n'
        'def build():\n'
        '    from .registry import get_model\n'
        '    import onnx  # lazy: optional, pip install onnx\n'
        '    from mxnet import (  # lazy: listing must not import MXNet\n'
        '        nd)\n'
        '    class Head:\n'
        '        def forward(self):\n'
        '            from . import (\n'
        '                fcn)  # lazy: on the wrong line\n'
        '            return fcn\n'
        '    return get_model, onnx, nd, Head\n')})
    assert function_level_imports_without_reason() == [
        'gluonseg/model_zoo/net.py:5: from .registry import get_model',
        'gluonseg/model_zoo/net.py:11: from . import (']


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
