"""The distributions users install.

- The sdist holds every file the build, the tests and the examples need; it
  installs in a fresh venv, and ``python -m build`` works in its unpacked tree.
- The binary wheel (``tools/build_wheel.py``: built, then ``auditwheel
  repair``) carries libev and is tagged for the stable ABI; it installs with
  no compiler on PATH and runs where the system libev cannot be loaded.

Each installed copy is imported from outside the source tree and does an ECHO
round trip with the suite's gearmand. These tests build and compile several
times (about a minute and a half), so they are marked ``packaging``: run by
``make test-packaging`` and CI, left out of the default ``make test``.
"""
from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

pytestmark = pytest.mark.packaging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by each installed copy, from a directory outside the source tree.
ROUND_TRIP = r'''
import ctypes, os, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "masked":
    # The control: the system libev must really be out of reach here.
    try:
        ctypes.CDLL("libev.so.4")
    except OSError:
        pass
    else:
        sys.exit("the system libev can still be loaded")
import gearman_ev
from gearman_ev import Gearman, ev
here = os.path.dirname(os.path.abspath(gearman_ev.__file__))
assert not here.startswith(os.environ["SOURCE_TREE"]), here
with open("/proc/self/maps") as f:
    mapped = sorted({l.split()[-1] for l in f if "/libev" in l.split()[-1]})
if mode != "plain":
    libs = os.path.join(os.path.dirname(here), "gearman_ev.libs") + os.sep
    assert mapped and all(p.startswith(libs) for p in mapped), mapped
loop = ev.Loop()
got = []
g = Gearman(host, port, loop=loop)
g.echo(b"round trip", lambda result, err: (got.append((result, err)), loop.stop()))
loop.timer(10, 0, lambda w, revents: loop.stop()).start()
loop.start()
assert got == [(b"round trip", None)], got
print("ok", ev.version(), mapped)
'''


def run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def interpreters():
    """The Python of the suite, and the oldest and newest supported ones that
    pyenv has (the abi3 wheel must install and run on both)."""
    found = [sys.executable]
    pyenv = shutil.which("pyenv")
    for v in ("3.9", "3.13"):
        if f"{sys.version_info[0]}.{sys.version_info[1]}" == v:
            continue
        exe = None
        if pyenv:
            proc = subprocess.run([pyenv, "prefix", v], capture_output=True, text=True)
            cand = os.path.join(proc.stdout.strip(), "bin", f"python{v}")
            if proc.returncode == 0 and os.path.exists(cand):
                exe = cand
        exe = exe or shutil.which(f"python{v}")
        if exe:
            found.append(exe)
        elif os.environ.get("CI") == "true":
            found.append(f"missing python{v}")  # fails in venv(): CI has them all
    return found


def venv(where, python=sys.executable):
    assert not python.startswith("missing"), python
    run([python, "-m", "venv", where])
    return os.path.join(where, "bin", "python")


def round_trip(py, gearmand, cwd, mode, wrap=()):
    env = dict(os.environ, SOURCE_TREE=ROOT)
    env.pop("PYTHONPATH", None)
    out = run([*wrap, py, "-c", ROUND_TRIP, gearmand.host, gearmand.port, mode],
              cwd=cwd, env=env)
    assert out.stdout.startswith("ok"), out.stdout
    return out.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "-o", out, ROOT])
    (path,) = glob.glob(str(out / "gearman_ev-*.tar.gz"))
    return path


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory):
    """The repaired wheel, built from the sdist as a packager would."""
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = run([sys.executable, os.path.join(ROOT, "tools", "build_wheel.py"),
                "-o", out, "--from-sdist", sdist])
    path = proc.stdout.strip().splitlines()[-1]
    assert os.path.dirname(path) == str(out)
    return path


def source_files():
    """What a source tree holds that the sdist must carry too."""
    patterns = ["csrc/*.c", "csrc/*.h", "csrc/*.py", "gearman_ev/*.py", "gearman_ev/py.typed",
                "tests/*.py", "eg/*.py", "bench/*.py", "docs/*.rst", "docs/*.py",
                "docs/*/*.rst", "tools/*", ".ci/*"]
    found = {os.path.relpath(p, ROOT) for pat in patterns
             for p in glob.glob(os.path.join(ROOT, pat)) if os.path.isfile(p)}
    return found | {"LICENSE", "README.rst", "pyproject.toml", "setup.py", "MANIFEST.in",
                    "Makefile"}


