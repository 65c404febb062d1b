# Metadata lives in pyproject.toml; this file hooks in the cffi build and tags
# the wheel for the stable ABI: cffi compiles the extension against the
# limited API (gearman_ev/_ffi.abi3.so), so one wheel serves CPython 3.9 and
# later. A free-threaded CPython has no limited API; cffi builds a
# version-specific module there, and the wheel keeps its default tag.
import sysconfig

from setuptools import setup

options = {}
if not sysconfig.get_config_var("Py_GIL_DISABLED"):
    options["bdist_wheel"] = {"py_limited_api": "cp39"}

setup(cffi_modules=["csrc/ffi_build.py:ffibuilder"], options=options)
