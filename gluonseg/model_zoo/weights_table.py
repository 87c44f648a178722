"""Every model name gluonseg ships and every published weight file, as plain data.

The registry (:mod:`.registry`), ``predict``'s preprocessing and the generated model tables
(README.md, docs/model_zoo.md) read these records; nothing else states these facts. It is a
Python module rather than a JSON file so that facts carry their comments, the combinations
(method x depth x dataset) are written once as loops, and it installs and imports like any
module; it imports only the dataset catalog and two constants, never MXNet or a model file, so
``gluonseg models`` answers without MXNet.

:data:`MODELS` maps a name to its record:

* ``task``: ``'semantic'``, ``'instance'`` or ``'classification'``;
* ``dataset``: a :data:`gluonseg.data.catalog.DATASETS` name; the catalog gives the display
  name, the class names and count and the protocol of published numbers;
* ``architecture``: the text shown in the model tables;
* ``builder``: ``'module:function'`` called as ``function(**kwargs, pretrained_base=...,
  root=..., **the caller's kwargs)``, imported only when a model is built;
* ``mean``, ``std``: the RGB normalization the weights expect (0..1 pixel scale);
* ``resize``: how ``predict`` resizes an image first: None (at its own size), or
  ``{'short': S, 'max_size': M}`` (shorter side to S, longer side at most M), or
  ``{'short': S, 'crop': C}`` (ImageNet: shorter side to S, centre crop C).

:data:`WEIGHTS` maps a name to its weight files, the default first: ``sha1`` (full SHA-1 of
the ``.params`` file, downloaded from the published store), ``metrics`` (in %, as published),
``source``, and optionally ``protocol`` (default: the dataset's). :data:`COST` holds the
parameter count and the multiply-adds of each name with weights, written by
``python scripts/update_model_tables.py --measure`` (:func:`gluonseg.utils.flops.count_macs`
on the inputs of :data:`COST_INPUT_SHAPE`); a test recomputes some of them.

Adding a model family (DANet, say): write its model file (a class taking ``nclass``,
``backbone``, ``pretrained_base``, ``root``); add one line to :data:`SEMANTIC_METHODS`, which
registers ``danet_resnet{50,101,152}_{voc,coco,ade,citys}`` and the Shapes sizes; add one
:data:`WEIGHTS` entry per published file; run ``python scripts/update_model_tables.py
--measure`` (fills :data:`COST` and the docs). Another task or a non-ResNet family adds its
names to :data:`MODELS` with a loop like those below.
"""
from ..data.catalog import DATASETS
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ['MODELS', 'WEIGHTS', 'COST', 'COST_INPUT_SHAPE', 'SEMANTIC_METHODS',
           'SEMANTIC_DEPTHS', 'RESIZE_RULES']

GLUONCV = 'GluonCV model zoo'

# How predict resizes an image for each task (see the module docstring).
RESIZE_RULES = {
    'semantic': None,  # the networks take any size; outputs come at the input's
    'instance': {'short': 800, 'max_size': 1333},
    'classification': {'short': 256, 'crop': 224},
}

# Semantic method -> (its model class, the architecture's name).
SEMANTIC_METHODS = {
    'fcn': ('gluonseg.model_zoo.fcn:FCN', 'FCN'),
    'psp': ('gluonseg.model_zoo.pspnet:PSPNet', 'PSPNet'),
    'deeplab': ('gluonseg.model_zoo.deeplabv3:DeepLabV3', 'DeepLabV3'),
    'danet': ('gluonseg.model_zoo.danet:DANet', 'DANet'),
    'icnet': ('gluonseg.model_zoo.icnet:ICNet', 'ICNet'),
}

# Fixed builder arguments of some methods: DANet and ICNet were published without the
# auxiliary FCN head (their classes refuse aux=True; the training tool reads this default).
METHOD_KWARGS = {'danet': {'aux': False}, 'icnet': {'aux': False}}

# Semantic method -> the datasets of its names on the dilated ResNeSt backbones.
RESNEST_METHODS = {'deeplab': ('voc', 'coco', 'ade', 'citys')}
RESNEST_DEPTHS = (50, 101, 200, 269)