def test_sdist_holds_what_the_build_and_the_tests_need(sdist):
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    need = source_files()
    # the files whose absence broke 0.1.0's sdist, named so a glob typo cannot hide them
    for f in ("csrc/ffi_build.py", "csrc/ffi_cdef.h", "csrc/ffi_source.c", "csrc/gm_proto.h",
              "tests/conftest.py", "tests/fix_gearmand.py", "eg/demo.py", "docs/conf.py",
              "docs/index.rst", "bench/benchmark.py", "LICENSE"):
        assert f in need
    assert sorted(need - names) == []
    leftovers = [n for n in names if n.endswith((".so", ".o", ".pyc")) or "_build/" in n
                 or n == "gearman_ev/_ffi.c"]
    assert leftovers == []


def test_sdist_metadata(sdist):
    with tarfile.open(sdist) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.count("/") == 1
                     and m.name.endswith("/PKG-INFO")]
        meta = tar.extractfile(member).read().decode()
    assert "License-Expression: MIT" in meta
    assert "License-File: LICENSE" in meta
    for minor in range(9, 14):
        assert f"Classifier: Programming Language :: Python :: 3.{minor}" in meta
    assert "Requires-Python: >=3.9" in meta


def test_sdist_installs_in_a_fresh_venv(sdist, gearmand, tmp_path):
    py = venv(tmp_path / "venv")
    run([py, "-m", "pip", "install", "-q", sdist])
    round_trip(py, gearmand, tmp_path, "plain")


def test_build_runs_in_the_unpacked_sdist(sdist, tmp_path):
    shutil.unpack_archive(sdist, tmp_path)
    (src,) = glob.glob(str(tmp_path / "gearman_ev-*"))
    run([sys.executable, "-m", "build", "-o", tmp_path / "out", src])
    built = sorted(os.listdir(tmp_path / "out"))
    # an unrepaired wheel keeps the plain linux tag (it links the system libev)
    assert built == [f"gearman_ev-0.1.0-cp39-abi3-linux_{platform.machine()}.whl",
                     os.path.basename(sdist)]


def test_wheel_is_tagged_and_carries_libev(wheel):
    name = os.path.basename(wheel)
    # stable ABI from 3.9 on; a manylinux tag that auditwheel vouched for
    assert name.startswith("gearman_ev-0.1.0-cp39-abi3-manylinux"), name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        tags = [line for line in z.read("gearman_ev-0.1.0.dist-info/WHEEL").decode().splitlines()
                if line.startswith("Tag: ")]
        licence = z.read("gearman_ev.libs/LICENSE.libev").decode()
    assert tags and all(t.startswith("Tag: cp39-abi3-manylinux") for t in tags), tags
    assert "gearman_ev/_ffi.abi3.so" in names
    assert [n for n in names if n.startswith("gearman_ev.libs/libev")], names
    assert "Marc Alexander Lehmann" in licence
    assert "gearman_ev-0.1.0.dist-info/licenses/LICENSE" in names


def mask_system_libev(tmp_path):
    """A command prefix that runs its command in a private mount namespace
    where every system copy of libev is an empty file; None unless root."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    files = sorted({os.path.realpath(p) for p in glob.glob("/usr/lib/*/libev.so*")
                    + glob.glob("/usr/lib/libev.so*") + glob.glob("/usr/local/lib/libev.so*")})
    assert files, "no system libev to hide (it is what the build linked)"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    mounts = " && ".join(f"mount --bind {empty} {f}" for f in files)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && exec "$0" "$@"']


@pytest.mark.parametrize("python", interpreters(),
                         ids=lambda p: "default" if p == sys.executable else os.path.basename(p))
def test_wheel_runs_without_compiler_or_system_libev(wheel, gearmand, tmp_path, python):
    py = venv(tmp_path / "venv", python)
    bindir = os.path.dirname(py)
    # No compiler can be found, and none may be needed: binary packages only.
    env = dict(os.environ, PATH=bindir, CC="/bin/false", CXX="/bin/false")
    run([py, "-m", "pip", "install", "-q", "--only-binary", ":all:", wheel], env=env)

    (ext,) = glob.glob(str(tmp_path / "venv" / "lib" / "python3*" / "site-packages"
                           / "gearman_ev" / "_ffi.abi3.so"))
    site = os.path.dirname(os.path.dirname(ext))
    # ldd: the extension finds libev inside the wheel, never the system's.
    ldd = run(["ldd", ext]).stdout
    libev = [line.split() for line in ldd.splitlines() if "libev" in line]
    assert len(libev) == 1, ldd
    assert os.path.normpath(libev[0][2]).startswith(os.path.join(site, "gearman_ev.libs")), ldd

    wrap = mask_system_libev(tmp_path)
    if wrap:
        out = round_trip(py, gearmand, tmp_path, "masked", wrap)
    else:
        # Not root: /proc/self/maps still shows which libev was loaded.
        out = round_trip(py, gearmand, tmp_path, "bundled")
    assert "gearman_ev.libs/libev" in out
