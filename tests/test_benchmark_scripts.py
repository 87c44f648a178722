"""The benchmark scripts run and report consistent numbers (tiny settings; no timing asserts)."""
import csv

from test_docs import load_script


def test_inference_benchmark_writes_rows(tmp_path):
    script = load_script('scripts/benchmark/inference.py')
    out = tmp_path / 'bench.csv'
    rows = script.main(['--models', 'fcn_resnet18_shapes', '--sizes', '32x48', '--warmup', '1',
                        '--repeat', '2', '--static', '--csv', str(out)])
    assert len(rows) == 1 and rows[0]['mode'] == 'hybrid+static'
    with open(out) as f:
        written = list(csv.DictReader(f))
    assert written[0]['model'] == 'fcn_resnet18_shapes' and float(written[0]['gmacs']) > 0
    assert float(written[0]['gflops_per_s']) > 0


def test_inference_benchmark_mkldnn_path_runs():
    script = load_script('scripts/benchmark/inference.py')
    rows = script.main(['--models', 'deeplab_resnet18_shapes', '--sizes', '40', '--warmup', '1',
                        '--repeat', '1', '--mkldnn'])
    assert rows[0]['mode'] == 'mkldnn' and rows[0]['median_s'] > 0
