"""Where the data files live: in the source tree, or inside the installed wheel."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE.parent


def data_path(name: str) -> Path:
    """Path of a top-level data folder or file (`profiles`, `fixtures`, ...).

    A wheel carries them under `conformance/_data/`; a source checkout (editable install)
    has them at the repository root.
    """
    packaged = _PACKAGE / "_data" / name
    if packaged.exists():
        return packaged
    if name == "results.schema.json":
        return _SOURCE_ROOT / "reports" / name
    return _SOURCE_ROOT / name
