# The cffi extension built from csrc/ (ffi_build.py): typed loosely, as cffi
# objects are; the modules that use it give their own functions real types.
from typing import Any

ffi: Any
lib: Any
