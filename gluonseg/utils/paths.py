"""Where gluonseg keeps its files: ``$GLUONSEG_HOME`` (default ``~/.gluonseg``)."""
import os


def gluonseg_home():
    """The root folder for cached weights (``models/``) and datasets (``datasets/``)."""
    return os.path.expanduser(os.environ.get('GLUONSEG_HOME', os.path.join('~', '.gluonseg')))


def models_dir():
    """Cache folder for weight files."""
    return os.path.join(gluonseg_home(), 'models')


def datasets_dir(name=None):
    """Default root of dataset ``name`` (or the folder holding all datasets)."""
    root = os.path.join(gluonseg_home(), 'datasets')
    return os.path.join(root, name) if name else root
