"""scripts/benchmark/data_pipeline.py runs end to end with tiny settings (no timing asserts)."""
import math

import pytest

from test_docs import load_script

pytestmark = pytest.mark.benchmark   # deselected by default; -m benchmark runs it


def test_data_pipeline_benchmark_runs(tmp_path, capsys):
    script = load_script('scripts/benchmark/data_pipeline.py')
    results = script.main(['--images', '6', '--image-size', '40x30', '--base-size', '36', '--crop-size', '32',
                           '--batch-size', '2', '--workers', '0', '2', '--metric-batch', '2',
                           '--metric-size', '24', '--metric-repeat', '2', '--logits', '--root', str(tmp_path)])
    assert sorted(results['loader']) == [0, 2]
    assert all(rate > 0 and not math.isnan(rate) for rate in results['loader'].values())
    assert sorted(results['metric']) == ['ids', 'logits'] and all(t > 0 for t in results['metric'].values())
    out = capsys.readouterr().out
    assert 'num_workers=2' in out and 'wrote 6 40x30 JPEGs' in out
    # the tree is kept with --root and reused on the next run
    assert len(list((tmp_path / 'VOCdevkit' / 'VOC2012' / 'JPEGImages').iterdir())) == 6
