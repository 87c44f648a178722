"""gluonseg against GluonCV and torchvision on this CPU: latency, images/s, GFLOP/s, memory.

One run measures every available implementation and path of the chosen models on the same
input (one normalized random image; torchvision's Mask R-CNN, which normalizes inside, gets
its sigmoid, in [0, 1]) with the same threads, each in its own process (so that its peak
resident memory, ``ru_maxrss``, is its own): ``--warmup`` runs, then the median of
``--repeat``.

=================  =========================================================================
impl               paths
=================  =========================================================================
gluonseg           ``fp32`` hybridized (Mask R-CNN: lean ``net.detect``), ``fused`` / ``bf16``
                   / ``int8``: ``gluonseg.optimize(net, dtype)`` (Mask R-CNN: no bf16; int8
                   quantizes the backbone, the RPN's convs, the box head (C4's stage 4,
                   FPN's FCs) and the mask head)
gluoncv            ``fp32`` hybridized, as published (Mask R-CNN: its 1000-row output; and
                   with 100 rows, ``--gluoncv-max-dets``)
torchvision        ``fp32`` eval mode under ``torch.inference_mode()``
onnxruntime        ``fp32``: gluonseg's model exported by ``export_onnx`` (Mask R-CNN: its
                   one-graph output, ``max_dets`` rows) in onnxruntime's CPU provider
=================  =========================================================================

Models (``--models``), all with random weights (nothing is downloaded) and no auxiliary
head; the semantic models of gluonseg (also exported to onnxruntime) and GluonCV get the
same rule, He-normal weights and identity BatchNorms (:func:`initialize_alike`): weights
that shrink the activations to subnormal floats slow a CPU down several times. They are
``fcn``, ``psp``, ``deeplab`` (ResNet-101 ``--depth``, ``--size`` 480x480; torchvision has no PSPNet) and ``mask_rcnn_c4``,
``mask_rcnn_fpn`` (ResNet-50, ``--rcnn-size`` 800x1088; torchvision has FPN only). Not in
the default run, GluonCV's other families, gluonseg and GluonCV only: ``deeplab_resnest``
(ResNeSt-50), ``danet``, ``icnet`` (ResNet-50), ``vplr`` (DeepLabV3+, WideResNet-38) at
``--size``, and ``fastscnn`` at ``--fastscnn-size`` (1024x2048); GluonCV builds each for the
input's size, which its ICNet and Fast-SCNN need. The
architectures differ in details: torchvision's ResNet is v1.5 (stride in the 3x3 conv, one
7x7 stem) where gluonseg and GluonCV use v1s (deep stem) for the semantic models, and its
Mask R-CNN RPN conv is 256 wide (1024 in GluonCV's and gluonseg's).

GFLOP/s is the same work for every implementation of a model: 2 x the multiply-adds of
the gluonseg graph (``gluonseg.utils.flops.count_macs``; Mask R-CNN: 1000 proposals through
the box head, 100 detections through the mask head) divided by the median latency.
Mask R-CNN keeps the detections scoring >= 0.001, at most 100 (torchvision:
``box_score_thresh=0.001``); ``detections`` says how many rows each returned. GluonCV
is imported in a process where PyTorch is hidden: GluonCV 0.10 refuses to import beside
torch >= 2.0.

Writes ``peers.csv``, ``peers.png`` (bar chart, matplotlib) and ``peers.md`` (the table
with date, machine and versions) into ``--out-dir``::

    python scripts/benchmark/compare_peers.py --out-dir bench     # everything, ~15 min
    python scripts/benchmark/compare_peers.py --models fcn --depth 18 --size 32 \\
        --impls gluonseg --paths fp32 int8 --warmup 1 --repeat 1 --out-dir /tmp/smoke
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _timing import (machine_description, median_seconds, parse_size, peak_rss_mb,  # noqa: E402
                     print_result, print_row, run_child, write_csv)

IMPLS = ('gluonseg', 'gluoncv', 'torchvision', 'onnxruntime')
PATHS = ('fp32', 'fused', 'bf16', 'int8')
FIELDS = ['impl', 'model', 'path', 'input', 'median_s', 'images_per_s', 'gmacs',
          'gflops_per_s', 'peak_rss_mb', 'detections', 'version', 'threads']
SEMANTIC = ('fcn', 'psp', 'deeplab')
# The other published families, one model each (gluonseg and GluonCV only).
ZOO = ('deeplab_resnest', 'danet', 'icnet', 'fastscnn', 'vplr')
INSTANCE = ('mask_rcnn_c4', 'mask_rcnn_fpn')
# gluonseg (and GluonCV) model names; torchvision builder names (None: not in torchvision).
NAMES = {'fcn': ('fcn_resnet{depth}_voc', 'fcn_resnet{depth}'),
         'psp': ('psp_resnet{depth}_voc', None),
         'deeplab': ('deeplab_resnet{depth}_voc', 'deeplabv3_resnet{depth}'),
         'mask_rcnn_c4': ('mask_rcnn_resnet50_v1b_coco', None),
         'mask_rcnn_fpn': ('mask_rcnn_fpn_resnet50_v1b_coco', 'maskrcnn_resnet50_fpn'),
         'deeplab_resnest': ('deeplab_resnest50_ade', None),
         'danet': ('danet_resnet50_citys', None),
         'icnet': ('icnet_resnet50_citys', None),
         'fastscnn': ('fastscnn_citys', None),
         'vplr': ('deeplab_v3b_plus_wideresnet_citys', None)}
GLUON_DTYPES = {'fused': 'float32', 'bf16': 'bfloat16', 'int8': 'int8'}
SCORE_THRESH, MAX_DETS = 0.001, 100


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=list(SEMANTIC + INSTANCE),
                        choices=SEMANTIC + ZOO + INSTANCE,
                        help='default: %s; also %s' % (' '.join(SEMANTIC + INSTANCE),
                                                      ' '.join(ZOO)))
    parser.add_argument('--impls', nargs='+', default=list(IMPLS), choices=IMPLS,
                        help='implementations to measure when installed (default: all)')
    parser.add_argument('--paths', nargs='+', default=list(PATHS), choices=PATHS,
                        help="gluonseg's paths (the peers run fp32)")
    parser.add_argument('--size', default='480', help='semantic models input, H or HxW')
    parser.add_argument('--rcnn-size', default='800x1088', help='Mask R-CNN input HxW')
    parser.add_argument('--fastscnn-size', default='1024x2048',
                        help='Fast-SCNN input HxW (a Cityscapes frame)')
    parser.add_argument('--depth', type=int, default=101, choices=[18, 50, 101],
                        help='ResNet depth of the semantic models (18: gluonseg\'s Shapes '
                             'models, no peer has them; for quick checks)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--rcnn-warmup', type=int, default=1)
    parser.add_argument('--rcnn-repeat', type=int, default=3)
    parser.add_argument('--gluoncv-max-dets', type=int, nargs='+', default=[1000, 100],
                        help="GluonCV Mask R-CNN output rows: 1000 as published (the mask "
                             "head on all of them), 100 (its private _rcnn_max_dets: the "
                             "mask head on gluonseg's kept 100 only)")
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                        help='OMP/MKL/torch threads of every implementation (default: cores)')
    parser.add_argument('--out-dir', default='.', help='where peers.csv/.png/.md go')
    parser.add_argument('--child', help=argparse.SUPPRESS)  # one measurement, JSON spec
    args = parser.parse_args(argv)
    # Fail early on a bad size.
    parse_size(args.size), parse_size(args.rcnn_size), parse_size(args.fastscnn_size)
    return args


# ---------------------------------------------------------------- the child processes
def measure(spec):
    """Build one implementation's model, time it; returns the result dict (in the child)."""
    height, width = spec['height'], spec['width']
    runner = {'gluonseg': _gluonseg, 'gluoncv': _gluoncv, 'torchvision': _torchvision,
              'onnxruntime': _onnxruntime}
    fn, version, detections = runner[spec['impl']](spec, height, width)
    median = median_seconds(fn, spec['warmup'], spec['repeat'])
    return dict(median_s=median, version=version, detections=detections(),
                peak_rss_mb=round(peak_rss_mb(), 1))


