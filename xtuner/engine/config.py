"""Loading, overriding and flattening xtuner configs (mmengine ``Config``)."""
from __future__ import annotations

import enum
import inspect
import traceback
from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config, ConfigDict

from xtuner.utils.errors import ConfigError, did_you_mean

__all__ = ["load_config", "merge_cfg_options", "flatten_config", "make_dumpable"]


def _config_error_location(exc: BaseException, path: Path) -> str:
    """``file:line`` of the innermost frame of ``exc`` that lies in the config file."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        # mmengine parses without a file name, so Python reports '<unknown>'.
        name = exc.filename if exc.filename and not exc.filename.startswith("<") else path
        return f"{name}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).name == path.name:
            return f"{frame.filename}:{frame.lineno}"
    return str(path)


def load_config(path: str | Path) -> Config:
    """Read a config file; a broken config raises :class:`ConfigError` naming file and line."""
    path = Path(path)
    try:
        return Config.fromfile(str(path))
    except (SyntaxError, ImportError, NameError, AttributeError, TypeError, ValueError,
            KeyError) as exc:
        where = _config_error_location(exc, path)
        raise ConfigError(f"cannot load config {where}: {type(exc).__name__}: {exc}") from exc


def _lookup(cfg: Config, dotted: str):
    """Check that ``dotted`` names an existing key (or a new argument of a ``type=`` dict)."""
    node = cfg._cfg_dict
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        is_leaf = depth == len(parts) - 1
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--cfg-options key '{dotted}': "
                                  f"'{'.'.join(parts[:depth])}' is a list of {len(node)} items")
            node = node[int(part)]
            continue
        if not isinstance(node, Mapping):
            raise ConfigError(f"--cfg-options key '{dotted}': "
                              f"'{'.'.join(parts[:depth])}' is not a dict")
        if part not in node:
            # A new keyword argument of a callable (`dict(type=..., ...)`) is allowed when
            # the callable takes it.
            if is_leaf and "type" in node:
                accepted = _accepted_kwargs(dict.get(node, "type"))
                if accepted is None or part in accepted:
                    return
                raise ConfigError(f"--cfg-options key '{dotted}': {_type_label(node)} takes "
                                  f"no argument '{part}'{did_you_mean(part, accepted)}")
            known = list(node.keys())
            raise ConfigError(f"--cfg-options key '{dotted}' does not exist in the config"
                              f"{did_you_mean(part, known)}")
        node = node[part]


def resolve_type(obj):
    """The callable a config ``type`` names (a function, a dotted string or a lazy object)."""
    from mmengine.config.lazy import LazyAttr, LazyObject
    from mmengine.utils import get_object_from_string

    if isinstance(obj, (LazyObject, LazyAttr)):
        return obj.build()
    if isinstance(obj, str):
        return get_object_from_string(obj)
    return obj


def config_max_length(cfg) -> int | None:
    """The longest sample or packed row the config trains on (its ``max_length``)."""
    if isinstance(cfg.get("max_length"), int):
        return cfg.max_length
    dataset = (cfg.get("train_dataloader") or {}).get("dataset") or {}
    for candidate in (dataset, dataset.get("dataset") or {}):
        if isinstance(candidate, dict) and isinstance(candidate.get("max_length"), int):
            return candidate["max_length"]
    return None


def type_name(obj) -> str:
    """The short name of a config ``type`` (``'AdamW'`` for the class, ``'torch.optim.AdamW'``
    or a lazy object), without importing anything."""
    if isinstance(obj, str):
        return obj.rsplit(".", 1)[-1]
    return getattr(obj, "__name__", None) or str(obj).rsplit(".", 1)[-1].strip("'>")


def _type_label(node) -> str:
    obj = resolve_type(dict.get(node, "type"))
    return getattr(obj, "__qualname__", None) or str(obj)


def _accepted_kwargs(type_obj) -> set[str] | None:
    """Keyword arguments a config callable accepts, or None when it takes any (``**kw``).

    For a class, ``**kwargs`` passed on to parent classes are followed up the MRO.
    """
    target = resolve_type(type_obj)
    if target is None:
        return None
    functions = ([klass.__init__ for klass in target.__mro__ if "__init__" in vars(klass)]
                 if isinstance(target, type) else [target])
    accepted: set[str] = set()
    for function in functions:
        try:
            params = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        accepted |= {p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return accepted - {"self"}
        if not isinstance(target, type):
            return None
    return None


def merge_cfg_options(cfg: Config, options: Mapping | None) -> list[str]:
    """Apply ``--cfg-options`` after checking every key; returns notes for the user.

    A top-level Settings value (``lr``, ``batch_size``...) was already copied into the dicts
    that use it when the config was read, so changing it alone changes nothing else; the note
    says which nested keys held the same value.
    """
    notes: list[str] = []
    if not options:
        return notes
    for key in options:  # every key is checked before anything is imported for the notes
        _lookup(cfg, key)
    for key in options:
        old = dict.get(cfg._cfg_dict, key)
        if "." not in key and not isinstance(old, Mapping):
            users = _keys_with_value(cfg._cfg_dict, old)
            if users:
                notes.append(f"'{key}' is a Settings value copied into {', '.join(users)} when "
                             f"the config was read; override those keys to change them")
    cfg.merge_from_dict(dict(options))
    return notes


def _keys_with_value(node, value, prefix: str = "") -> list[str]:
    """Nested keys (never top-level Settings) whose value equals ``value``."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    found: list[str] = []
    if isinstance(node, Mapping):
        items = dict.items(node)
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return found
    for k, v in items:
        path = f"{prefix}{k}"
        if isinstance(v, (LazyObject, LazyAttr)):
            continue  # comparing would import it
        if isinstance(v, (Mapping, list, tuple)):
            found += _keys_with_value(v, value, path + ".")
        elif prefix and type(v) is type(value) and v == value:
            found.append(path)
    return found


