"""The benchmark scripts run and report consistent numbers (tiny settings; no timing asserts)."""
import csv
import importlib.util

import pytest

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


def test_compare_peers_writes_every_column_a_chart_and_a_table(tmp_path):
    """gluonseg's paths on a tiny input, each measured in its own process."""
    script = load_script('scripts/benchmark/compare_peers.py')
    rows = script.main(['--models', 'fcn', '--depth', '18', '--size', '32x40', '--impls',
                        'gluonseg', '--paths', 'fp32', 'int8', '--warmup', '1', '--repeat',
                        '1', '--threads', '1', '--out-dir', str(tmp_path)])
    assert [(r['impl'], r['model'], r['path']) for r in rows] == [
        ('gluonseg', 'fcn', 'fp32'), ('gluonseg', 'fcn', 'int8')]
    with open(tmp_path / 'peers.csv') as f:
        reader = csv.DictReader(f)
        written = list(reader)
    assert reader.fieldnames == script.FIELDS
    for row in written:
        assert row['input'] == '1x3x32x40' and float(row['median_s']) > 0
        assert float(row['images_per_s']) == pytest.approx(1 / float(row['median_s']), rel=1e-2)
        # the same work (gluonseg's graph) for every path; GFLOP/s = 2 * GMAC / latency
        assert float(row['gmacs']) == float(written[0]['gmacs']) > 0
        # each child process holds MXNet and a model: well above 50 MiB
        assert float(row['peak_rss_mb']) > 50 and row['version'].startswith('gluonseg')
    png = (tmp_path / 'peers.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    table = (tmp_path / 'peers.md').read_text()
    assert '| fcn | 32x40 | gluonseg | int8 |' in table and 'Measured ' in table


def test_compare_peers_reports_a_failed_measurement_and_goes_on(tmp_path, capsys,
                                                                monkeypatch):
    script = load_script('scripts/benchmark/compare_peers.py')
    monkeypatch.setitem(script.NAMES, 'psp', ('psp_resnet{depth}_nosuchdata', None))
    rows = script.main(['--models', 'psp', 'fcn', '--depth', '18', '--size', '32',
                        '--impls', 'gluonseg', '--paths', 'fp32', '--warmup', '0', '--repeat',
                        '1', '--threads', '1', '--out-dir', str(tmp_path)])
    assert [r['model'] for r in rows] == ['fcn']
    out = capsys.readouterr().out
    assert "FAILED psp: counting its work failed: gluonseg.model_zoo.registry.UnknownModelError" \
        in out
    assert 'psp_resnet18_nosuchdata' in (tmp_path / 'peers.md').read_text()


@pytest.mark.skipif(importlib.util.find_spec('torchvision') is None,
                    reason='torchvision is an optional peer, installed only in the benchmark '
                           'venv (docs/deploy.md), never a gluonseg dependency')
def test_compare_peers_measures_torchvision_on_the_same_input(tmp_path):
    script = load_script('scripts/benchmark/compare_peers.py')
    rows = script.main(['--models', 'deeplab', '--depth', '50', '--size', '64', '--impls',
                        'gluonseg', 'torchvision', '--paths', 'fp32', '--warmup', '0',
                        '--repeat', '1', '--out-dir', str(tmp_path)])
    assert [r['impl'] for r in rows] == ['gluonseg', 'torchvision']
    assert rows[0]['gmacs'] == rows[1]['gmacs'] and rows[1]['version'].startswith('torchvision')


def test_train_speed_splits_data_and_compute(tmp_path):
    script = load_script('scripts/benchmark/train_speed.py')
    out = tmp_path / 'train.csv'
    rows = script.main(['--models', 'fcn', '--crop-size', '32', '--base-size', '40',
                        '--warmup', '1', '--iters', '2', '--workers', '0', '1', '--images', '4',
                        '--root', str(tmp_path / 'voc'), '--csv', str(out)])
    assert [(r['model'], r['batch'], r['workers']) for r in rows] == [
        ('fcn_resnet50_voc', 2, 0), ('fcn_resnet50_voc', 2, 1)]
    for row in rows:  # workers hand batches over in shared memory
        assert row['data_s_per_iter'] > 0 and row['compute_s_per_iter'] > 0
        step = row['data_s_per_iter'] + row['compute_s_per_iter']
        assert row['images_per_s'] == pytest.approx(2 / step, rel=1e-2)
        assert 0 < row['data_share'] < 1
    with open(out) as f:
        assert [r['workers'] for r in csv.DictReader(f)] == ['0', '1']