def _alike_init(name):
    import mxnet as mx
    if name.endswith(('gamma', 'running_var')):
        return mx.init.One()
    if name.endswith(('bias', 'beta', 'running_mean')):
        return mx.init.Zero()
    return mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)


def initialize_alike(net):
    """The same weight rule for every MXNet semantic model: He-normal weights, BatchNorm as
    identity, so activations keep their scale through the network. A random initialization
    that shrinks them (MXNet's default uniform) reaches subnormal floats, which this CPU
    computes many times slower: the timing would measure them, not the network."""
    for name, param in net.collect_params().items():
        param.initialize(init=_alike_init(name), force_reinit=True)


def _random_image(height, width, scale=1.0):
    import numpy as np
    return (np.random.RandomState(0).randn(1, 3, height, width) * scale).astype('float32')


def _kept(ids, scores):
    """Rows of an MXNet detector's output that are detections scoring >= SCORE_THRESH."""
    ids, scores = ids[0, :, 0].asnumpy(), scores[0, :, 0].asnumpy()
    return int(((ids >= 0) & (scores >= SCORE_THRESH)).sum())


def _gluonseg(spec, height, width):
    import warnings
    warnings.simplefilter('ignore', UserWarning)
    import mxnet as mx
    import gluonseg
    x = mx.nd.array(_random_image(height, width))
    version = 'gluonseg %s, mxnet %s' % (gluonseg.__version__, mx.__version__)
    path = spec['path']
    if spec['model'] in INSTANCE:
        mx.random.seed(0)
        net = gluonseg.get_model(spec['name'], pretrained_base=False)
        net.hybridize()
        if path == 'fp32':
            detector = net.detect
        else:
            detector = gluonseg.optimize(net, dtype=GLUON_DTYPES[path],
                                         calib_data=[x * 0.9]).detect
        out = []

        def run():
            out[:] = detector(x, SCORE_THRESH, MAX_DETS)
            mx.nd.waitall()
        return run, version, lambda: _kept(out[0], out[1])
    net = gluonseg.get_model(spec['name'], pretrained_base=False, aux=False)
    initialize_alike(net)
    if path == 'fp32':
        net.hybridize(static_alloc=True, static_shape=True)
    else:
        calib = [mx.nd.array(_random_image(height, width, 0.9))]
        net = gluonseg.optimize(net, dtype=GLUON_DTYPES[path], calib_data=calib,
                                num_calib_batches=1)
    return (lambda: net(x).wait_to_read()), version, lambda: ''