def flatten_config(source: str | Path, target: str | Path) -> Path:
    """Write ``source`` with everything it inherits into one self-contained file.

    Callables become dotted import paths (``'xtuner.dataset.process_hf_dataset'``), which
    mmengine and xtuner resolve when the file is loaded again.
    """
    cfg = make_dumpable(load_config(source))
    target = Path(target)
    cfg.dump(str(target))
    # Check the copy reloads, so a user never edits a file that cannot run.
    load_config(target)
    return target



def _dotted_path(obj) -> str | None:
    """A dotted name that mmengine resolves back to ``obj``.

    mmengine walks the name attribute by attribute, so ``pkg.mod.func`` fails when the package
    re-exports ``func`` under the module's own name (``pkg.mod`` is then the function): the
    package's name is tried too.
    """
    from mmengine.utils import get_object_from_string

    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        path = ".".join(parts[:end] + [qualname])
        try:
            if get_object_from_string(path) is obj:
                return path
        except Exception:  # noqa: BLE001 - an unimportable candidate: try the next one
            continue
    return f"{module}.{qualname}"


def _dumpable(value):
    """The form of ``value`` that ``Config.dump`` writes and that reloads to the same thing."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    if isinstance(value, (LazyObject, LazyAttr)):
        built = value.build()
        if isinstance(built, enum.Enum):  # e.g. peft's TaskType.CAUSAL_LM
            return built.value
        # Constants imported into a config (paths, templates) are written as their values,
        # so the dumped file does not hold a dotted name where a value is expected.
        if isinstance(built, (str, int, float, bool, dict, list, tuple)):
            return _dumpable(built)
        return value
    if isinstance(value, dict):
        out = type(value)() if isinstance(value, ConfigDict) else {}
        for key, item in dict.items(value):
            dict.__setitem__(out, key, _dumpable(item))
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_dumpable(v) for v in value)
    if isinstance(value, type) or inspect.isfunction(value) or inspect.ismethod(value):
        # A class or function put into the config by code (not by the file's imports).
        return _dotted_path(value) or value
    return value


def make_dumpable(cfg: Config) -> Config:
    """Make ``cfg.dump()`` write a file that reloads to the same config (in place).

    Constants imported by the config become literal values and callables set by code become
    dotted paths; imported callables stay as mmengine writes them (dotted paths).
    """
    root = cfg._cfg_dict
    for key, value in list(dict.items(root)):
        dict.__setitem__(root, key, _dumpable(value))
    return cfg