# Families without an ImageNet ResNet backbone: name pattern -> (model class, architecture,
# datasets, fixed builder arguments).
OTHER_SEMANTIC = {
    'fastscnn_%s': ('gluonseg.model_zoo.fastscnn:FastSCNN', 'Fast-SCNN',
                    ('voc', 'coco', 'ade', 'citys', 'shapes'), {}),
    'deeplab_v3b_plus_wideresnet_%s': ('gluonseg.model_zoo.deeplabv3_plus:DeepLabV3Plus',
                                       'DeepLabV3+ (VPLR), WideResNet-38',
                                       ('voc', 'coco', 'ade', 'citys'),
                                       {'backbone': 'wideresnet38', 'aux': False}),
}

# Dataset -> the ResNet depths of its semantic names. The built-in Shapes data also gets the
# small ResNet-18 (trains in minutes on a CPU).
SEMANTIC_DEPTHS = {'voc': (50, 101, 152), 'coco': (50, 101, 152), 'ade': (50, 101, 152),
                   'citys': (50, 101, 152), 'shapes': (18, 50)}

# The ImageNet ResNetV1b classifiers (gluonseg.model_zoo.resnetv1b.RESNET_SPECS/VARIANTS).
RESNET_DEPTHS = (18, 34, 50, 101, 152)
RESNET_VARIANTS = ('v1b', 'v1c', 'v1d', 'v1s')

# The published Mask R-CNN models: (FPN, depth, variant); mask_rcnn() holds their settings.
MASK_RCNN_MODELS = ((False, 18, 'v1b'), (False, 50, 'v1b'), (False, 101, 'v1d'),
                    (True, 18, 'v1b'), (True, 50, 'v1b'), (True, 101, 'v1d'))


def _record(task, dataset, architecture, builder, **kwargs):
    return dict(task=task, dataset=dataset, architecture=architecture, builder=builder,
                kwargs=kwargs, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=RESIZE_RULES[task])


def _models():
    models = {}
    for method, (builder, text) in SEMANTIC_METHODS.items():
        for dataset, depths in SEMANTIC_DEPTHS.items():
            for depth in depths:
                models['%s_resnet%d_%s' % (method, depth, dataset)] = _record(
                    'semantic', dataset, '%s, dilated ResNet-%d' % (text, depth), builder,
                    nclass=DATASETS[dataset].num_classes, backbone='resnet%d' % depth,
                    **METHOD_KWARGS.get(method, {}))
    # MHP-v1 (human parsing) has one published ICNet.
    models['icnet_resnet50_mhpv1'] = _record(
        'semantic', 'mhpv1', 'ICNet, dilated ResNet-50', SEMANTIC_METHODS['icnet'][0],
        nclass=DATASETS['mhpv1'].num_classes, backbone='resnet50', **METHOD_KWARGS['icnet'])
    for method, datasets in RESNEST_METHODS.items():
        builder, text = SEMANTIC_METHODS[method]
        for dataset in datasets:
            for depth in RESNEST_DEPTHS:
                models['%s_resnest%d_%s' % (method, depth, dataset)] = _record(
                    'semantic', dataset, '%s, dilated ResNeSt-%d' % (text, depth), builder,
                    nclass=DATASETS[dataset].num_classes, backbone='resnest%d' % depth,
                    **METHOD_KWARGS.get(method, {}))
    for pattern, (builder, text, datasets, kwargs) in OTHER_SEMANTIC.items():
        for dataset in datasets:
            models[pattern % dataset] = _record('semantic', dataset, text, builder,
                                                nclass=DATASETS[dataset].num_classes, **kwargs)
    for depth in RESNEST_DEPTHS:
        models['resnest%d' % depth] = _record(
            'classification', 'imagenet', 'ResNeSt-%d' % depth,
            'gluonseg.model_zoo.resnest:imagenet_resnest', depth=depth)
    for depth in RESNET_DEPTHS:
        for variant in RESNET_VARIANTS:
            models['resnet%d_%s' % (depth, variant)] = _record(
                'classification', 'imagenet', 'ResNet-%d %s' % (depth, variant),
                'gluonseg.model_zoo.backbones:imagenet_resnet', depth=depth, variant=variant)
    for fpn, depth, variant in MASK_RCNN_MODELS:
        kind = 'FPN' if fpn else 'C4'
        models['mask_rcnn_%sresnet%d_%s_coco' % ('fpn_' if fpn else '', depth, variant)] = \
            _record('instance', 'coco_instance', 'Mask R-CNN %s, ResNet-%d %s'
                    % (kind, depth, variant), 'gluonseg.model_zoo.rcnn.mask_rcnn:mask_rcnn',
                    depth=depth, variant=variant, fpn=fpn)
    return models