def _gluoncv(spec, height, width):
    import warnings
    warnings.simplefilter('ignore')
    sys.modules['torch'] = None  # GluonCV 0.10 raises on torch >= 2.0: import it without
    import mxnet as mx
    import gluoncv
    x = mx.nd.array(_random_image(height, width))
    version = 'gluoncv %s, mxnet %s' % (gluoncv.__version__, mx.__version__)
    kwargs = dict(pretrained=False, pretrained_base=False)
    if spec['model'] == 'deeplab':
        kwargs.update(aux=False, height=height, width=width)
    elif spec['model'] in SEMANTIC:  # their output size is fixed by crop_size
        kwargs.update(aux=False, crop_size=height)
    elif spec['model'] in ZOO:  # built for this input size, as its golden outputs were
        kwargs.update(aux=False, crop_size=height, height=height, width=width,
                      base_size=max(height, width))
        if spec['model'] == 'fastscnn':
            del kwargs['pretrained_base']  # it has no ImageNet backbone
    mx.random.seed(0)
    net = gluoncv.model_zoo.get_model(spec['name'], **kwargs)
    if spec['model'] in INSTANCE:
        net._rcnn_max_dets = spec['max_dets']  # read when the graph is built (first call)
    if spec['model'] in INSTANCE:
        # Blocks built from symbols (its FPN) have parameters without an initializer of
        # their own: ones for scales and variances, zeros for shifts and means, Xavier.
        for name, param in net.collect_params().items():
            if param._data is None and param._deferred_init == ():
                param.initialize(init=_alike_init(name))
    else:
        initialize_alike(net)
    net.hybridize(static_alloc=True, static_shape=True)
    out = []

    def run():
        out[:] = net(x)
        mx.nd.waitall()
    if spec['model'] in INSTANCE:
        return run, version, lambda: _kept(out[0], out[1])
    return run, version, lambda: ''


def _onnxruntime(spec, height, width):
    import tempfile
    import warnings
    warnings.simplefilter('ignore', UserWarning)
    import mxnet as mx
    import onnxruntime as ort
    import gluonseg
    from gluonseg.model_zoo.onnx_export import export_onnx
    instance = spec['model'] in INSTANCE
    mx.random.seed(0)
    net = gluonseg.get_model(spec['name'], pretrained_base=False,
                             **({'max_dets': MAX_DETS} if instance else {'aux': False}))
    if not instance:
        initialize_alike(net)
    net.hybridize()
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec['threads']
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:  # the session holds the graph in memory
        path = export_onnx(net, os.path.join(folder, 'model.onnx'),
                           input_shape=(1, 3, height, width))
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    del net
    x = _random_image(height, width)
    version = 'onnxruntime %s, gluonseg %s export' % (ort.__version__, gluonseg.__version__)
    out = []

    def run():
        out[:] = session.run(None, {'data': x})
    if instance:  # outputs ids, scores, boxes, masks
        return run, version, lambda: int(((out[0][0, :, 0] >= 0)
                                          & (out[1][0, :, 0] >= SCORE_THRESH)).sum())
    return run, version, lambda: ''


