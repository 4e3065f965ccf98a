"""Files from a Debian package, without installing it: `apt-get download` the pinned .deb (or take one the user
downloaded), check its sha256, and read members of its data archive. Corpora that no PyPI package ships come
this way (`offline_assets.md`): the package manager is reachable where the Hub is not."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..utils import cache_dir

DEB_ENV = "HF_MEMMIT_DEB_DIR"  # a folder of .deb files downloaded by hand (machines without apt-get)


DEBIAN_MIRROR = "http://deb.debian.org/debian/"


def deb_path(package: str, version: str, sha256: str, pool: str | None = None) -> Path:
    """The pinned .deb, from `$HF_MEMMIT_DEB_DIR`, the cache, or downloaded into the cache: `apt-get download`, or
    where that fails (no apt-get, no package lists) the Debian mirror's `pool` path; refused unless its sha256
    matches."""
    name = f"{package}_{version}_all.deb"
    candidates = [Path(os.environ[DEB_ENV]) / name] if os.environ.get(DEB_ENV) else []
    cached = cache_dir() / "debian" / name
    for path in [*candidates, cached]:
        if path.is_file():
            return _checked(path, sha256)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        got, why = Path(tmp) / name, "apt-get is missing"
        if shutil.which("apt-get"):
            run = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, capture_output=True,
                                 text=True, check=False)
            why = f"`apt-get download {package}={version}` failed: {run.stderr.strip()[-300:]}"
        if not got.is_file() and pool:
            _download(DEBIAN_MIRROR + pool + name, got)
        if not got.is_file():
            raise RuntimeError(f"{name} is needed and {why}: download it from a Debian mirror into a folder and "
                               f"set {DEB_ENV} to that folder")
        _checked(got, sha256)
        os.replace(got, cached)  # atomic: a reader sees no .deb or the whole checked one
    return cached


def _download(url: str, path: Path) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            path.write_bytes(response.read())
    except OSError:
        path.unlink(missing_ok=True)  # the caller reports the missing file


def _checked(path: Path, sha256: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{path} has sha256 {digest}; expected {sha256} (a different or damaged package)")
    return path


def deb_members(path: Path, suffixes: tuple[str, ...]) -> dict[str, bytes]:
    """Files of the package's data archive whose path ends with one of `suffixes`, by path. A .deb is an `ar`
    archive holding `data.tar.{xz,gz,zst,...}`; tarfile reads xz and gz."""
    archive = _ar_members(path.read_bytes())
    data = next((body for name, body in archive.items() if name.startswith("data.tar")), None)
    if data is None:
        raise RuntimeError(f"{path} has no data archive (members: {sorted(archive)})")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(suffixes):
                out[member.name] = tar.extractfile(member).read()
    return out


def _ar_members(raw: bytes) -> dict[str, bytes]:
    """Members of a System V `ar` archive: 60-byte headers (name, ..., size in decimal), 2-byte aligned bodies."""
    if not raw.startswith(b"!<arch>\n"):
        raise RuntimeError("not a Debian package (no ar magic)")
    members, pos = {}, 8
    while pos + 60 <= len(raw):
        header = raw[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        members[name] = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


__all__ = ["deb_members", "deb_path"]
