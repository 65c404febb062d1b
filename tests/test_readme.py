"""README.rst's examples run as written (with the test server's port)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks():
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
        text = f.read()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    return [re.sub(r"^    ", "", b, flags=re.M) for b in blocks]


def test_readme_client_and_worker_run_as_written(gearmand):
    blocks = readme_blocks()
    client = next(b for b in blocks if "submit_job" in b)
    worker = next(b for b in blocks if "register_function" in b)
    env = dict(os.environ, PYTHONPATH=ROOT)

    def as_run(code):
        return code.replace('"127.0.0.1", 4730', f'"{gearmand.host}", {gearmand.port}')

    server = subprocess.Popen([sys.executable, "-c", as_run(worker)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out = subprocess.run([sys.executable, "-c", as_run(client)], env=env,
                             capture_output=True, text=True, timeout=30)
    finally:
        server.kill()
        server.wait()
    assert out.returncode == 0, out.stderr
    assert "progress 1/1" in out.stdout
    assert "result: b'olleh' error: None" in out.stdout
