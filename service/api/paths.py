"""Server paths in requests and error texts: files under the data root only, shown relative to it."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException


#: Characters of a refused path shown in the error.
MAX_SHOWN = 200


def safe_path(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse anything that escapes it or does not exist.

    Raises:
        HTTPException: 422 naming ``path`` for an escape attempt, a missing file, or a path the
            system cannot use (too long, a component too long: the reason given; long paths shown cut).
    """
    shown = repr(relative if len(relative) <= MAX_SHOWN else relative[:MAX_SHOWN] + "…")
    if "\x00" in relative:
        raise HTTPException(422, "path: NUL byte not allowed")
    try:
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise HTTPException(422, f"path: {shown} is outside the data root")
        if not target.is_file():
            raise HTTPException(422, f"path: no file {shown} under the data root")
    except (OSError, ValueError) as e:
        raise HTTPException(422, f"path: {shown} cannot be used ({getattr(e, 'strerror', None) or e})") from None
    return target


def relative_paths(text: str, data_root: Path, jobs_dir: Path) -> str:
    """An error text with server paths shown relative to the data root (``jobs/<id>/...`` for job folders)."""
    for root, shown in ((jobs_dir, "jobs"), (data_root, "")):
        for form in dict.fromkeys((str(root), str(Path(root).resolve()))):
            text = text.replace(form + "/", f"{shown}/" if shown else "").replace(form, shown or ".")
    return text