MODELS = _models()


def _gluoncv(sha1, **metrics):
    return dict(sha1=sha1, metrics=metrics, source=GLUONCV)


WEIGHTS = {
    # ImageNet top-1 accuracy where GluonCV's model-zoo page lists one.
    'resnet18_v1b': [_gluoncv('2d9d980c990442f826f20781ed039851e78dabe3', top1=70.94)],
    'resnet50_v1b': [_gluoncv('0ecdba34691be172036ddf244ff1b2eade75ffde', top1=77.67)],
    'resnet101_v1b': [_gluoncv('a455932aa95cb7dcfa05fd040b9b5a5660733c39')],
    'resnet50_v1d': [_gluoncv('117a384ecf61490eb31ea147eb0e61e6d2b8a449')],
    'resnet101_v1d': [_gluoncv('1b2b825feff86b0354642a4ab59f9b6e35e47338', top1=80.51)],
    'resnet50_v1s': [_gluoncv('25a187fa281ddc98afbcd0cc0f0646885b874b80')],
    'resnet101_v1s': [_gluoncv('bd93a83c05f709a803b1221aeff0b028e6eebb03')],
    'resnet152_v1s': [_gluoncv('cf74621d988ad06c6c6aa44f5597e5b600a966cc')],
    'fcn_resnet101_voc': [_gluoncv('12c2b9b3be7d4e133e52477150a9b3e616626a82', mIoU=83.6)],
    'fcn_resnet101_coco': [_gluoncv('766cdf9cc3e5b980b141643f054db5b48863f634',
                                    pixAcc=92.2, mIoU=66.2)],
    'fcn_resnet50_ade': [_gluoncv('3479525af7bdbf345e74e150aaae2e48174c0c5f',
                                  pixAcc=79.0, mIoU=39.5)],
    'fcn_resnet101_ade': [_gluoncv('d544440a35586f662ed1a5405ab9aa89cd750558',
                                   pixAcc=80.6, mIoU=41.6)],
    # PSPNet: the bins 1,2,3,6 files of Feb 2019 and later.
    'psp_resnet101_voc': [_gluoncv('2c2f4e1c2b11461b52598a4b2038bccbcfc166eb', mIoU=85.1)],
    'psp_resnet101_coco': [_gluoncv('09f89cad0e107cb2bffdb1b07706ba31798096f2',
                                    pixAcc=92.4, mIoU=70.4)],
    'psp_resnet50_ade': [_gluoncv('3f220f537400dfa607c3d041ed3b172db39b0b01',
                                  pixAcc=80.1, mIoU=41.5)],
    'psp_resnet101_ade': [_gluoncv('240a4758b506447faf7c55cd7a7837d66f5039a6',
                                   pixAcc=80.8, mIoU=43.3)],
    'psp_resnet101_citys': [_gluoncv('d0e8603120ab02118a8973d52a26b8296d1b4078',
                                     pixAcc=96.4, mIoU=79.9)],
    # deeplab_resnet152_voc is the 86.7% of the GluonCV 0.3 release; deeplab_resnet152_coco
    # was published without a number.
    'deeplab_resnet101_voc': [_gluoncv('311ed22c63f3ac28b5f1e1663c458f26600e62da', mIoU=86.2)],
    'deeplab_resnet152_voc': [_gluoncv('d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d', mIoU=86.7)],
    'deeplab_resnet101_coco': [_gluoncv('ed817f76086abb4c3404af62ec1b5487c67642b7',
                                        pixAcc=92.5, mIoU=70.4)],
    'deeplab_resnet152_coco': [_gluoncv('83247aaeeded6988790cd93ac93151514094846f')],
    'deeplab_resnet50_ade': [_gluoncv('c7789b237adc7253405bee57c84d53b15db45942',
                                      pixAcc=80.5, mIoU=42.5)],
    'deeplab_resnet101_ade': [_gluoncv('bf1584dfcec12063eff3075ee643e181c0f6d443',
                                       pixAcc=81.1, mIoU=44.1)],
    'deeplab_resnet50_citys': [_gluoncv('cf6a7bb3d55360933de647a8505f7936003902a4',
                                        pixAcc=96.3, mIoU=78.7)],
    'deeplab_resnet101_citys': [_gluoncv('eb8477a91efc244c85b364c0736664078aaf0e65',
                                         pixAcc=96.4, mIoU=79.4)],
    'resnest50': [_gluoncv('bcfefe1dd1dd1ef5cfed5563123c1490ea37b42e')],
    'resnest101': [_gluoncv('5da943b3230f071525a98639945a6b3b3a45ac95')],
    'resnest200': [_gluoncv('0c5d117df664ace220aa6fc2922c094bb079d381')],
    'resnest269': [_gluoncv('11ae7f5da2bcdbad05ba7e84f9b74383e717f3e3')],
    'deeplab_resnest50_ade': [_gluoncv('a8312db6e30a464151580f2bda83479786455724',
                                       pixAcc=81.2, mIoU=45.1)],
    'deeplab_resnest101_ade': [_gluoncv('6d05c630fb7acb38615f7f4d360fb90f47b25042',
                                        pixAcc=82.1, mIoU=46.9)],
    'deeplab_resnest200_ade': [_gluoncv('9134a6f7d1399b549d5803d8faed3dfc74efc0d8',
                                        pixAcc=82.5, mIoU=48.4)],
    'deeplab_resnest269_ade': [_gluoncv('d45b33dedf4cca13b8147213c5360e30f93685bd',
                                        pixAcc=82.6, mIoU=47.6)],
    'danet_resnet50_citys': [_gluoncv('143e1f1c1c1f2d3a3416887e088ebfdd4e1e2345',
                                      pixAcc=96.3, mIoU=78.5)],
    'danet_resnet101_citys': [_gluoncv('6ead3d099f7a320846bddb51148c3fe3b5ade5c2',
                                       pixAcc=96.5, mIoU=80.1)],
    'icnet_resnet50_citys': [_gluoncv('909742b45d5a3844d6000248aa92fef0ae23a0f0',
                                      pixAcc=95.5, mIoU=74.5)],
    'icnet_resnet50_mhpv1': [_gluoncv('873d381a4bc246c5b9d3660ccf66c2f63d0b4e7c',
                                      pixAcc=90.5, mIoU=44.5)],
    'fastscnn_citys': [_gluoncv('95aad0b699ae17c67caa44b3ead4b23474e98954',
                                pixAcc=95.1, mIoU=72.3)],
    # VPLR: GluonCV publishes the mIoU only.
    'deeplab_v3b_plus_wideresnet_citys': [_gluoncv('ef2bb40ad8f8f59f451969b2fabe4e548394e80a',
                                                   mIoU=83.5)],
    # COCO val2017 box AP and mask AP.
    'mask_rcnn_resnet18_v1b_coco': [_gluoncv('e071cf1550bc0331c218a9072b59e9550595d1e7',
                                             **{'box AP': 31.2, 'mask AP': 28.4})],
    'mask_rcnn_fpn_resnet18_v1b_coco': [_gluoncv('14a922c38b0b196fdb1f7141be4666c10476f426',
                                                 **{'box AP': 34.9, 'mask AP': 30.4})],
    'mask_rcnn_resnet50_v1b_coco': [_gluoncv('a3527fdc2cee5b1f32a61e5fd7cda8fb673e86e5',
                                             **{'box AP': 38.3, 'mask AP': 33.1})],
    'mask_rcnn_fpn_resnet50_v1b_coco': [_gluoncv('1364d0afe4de575af5d4389d50c2dbf22449ceac',
                                                 **{'box AP': 39.2, 'mask AP': 35.4})],
    'mask_rcnn_resnet101_v1d_coco': [_gluoncv('4a3249c584f81c2a9b5d852b742637cd692ebdcb',
                                              **{'box AP': 41.3, 'mask AP': 35.2})],
    'mask_rcnn_fpn_resnet101_v1d_coco': [_gluoncv('89c7d8669b677a05c6eaa25375ead9a174109c69',
                                                  **{'box AP': 42.3, 'mask AP': 37.7})],
}

