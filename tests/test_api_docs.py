"""The API reference builds from the docstrings (docs/build_api.py, pdoc) and has the pages a
reader looks for."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_builder():
    spec = importlib.util.spec_from_file_location('build_api',
                                                  os.path.join(ROOT, 'docs', 'build_api.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_builds(tmp_path):
    builder = load_builder()
    assert builder.main(['-o', str(tmp_path)]) == 0
    pages = {os.path.relpath(os.path.join(folder, name), str(tmp_path))
             for folder, _, names in os.walk(str(tmp_path)) for name in names}
    for page in ['index.html', 'gluonseg.html', 'gluonseg/model_zoo/registry.html',
                 'gluonseg/model_zoo/multiscale.html', 'gluonseg/data/shapes.html',
                 'gluonseg/data/folder.html', 'gluonseg/engine/trainer.html',
                 'gluonseg/engine/instance_trainer.html', 'gluonseg/utils/viz.html',
                 'gluonseg/utils/metrics.html', 'gluonseg/model_zoo/rcnn/predict.html']:
        assert page in pages, page
    assert not any('/_' in page or page.startswith('_') for page in pages), sorted(pages)

    def read(page):
        with open(os.path.join(str(tmp_path), page)) as f:
            return f.read()
    registry = read('gluonseg/model_zoo/registry.html')
    assert 'get_model' in registry and 'register_weights' in registry
    # numpydoc sections are rendered as headings
    metrics = read('gluonseg/utils/metrics.html')
    assert 'SegmentationMetric' in metrics and '>Parameters</h6>' in metrics