def _torchvision(spec, height, width):
    import torch
    import torchvision
    torch.set_num_threads(spec['threads'])
    version = 'torchvision %s, torch %s' % (torchvision.__version__, torch.__version__)
    torch.manual_seed(0)
    if spec['model'] in INSTANCE:
        from torchvision.models import detection
        # min/max size = the input's: no resize inside (the other implementations get the
        # image at this size too).
        model = getattr(detection, spec['torch_name'])(
            weights=None, weights_backbone=None, box_score_thresh=SCORE_THRESH,
            box_detections_per_img=MAX_DETS, min_size=min(height, width),
            max_size=max(height, width)).eval()
        images = [torch.from_numpy(_random_image(height, width)[0]).sigmoid()]
        out = []

        def run():
            with torch.inference_mode():
                out[:] = model(images)
        return run, version, lambda: int(len(out[0]['boxes']))
    from torchvision.models import segmentation
    model = getattr(segmentation, spec['torch_name'])(
        weights=None, weights_backbone=None, aux_loss=False, num_classes=21).eval()
    x = torch.from_numpy(_random_image(height, width))

    def run():
        with torch.inference_mode():
            model(x)['out']
    return run, version, lambda: ''


def count_gmacs(spec):
    """Multiply-adds (G) of the gluonseg graph of a model at the spec's input (in a child)."""
    import warnings
    warnings.simplefilter('ignore', UserWarning)
    import gluonseg
    from gluonseg.utils.flops import count_macs
    shape = (1, 3, spec['height'], spec['width'])
    if spec['model'] in INSTANCE:
        net = gluonseg.get_model(spec['name'], pretrained_base=False, max_dets=MAX_DETS)
    else:
        net = gluonseg.get_model(spec['name'], pretrained_base=False, aux=False)
    return dict(gmacs=count_macs(net, shape) / 1e9)


# ---------------------------------------------------------------- the parent
def available(impl):
    """Whether ``impl`` is installed (found, not imported: the parent stays small)."""
    return importlib.util.find_spec(impl) is not None


