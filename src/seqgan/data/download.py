"""Fetch the official DailyDialog zip into a cache directory (progress bar, optional sha256)."""

from __future__ import annotations

import hashlib
import http.client
import io
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from seqgan.config import DataConfig
from seqgan.errors import DataError
from seqgan.rundir import atomic_write_bytes


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Download url to dest atomically; a failure or a wrong checksum raises DataError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            buf = io.BytesIO()
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", file=sys.stderr,
                      leave=False) as bar:
                while chunk := resp.read(1 << 16):
                    buf.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e) or type(e).__name__  # e.g. IncompleteRead: a cut-off transfer
        raise DataError(f"download of {url} failed: {reason}; give data.path=LOCAL_FOLDER instead") from None
    data = buf.getvalue()
    if total is not None and len(data) < total:
        raise DataError(f"download of {url} was cut off after {len(data):,} of {total:,} bytes; run the same "
                        "command again, or give data.path=LOCAL_FOLDER")
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256.lower():
            raise DataError(f"download of {url}: sha256 {got} does not match the expected {sha256}")
    atomic_write_bytes(dest, data)
    return dest


def _extract(zip_path: Path, out: Path) -> None:
    """Extract the official zip; its split folders come as nested zips (train.zip, ...)."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(tmp)
        for inner in list(tmp.rglob("*.zip")):
            with zipfile.ZipFile(inner) as z:
                z.extractall(inner.parent)
    except (zipfile.BadZipFile, zlib.error, EOFError):  # not a zip, or a damaged member's data
        shutil.rmtree(tmp, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{zip_path} is not a valid zip archive (removed; it will be downloaded again)") from None
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def fetch_dailydialog(cfg: DataConfig) -> Path:
    """The extracted official DailyDialog folder in the cache, downloaded on first use."""
    cache = Path(cfg.cache_dir).expanduser() / "dailydialog"
    out = cache / "extracted"
    if out.exists():
        return out
    zip_path = cache / "ijcnlp_dailydialog.zip"
    if not zip_path.exists():
        print(f"downloading DailyDialog from {cfg.download_url} into {cache}", file=sys.stderr)
        download(cfg.download_url, zip_path, cfg.download_sha256)
    _extract(zip_path, out)
    return out
