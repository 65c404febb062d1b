"""Build gearman_ev._ffi: the C protocol core plus the libev binding, in one
extension module compiled by cffi in out-of-line API mode.

How libev is found is decided here and only here: GEARMAN_EV_LIBEV_PREFIX,
then pkg-config, then the usual prefixes. When it cannot be found the build
stops with a message naming the package to install.

Switches (environment): GEARMAN_EV_DEBUG=1 builds with -O0 -g;
GEARMAN_EV_SANITIZE=1 adds AddressSanitizer and UBSan.
"""
import glob
import os
import shutil
import subprocess
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# setuptools wants source paths relative to the project root.
SOURCES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(HERE, "gm_*.c")))

MISSING_LIBEV = """
gearman_ev needs libev and its header ev.h, which were not found.
Install them first:
    Debian/Ubuntu:   apt-get install libev-dev
    Fedora/RHEL:     dnf install libev-devel
    macOS:           brew install libev
or point GEARMAN_EV_LIBEV_PREFIX at the prefix that holds include/ev.h.
"""


def _read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def _pkg_config():
    if not shutil.which("pkg-config"):
        return None
    try:
        cflags = subprocess.run(["pkg-config", "--cflags-only-I", "libev"],
                                capture_output=True, text=True, check=True).stdout
        libs = subprocess.run(["pkg-config", "--libs-only-L", "libev"],
                              capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return None
    return ([f[2:] for f in cflags.split() if f.startswith("-I")],
            [f[2:] for f in libs.split() if f.startswith("-L")])


def find_libev():
    """(include_dirs, library_dirs) for libev, or exit with MISSING_LIBEV."""
    prefix = os.environ.get("GEARMAN_EV_LIBEV_PREFIX")
    prefixes = [prefix] if prefix else []
    if not prefix:
        found = _pkg_config()
        if found is not None:
            return found
        prefixes = ["/usr", "/usr/local", "/opt/homebrew", "/opt/local"]
    for p in prefixes:
        for inc in (os.path.join(p, "include"), os.path.join(p, "include", "libev")):
            if os.path.exists(os.path.join(inc, "ev.h")):
                if inc == "/usr/include":
                    return [], []  # the compiler's own default paths
                return [inc], [os.path.join(p, "lib")]
    sys.stderr.write(MISSING_LIBEV)
    raise SystemExit("error: libev not found (install libev-dev)")


def _compile_args():
    args = ["-std=gnu99", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    link = []
    if os.environ.get("GEARMAN_EV_DEBUG") == "1":
        args += ["-O0", "-g"]
    else:
        args += ["-O2"]
    if os.environ.get("GEARMAN_EV_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        args += san + ["-g"]
        link += san
    return args, link


include_dirs, library_dirs = find_libev()
extra_compile_args, extra_link_args = _compile_args()

ffibuilder = FFI()
ffibuilder.cdef(_read("ffi_cdef.h"))
ffibuilder.set_source(
    "gearman_ev._ffi",
    _read("ffi_source.c"),
    sources=SOURCES,
    include_dirs=[HERE] + include_dirs,
    library_dirs=library_dirs,
    libraries=["ev"],
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

if __name__ == "__main__":
    os.chdir(ROOT)  # rebuild gearman_ev/_ffi*.so in place
    ffibuilder.compile(tmpdir=".", verbose=True)