def measure_in_child(spec, threads):
    """Run one measurement in a fresh process; (result dict, None) or (None, error text)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return run_child([os.path.abspath(__file__), '--child', json.dumps(spec)], env)


def plan(args):
    """The (impl, model, path, spec) measurements of this run, in order."""
    jobs = []
    for model in args.models:
        instance = model in INSTANCE
        height, width = parse_size(args.rcnn_size if instance else
                                   args.fastscnn_size if model == 'fastscnn' else args.size)
        gluon_name, torch_name = NAMES[model]
        gluon_name = gluon_name.format(depth=args.depth)
        if args.depth == 18 and model in SEMANTIC:
            gluon_name, torch_name = gluon_name.replace('_voc', '_shapes'), None
        base = dict(model=model, height=height, width=width, threads=args.threads,
                    warmup=args.rcnn_warmup if instance else args.warmup,
                    repeat=args.rcnn_repeat if instance else args.repeat)
        for impl in args.impls:
            if impl == 'torchvision':
                if torch_name is None:
                    continue
                paths = ['fp32']
            elif impl == 'onnxruntime':
                paths = ['fp32']
            elif impl == 'gluoncv':
                if gluon_name.endswith('_shapes'):
                    continue
                if instance:
                    jobs.extend(dict(base, impl=impl, path='fp32', name=gluon_name,
                                     max_dets=rows) for rows in args.gluoncv_max_dets)
                    continue
                paths = ['fp32']
            else:
                paths = [p for p in args.paths if not (instance and p == 'bf16')]
            for path in paths:
                spec = dict(base, impl=impl, path=path, name=gluon_name,
                            torch_name=torch_name and torch_name.format(depth=args.depth))
                jobs.append(spec)
    return jobs


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        result = count_gmacs(spec) if spec.get('action') == 'macs' else measure(spec)
        print_result(result)
        return result
    os.makedirs(args.out_dir, exist_ok=True)
    missing = [impl for impl in args.impls if not available(impl)]
    for impl in missing:
        print('%s is not installed: not measured' % impl)
    args.impls = [impl for impl in args.impls if impl not in missing]
    print('%s; %d threads; warmup %d / %d (Mask R-CNN %d / %d)'
          % (machine_description(), args.threads, args.warmup, args.repeat,
             args.rcnn_warmup, args.rcnn_repeat), flush=True)
    gmacs, rows, skipped = {}, [], []
    template = ('{impl:11s} {model:13s} {path:5s} {input:12s} {median_s:8.3f} s '
                '{images_per_s:7.2f} img/s {gflops_per_s:7.1f} GFLOP/s {peak_rss_mb:7.0f} MiB '
                '{detections}')
    for spec in plan(args):
        if spec['model'] not in gmacs:
            result, error = measure_in_child(dict(spec, action='macs'), args.threads)
            gmacs[spec['model']] = result and result['gmacs']
            if error:
                skipped.append('%s: counting its work failed: %s' % (spec['model'], error))
                print('FAILED ' + skipped[-1], flush=True)
        if gmacs[spec['model']] is None:
            continue
        result, error = measure_in_child(spec, args.threads)
        if error:
            skipped.append('%s %s %s: %s' % (spec['impl'], spec['model'], spec['path'], error))
            print('FAILED ' + skipped[-1], flush=True)
            continue
        work = gmacs[spec['model']]
        row = dict(impl=spec['impl'], model=spec['model'], path=spec['path'],
                   input='1x3x%dx%d' % (spec['height'], spec['width']),
                   median_s=round(result['median_s'], 4),
                   images_per_s=round(1.0 / result['median_s'], 3),
                   gmacs=round(work, 1),
                   gflops_per_s=round(2 * work / result['median_s'], 1),
                   peak_rss_mb=result['peak_rss_mb'], detections=result['detections'],
                   version=result['version'], threads=args.threads)
        rows.append(row)
        print_row(template, row)
    write_csv(os.path.join(args.out_dir, 'peers.csv'), rows, FIELDS)
    write_markdown(os.path.join(args.out_dir, 'peers.md'), rows, args, skipped)
    if rows:
        plot(os.path.join(args.out_dir, 'peers.png'), rows)
    print('wrote %s' % ', '.join(os.path.join(args.out_dir, 'peers.' + e)
                                 for e in ('csv', 'md', 'png')))
    return rows


def write_markdown(path, rows, args, skipped):
    """The table, with the date, machine, threads and versions, atomically."""
    versions = sorted({r['version'] for r in rows})
    lines = ['Measured %s on %s (Python %s), %d threads; median of %d after %d warm-up runs '
             '(Mask R-CNN: %d after %d); random weights, batch 1. Versions: %s.'
             % (datetime.date.today().isoformat(), machine_description(),
                platform.python_version(), args.threads, args.repeat, args.warmup,
                args.rcnn_repeat, args.rcnn_warmup, '; '.join(versions)), '',
             '| model | input | impl | path | latency (s) | images/s | GFLOP/s | peak RSS (MiB) '
             '| detections |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append('| %s | %s | %s | %s | %.3f | %.2f | %.1f | %.0f | %s |'
                     % (r['model'], r['input'].split('x', 2)[-1], r['impl'], r['path'],
                        r['median_s'], r['images_per_s'], r['gflops_per_s'],
                        r['peak_rss_mb'], r['detections']))
    if skipped:
        lines += [''] + ['Not measured: %s' % s for s in skipped]
    from gluonseg.utils.atomic import write_atomically
    write_atomically(path, lambda f: f.write('\n'.join(lines) + '\n'), binary=False)


def plot(path, rows):
    """Images/s per implementation and path, one panel per model; written atomically."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = list(dict.fromkeys(r['model'] for r in rows))
    colors = {'gluonseg': '#1f77b4', 'gluoncv': '#ff7f0e', 'torchvision': '#2ca02c',
              'onnxruntime': '#9467bd'}
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r['model'] == model]
        labels = ['%s\n%s%s' % (r['impl'], r['path'],
                                ' %s dets' % r['detections'] if r['detections'] != '' else '')
                  for r in mine]
        values = [r['images_per_s'] for r in mine]
        bars = ax.bar(range(len(mine)), values, color=[colors[r['impl']] for r in mine])
        for bar, value in zip(bars, values):
            ax.annotate('%.2g' % value, (bar.get_x() + bar.get_width() / 2, value),
                        ha='center', va='bottom', fontsize=7)
        ax.set_xticks(range(len(mine)))
        ax.set_xticklabels(labels, fontsize=7, rotation=60)
        ax.set_title('%s %s' % (model, mine[0]['input'].split('x', 2)[-1]), fontsize=9)
        ax.set_ylabel('images/s' if ax is axes[0][0] else '')
        ax.margins(y=0.15)
    fig.suptitle('%s, %s threads' % (machine_description(), rows[0]['threads']), fontsize=9)
    fig.tight_layout()
    from gluonseg.utils.atomic import write_atomically
    write_atomically(path, lambda f: fig.savefig(f, format='png', dpi=110))
    plt.close(fig)


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
