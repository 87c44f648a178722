"""Generated documentation must match the registry."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(relpath):
    spec = importlib.util.spec_from_file_location('script', os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_tables_in_readme_and_docs_are_current(capsys):
    script = load_script('scripts/update_model_tables.py')
    status = script.main(['--check'])
    assert status == 0, 'stale model tables: run python scripts/update_model_tables.py\n' + \
        capsys.readouterr().out


def test_readme_table_lists_the_headline_model():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    row = [line for line in readme.splitlines() if line.startswith('| `deeplab_resnet152_voc`')]
    assert row and 'mIoU 86.7' in row[0] and 'd35bea8817935d1ab310ef1e6dd06bb18c2d5f0d' in row[0]


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    command = [line for line in readme.splitlines() if 'python -m pytest' in line
               and line.startswith('python -m venv')][0]
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
        assert command in f.read()
