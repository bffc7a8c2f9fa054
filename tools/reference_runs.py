"""Small helpers shared by the scripts that drive the reference framework (no nequip import).

``run`` starts a reference command (``nequip-train``, ``nequip-package``) with one thread, at
low priority, echoing it; ``deflate`` recompresses a ``torch.package`` zip (which stores its
members uncompressed) with the same members, which the reference reads alike.
"""

import os
import subprocess
import zipfile


def run(*command):
    """Run a command with ``OMP_NUM_THREADS=1`` at nice 19; raise if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    print("$", " ".join(map(str, command)), flush=True)
    subprocess.run(["nice", "-n", "19", *map(str, command)], check=True, env=env)


def deflate(path):
    """Rewrite a zip archive with the same members, deflate-compressed."""
    partial = path.with_name(path.name + ".partial")
    with (
        zipfile.ZipFile(path) as src,
        zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    os.replace(partial, path)
