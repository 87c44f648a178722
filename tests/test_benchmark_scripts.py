"""The benchmark scripts run and report consistent numbers (tiny settings; no timing asserts)."""
import csv
import importlib.util
import json
import os
import shutil

import pytest

from test_docs import ROOT, load_script

pytestmark = pytest.mark.benchmark   # deselected by default; -m benchmark runs it


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


def test_inference_benchmark_times_the_graph_with_the_aux_head_too(capsys):
    script = load_script('scripts/benchmark/inference.py')
    rows = script.main(['--models', 'deeplab_resnet18_shapes', '--sizes', '40', '--warmup', '0',
                        '--repeat', '1', '--aux-head'])
    assert [r['mode'] for r in rows] == ['hybrid', 'hybrid+aux-head']
    assert 'leaving the auxiliary head out of the inference graph saves' in \
        capsys.readouterr().out
    # The auxiliary head on ResNet-18's stage 3 (256 channels, 5x5 at 1/8 of 40x40): a 3x3
    # conv to 64 channels and a 1x1 conv to the 4 Shapes classes.
    net = script.gluonseg.get_model('deeplab_resnet18_shapes', pretrained_base=False)
    shape = (1, 3, 40, 40)
    extra = script.count_macs(script.with_aux_head(net, 'net'), shape) - \
        script.count_macs(net, shape)
    assert extra == 5 * 5 * (256 * 9 * 64 + 64 * 4)
    with pytest.raises(SystemExit):
        script.main(['--models', 'deeplab_resnet18_shapes', '--aux-head', '--dtype', 'int8'])


def test_paste_benchmark_times_each_box_range():
    script = load_script('scripts/benchmark/paste.py')
    rows = script.main(['--image', '64x80', '--count', '3', '--boxes', '5-20', '30-60',
                        '--warmup', '0', '--repeat', '1'])
    assert [(r['boxes'], r['count'], r['image']) for r in rows] == [
        ('5-20', 3, '64x80'), ('30-60', 3, '64x80')]
    assert all(r['median_s'] > 0 for r in rows)
    with pytest.raises(SystemExit):
        script.main(['--boxes', '20-5'])


def test_compare_peers_writes_every_column_a_chart_and_a_table(tmp_path):
    """gluonseg's paths on a tiny input, each measured in its own process."""
    script = load_script('scripts/benchmark/compare_peers.py')
    rows = script.main(['--models', 'fcn', '--depth', '18', '--size', '32x40', '--impls',
                        'gluonseg', 'onnxruntime', '--paths', 'fp32', 'int8', '--warmup', '1',
                        '--repeat', '1', '--threads', '1', '--out-dir', str(tmp_path)])
    assert [(r['impl'], r['model'], r['path']) for r in rows] == [
        ('gluonseg', 'fcn', 'fp32'), ('gluonseg', 'fcn', 'int8'), ('onnxruntime', 'fcn', 'fp32')]
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
        assert float(row['peak_rss_mb']) > 50 and 'gluonseg' in row['version']
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
                           'venv (docs/benchmarks.md), never a gluonseg dependency')
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


def test_merge_csv_replaces_only_the_measured_models_rows(tmp_path):
    """optimize_mask_rcnn_accuracy.py re-run for one model keeps the other models' rows of
    the committed accuracy CSV (FPN and C4 rows) and their order."""
    timing = load_script('scripts/benchmark/_timing.py')
    fields = load_script('scripts/benchmark/optimize_mask_rcnn_accuracy.py').FIELDS
    out = tmp_path / 'acc.csv'
    shutil.copyfile(os.path.join(ROOT, 'scripts', 'benchmark', 'results',
                                 'mask_rcnn_int8_accuracy.csv'), str(out))
    with open(out) as f:
        before = list(csv.DictReader(f))
    fpn, c4 = 'mask_rcnn_fpn_resnet18_v1b_small', 'mask_rcnn_resnet18_v1b_small'
    assert {r['model'] for r in before} == {fpn, c4} and before[0]['model'] == fpn
    others = [r for r in before if r['model'] != fpn]

    # the first model re-measured (two paths only): its rows where its old ones were
    new = [dict(model=fpn, path='float32', mask_AP=50.0, eval_s=1.5),
           dict(model=fpn, path='int8-naive', mask_AP=49.5, eval_s=1.0)]
    timing.merge_csv(str(out), new, fields, key='model')
    with open(out) as f:
        reader = csv.DictReader(f)
        after = list(reader)
    assert reader.fieldnames == fields
    assert [(r['model'], r['path'], r['mask_AP']) for r in after[:2]] == [
        (fpn, 'float32', '50.0'), (fpn, 'int8-naive', '49.5')]
    assert after[2:] == others and after[0]['box_AP'] == ''

    # a model not in the file yet: appended, nothing else touched
    timing.merge_csv(str(out), [dict(model='other', path='float32')], fields, key='model')
    with open(out) as f:
        assert list(csv.DictReader(f))[:-1] == after
    assert out.read_text().splitlines()[-1].startswith('other,float32,')
    assert [p.name for p in tmp_path.iterdir()] == ['acc.csv']  # no temporary file left

    # a missing file is created
    timing.merge_csv(str(tmp_path / 'new.csv'), new, fields, key='model')
    with open(tmp_path / 'new.csv') as f:
        assert [r['path'] for r in csv.DictReader(f)] == ['float32', 'int8-naive']


def test_mask_rcnn_accuracy_script_keeps_other_models_rows(tmp_path, monkeypatch):
    """run() merges its rows by model (the evaluation faked: no training, no model)."""
    script = load_script('scripts/benchmark/optimize_mask_rcnn_accuracy.py')
    out = tmp_path / 'acc.csv'
    out.write_text('model,path,mask_AP\nc4,float32,70.0\nfpn,float32,10.0\n'
                   'fpn,int8-naive,11.0\n')

    class FakeEval(object):
        @staticmethod
        def main(argv):
            prefix = argv[argv.index('--save-prefix') + 1]
            with open(prefix + '_metrics.json', 'w') as f:
                json.dump({'segm/AP': 0.5, 'bbox/AP': 0.4, 'segm/AP50': 0.9, 'seconds': 1.0,
                           'model': 'fpn'}, f)
            with open(prefix + '_bbox.json', 'w') as f:
                json.dump([{'image_id': 1, 'category_id': 1, 'score': 0.9,
                            'bbox': [0, 0, 10, 10]}], f)

    monkeypatch.setattr(script, 'instance_script', lambda name: FakeEval)
    monkeypatch.setattr(script, 'load_checkpoint',
                        lambda path: type('Ckpt', (), {'meta': {'model': {'name': 'fpn'}}}))
    script.run(script.parse_args(['--checkpoint', 'unused.ckpt', '--save-dir', str(tmp_path),
                                  '--paths', 'float32', '--csv', str(out)]))
    with open(out) as f:
        assert [(r['model'], r['path'], r['mask_AP']) for r in csv.DictReader(f)] == [
            ('c4', 'float32', '70.0'), ('fpn', 'float32', '50.0')]
