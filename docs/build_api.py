"""Build the API reference (HTML) from gluonseg's docstrings with pdoc.

    pip install -e ".[docs]"
    python docs/build_api.py                 # writes docs/api/ (open docs/api/index.html)
    python docs/build_api.py -o /tmp/api     # anywhere else

Every public module is documented, including those a package's ``__all__`` leaves out (the
Mask R-CNN training engine, the dataset loaders' modules); modules whose name starts with an
underscore are left out. Docstrings are read as numpydoc. tests/test_api_docs.py builds it.
"""
import argparse
import os
import pathlib
import pkgutil
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def public_modules(package_name='gluonseg'):
    """Names of the package and all its public submodules, sorted."""
    package = __import__(package_name)
    names = [package_name]
    for info in pkgutil.walk_packages(package.__path__, package_name + '.'):
        if not any(part.startswith('_') for part in info.name.split('.')):
            names.append(info.name)
    return sorted(names)


def build(output_dir):
    """Write the HTML reference into ``output_dir``; returns the documented module names."""
    import pdoc
    import pdoc.render
    pdoc.render.configure(docformat='numpy', search=True, show_source=True)
    modules = public_modules()
    with warnings.catch_warnings():
        # a package spec already adds its submodules: repeating one is harmless
        warnings.filterwarnings('ignore', message='The module specification')
        pdoc.pdoc(*modules, r'!gluonseg(\..*)?\._.*', output_directory=pathlib.Path(output_dir))
    return modules


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('-o', '--output-dir', default=os.path.join(HERE, 'api'))
    args = parser.parse_args(argv)
    modules = build(args.output_dir)
    print('documented %d modules in %s' % (len(modules), args.output_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
