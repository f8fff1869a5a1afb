"""``xtuner copy-cfg NAME DIR``: write a shipped config to ``DIR/NAME_copy.py`` for editing.

The copy is one self-contained file in v0's five sections (Settings, Model & Tokenizer, Dataset &
Dataloader, Scheduler & Optimizer, Runtime) whose dicts refer to its Settings, so editing a
Settings line changes what runs: a catalog entry is rendered by its template, a config that
inherits through ``read_base`` gets its bases written in, a self-contained one is copied as it
is. ``--keep-bases`` copies the config and the files it inherits from instead (same layout, so
the inheritance still resolves). An existing file is never replaced without ``--force``.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.errors import UsageError
from xtuner.utils.paths import resolve_config


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner copy-cfg", description=__doc__)
    parser.add_argument("config_name", help="catalog name (see `xtuner list-cfg`) or a file")
    parser.add_argument("save_dir", help="folder to write NAME_copy.py into")
    parser.add_argument("--keep-bases", action="store_true",
                        help="copy the config and its base files instead of one file")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    return parser.parse_args(argv)


def _single_file(source: Path) -> str:
    """The one self-contained text to write for ``source``."""
    from xtuner.engine.config import (
        config_source_text,
        flatten_config,
        inline_config,
        render_leaf,
    )
    from xtuner.utils.paths import configs_dir

    rendered = render_leaf(source)  # its header names the catalog entry
    if rendered is not None:
        return rendered
    try:
        where = (f"the catalog entry '{source.stem}', made by `xtuner copy-cfg` from:\n"
                 f"#     configs/{source.relative_to(configs_dir()).as_posix()}")
    except ValueError:
        where = f"{source.name}, made by `xtuner copy-cfg` from:\n#     {source}"
    header = f"# Copy of {where}\n"
    text = config_source_text(source)  # a file that inherits nothing
    if text is not None:
        return header + text
    if "read_base" in source.read_text(encoding="utf-8"):
        return header + inline_config(source)
    # An mmengine `_base_` config that is not a catalog leaf: write the resolved config.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xtuner_copy_") as tmp:
        flat = flatten_config(source, Path(tmp) / source.name).read_text(encoding="utf-8")
    return header + flat


def _files_to_write(source: Path, save_dir: Path, keep_bases: bool) -> dict[Path, str]:
    target = save_dir / f"{source.stem}_copy.py"
    if not keep_bases:
        return {target: _single_file(source)}
    from xtuner.engine.config import base_files

    bases = base_files(source)
    root = Path(os.path.commonpath([source.parent, *(b.parent for b in bases)]))
    files = {save_dir / source.parent.relative_to(root) / target.name:
             source.read_text(encoding="utf-8")}
    for base in bases:
        files[save_dir / base.relative_to(root)] = base.read_text(encoding="utf-8")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = resolve_config(args.config_name)
    save_dir = Path(args.save_dir)
    if save_dir.exists() and not save_dir.is_dir():
        raise UsageError(f"save_dir '{save_dir}' exists and is not a folder")
    files = _files_to_write(source, save_dir, args.keep_bases)
    # The copy itself is never replaced (it may hold the user's edits); a base file already
    # there with the same text (an earlier --keep-bases copy) is no loss.
    leaf = next(iter(files))
    clash = [p for p, text in files.items() if p.exists() and (
        p == leaf or p.is_dir() or p.read_text(encoding="utf-8") != text)]
    if clash and not args.force:
        raise UsageError(f"{clash[0]} exists; pass --force to replace it"
                         + (f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""))
    for path, text in files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:  # a read-only or impossible place (/proc/x)
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}; pick another "
                             "save_dir") from None
    extra = f" with {len(files) - 1} base files" if len(files) > 1 else ""
    print(f"Copied {source.stem}{extra} to {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner copy-cfg"))
