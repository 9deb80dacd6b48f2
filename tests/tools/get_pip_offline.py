"""Stand-in for pypa's get-pip.py, for ansible-test's pip bootstrap.

ansible-test creates its sanity venvs without pip and then runs get-pip.py, which it downloads from
a host our build machines cannot reach. This script does what get-pip.py does with the same
arguments, from sources we do have: the standard library's bundled pip (ensurepip), then
`pip install` of the requested packages from PyPI. tests/run places it in ansible-test's cache.
"""

import subprocess
import sys

# get-pip.py's own flags, which are not pip options.
OWN_FLAGS = {"--no-setuptools", "--no-wheel"}


def main():
    args = [arg for arg in sys.argv[1:] if arg not in OWN_FLAGS]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
    subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    main()
