#!/usr/bin/env python3
"""Writes the dependency recipe of the cargo workspace: what `cargo build` needs to build every
dependency, and nothing of shopmind's own code.

    scripts/cargo-recipe.py SRC DEST

DEST gets Cargo.toml and Cargo.lock of the workspace root, each member's Cargo.toml, and a stub for
each target root that exists in SRC (an empty `lib.rs`; `fn main() {}` for binaries, build scripts,
tests, benches and examples). The recipe changes only when a manifest or the lock file changes, so
the Dockerfile's dependency layer, built from it, is reused after a change to the source alone.
The Dockerfile runs this in its `planner` stage; scripts/validate-deploy.sh checks its output.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tomllib
from pathlib import Path

LIB_STUB = "// dependency recipe stub (scripts/cargo-recipe.py)\n"
MAIN_STUB = "// dependency recipe stub (scripts/cargo-recipe.py)\nfn main() {}\n"
TARGET_TABLES = ("bin", "test", "bench", "example")


def members(src: Path, root: dict) -> list[Path]:
    """The package directories of the workspace, root package first."""
    ws = root.get("workspace") or {}
    excluded = {(src / e).resolve() for e in ws.get("exclude") or []}
    dirs = [src] if "package" in root else []
    for pattern in ws.get("members") or []:
        for d in sorted(glob.glob(str(src / pattern))):
            p = Path(d).resolve()
            if p not in excluded and (p / "Cargo.toml").is_file() and p not in dirs:
                dirs.append(p)
    return dirs


def target_roots(pkg_dir: Path, manifest: dict) -> dict[Path, str]:
    """Each target root file of a package that exists, with the stub it gets."""
    roots: dict[Path, str] = {}

    def add(rel: str | None, stub: str) -> None:
        if rel and (pkg_dir / rel).is_file():
            roots[Path(rel)] = stub

    add((manifest.get("lib") or {}).get("path") or "src/lib.rs", LIB_STUB)
    add("src/main.rs", MAIN_STUB)
    for p in sorted(pkg_dir.glob("src/bin/*.rs")) + sorted(pkg_dir.glob("src/bin/*/main.rs")):
        add(str(p.relative_to(pkg_dir)), MAIN_STUB)
    build = (manifest.get("package") or {}).get("build", "build.rs")
    if isinstance(build, str):
        add(build, MAIN_STUB)
    for table in TARGET_TABLES:
        for target in manifest.get(table) or []:
            add(target.get("path"), MAIN_STUB)
    return roots


def write_recipe(src: Path, dest: Path) -> list[Path]:
    """Writes the recipe; returns the files written, relative to DEST."""
    src = src.resolve()
    root = tomllib.loads((src / "Cargo.toml").read_text())
    written: list[Path] = []
    if dest.exists():
        shutil.rmtree(dest)

    def put(rel: Path, text: str) -> None:
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        os.chmod(out, 0o644)
        written.append(rel)

    put(Path("Cargo.lock"), (src / "Cargo.lock").read_text())
    for pkg_dir in members(src, root):
        rel_dir = pkg_dir.relative_to(src)
        text = (pkg_dir / "Cargo.toml").read_text()
        put(rel_dir / "Cargo.toml", text)
        for rel, stub in target_roots(pkg_dir, tomllib.loads(text)).items():
            put(rel_dir / rel, stub)
    return sorted(written)


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: scripts/cargo-recipe.py SRC DEST", file=sys.stderr)
        return 2
    files = write_recipe(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"cargo-recipe: {len(files)} files in {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