# The input (N, C, H, W) the multiply-adds of COST are counted on, per task. Mask R-CNN: the
# largest image of its 800/1333 resize, padded to a multiple of 32.
COST_INPUT_SHAPE = {'semantic': (1, 3, 512, 512), 'instance': (1, 3, 800, 1344),
                    'classification': (1, 3, 224, 224)}

# name -> (parameters, GMACs): learned values (BatchNorm statistics and anchors not counted)
# and billions of multiply-adds of the inference output (a semantic model's auxiliary head,
# a training aid, not counted).
# <generated by scripts/update_model_tables.py --measure>
COST = {
    'danet_resnet101_citys': (66578555, 294.16),
    'danet_resnet50_citys': (47586427, 216.58),
    'deeplab_resnest101_ade': (64788364, 250.19),
    'deeplab_resnest200_ade': (86714892, 332.33),
    'deeplab_resnest269_ade': (127442828, 485.21),
    'deeplab_resnest50_ade': (43996588, 166.78),
    'deeplab_resnet101_ade': (61186284, 248.37),
    'deeplab_resnet101_citys': (61118950, 248.24),
    'deeplab_resnet101_coco': (61119978, 248.24),
    'deeplab_resnet101_voc': (61119978, 248.24),
    'deeplab_resnet152_coco': (76763626, 312.12),
    'deeplab_resnet152_voc': (76763626, 312.12),
    'deeplab_resnet50_ade': (42194156, 170.79),
    'deeplab_resnet50_citys': (42126822, 170.66),
    'deeplab_v3b_plus_wideresnet_citys': (137103936, 728.1),
    'fastscnn_citys': (1176278, 0.84),
    'fcn_resnet101_ade': (54537452, 223.3),
    'fcn_resnet101_coco': (54438122, 223.03),
    'fcn_resnet101_voc': (54438122, 223.03),
    'fcn_resnet50_ade': (35545324, 145.72),
    'icnet_resnet50_citys': (47489184, 16.12),
    'icnet_resnet50_mhpv1': (47489184, 16.12),
    'mask_rcnn_fpn_resnet101_v1d_coco': (65779536, 990.07),
    'mask_rcnn_fpn_resnet18_v1b_coco': (32519216, 395.28),
    'mask_rcnn_fpn_resnet50_v1b_coco': (46768176, 905.39),
    'mask_rcnn_resnet101_v1d_coco': (54974092, 1920.95),
    'mask_rcnn_resnet18_v1b_coco': (14364524, 892.28),
    'mask_rcnn_resnet50_v1b_coco': (35962732, 1836.27),
    'psp_resnet101_ade': (68173036, 262.0),
    'psp_resnet101_citys': (68072166, 261.73),
    'psp_resnet101_coco': (68073706, 261.73),
    'psp_resnet101_voc': (68073706, 261.73),
    'psp_resnet50_ade': (49180908, 184.43),
    'resnest101': (48275016, 10.2),
    'resnest200': (70201544, 17.41),
    'resnest269': (110929480, 22.43),
    'resnest50': (27483240, 5.37),
    'resnet101_v1b': (44549160, 7.8),
    'resnet101_v1d': (44568392, 8.04),
    'resnet101_v1s': (44672936, 9.16),
    'resnet152_v1s': (60316584, 12.87),
    'resnet18_v1b': (11689512, 1.81),
    'resnet50_v1b': (25557032, 4.09),
    'resnet50_v1d': (25576264, 4.33),
    'resnet50_v1s': (25680808, 5.44),
}
# </generated>
