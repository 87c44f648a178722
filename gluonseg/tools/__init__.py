"""Command-line tools shared by the scripts and the ``gluonseg`` command."""
