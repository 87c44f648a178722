"""Registry entries of the ImageNet ResNetV1b backbones (``resnet50_v1s``, ...)."""
from ..data.classes import IMAGENET_NUM_CLASSES
from .registry import Weights, register_model
from .resnetv1b import RESNET_SPECS, RESNET_VARIANTS, resnet_v1b

# Published ImageNet weights: name -> (full SHA-1, top-1 accuracy in % or None when the
# GluonCV model-zoo page lists none).
IMAGENET_WEIGHTS = {
    'resnet18_v1b': ('2d9d980c990442f826f20781ed039851e78dabe3', 70.94),
    'resnet50_v1b': ('0ecdba34691be172036ddf244ff1b2eade75ffde', 77.67),
    'resnet101_v1b': ('a455932aa95cb7dcfa05fd040b9b5a5660733c39', None),
    'resnet50_v1d': ('117a384ecf61490eb31ea147eb0e61e6d2b8a449', None),
    'resnet101_v1d': ('1b2b825feff86b0354642a4ab59f9b6e35e47338', 80.51),
    'resnet50_v1s': ('25a187fa281ddc98afbcd0cc0f0646885b874b80', None),
    'resnet101_v1s': ('bd93a83c05f709a803b1221aeff0b028e6eebb03', None),
    'resnet152_v1s': ('cf74621d988ad06c6c6aa44f5597e5b600a966cc', None),
}


def _imagenet_weights(name):
    if name not in IMAGENET_WEIGHTS:
        return []
    sha1, top1 = IMAGENET_WEIGHTS[name]
    return [Weights(sha1, metrics={'top1': top1} if top1 else {},
                    protocol='ImageNet val, single 224 crop' if top1 else '',
                    source='GluonCV model zoo')]


def _register_resnets():
    for depth in RESNET_SPECS:
        for variant in RESNET_VARIANTS:
            name = 'resnet%d_%s' % (depth, variant)

            def builder(depth=depth, variant=variant, pretrained_base=False, root=None,
                        **kwargs):
                del pretrained_base, root  # a backbone is its own base
                return resnet_v1b(depth, variant, **kwargs)

            register_model(name, task='classification', dataset='imagenet',
                           classes=IMAGENET_NUM_CLASSES,
                           architecture='ResNet-%d %s' % (depth, variant),
                           weights=_imagenet_weights(name))(builder)


_register_resnets()
