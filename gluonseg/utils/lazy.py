"""Package attributes imported on first use (PEP 562).

Most of gluonseg imports MXNet, which takes seconds; the registry, the weights table, the
dataset catalog and the command-line options do not. A package whose ``__init__`` imported
its modules eagerly would make every ``import gluonseg.<package>.<plain module>`` pay for
MXNet, so the packages name their exports here and import each on first access.
"""
from importlib import import_module
from importlib.util import find_spec

__all__ = ['lazy_exports']


def lazy_exports(package, exports):
    """``(__getattr__, __dir__, __all__)`` for ``package`` (its ``__name__``).

    ``exports`` maps a module (relative to ``package``, or absolute when it contains a dot
    after a leading name, e.g. ``'gluonseg.model_zoo'``) to the names it defines. Any other
    public attribute that is a submodule (``package.shapes``) is imported on access too.
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    public = sorted(module_of)

    def __getattr__(name):
        if name in module_of:
            module = module_of[name]
            full = module if module.startswith(package.split('.')[0] + '.') else \
                '%s.%s' % (package, module)
            value = getattr(import_module(full), name)
            import_module(package).__dict__[name] = value  # later accesses skip this
            return value
        if not name.startswith('_') and find_spec('%s.%s' % (package, name)):
            return import_module('%s.%s' % (package, name))
        raise AttributeError('module %r has no attribute %r' % (package, name))

    def __dir__():
        return sorted(set(import_module(package).__dict__) | set(public))

    return __getattr__, __dir__, public
