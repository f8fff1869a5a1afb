"""Loading, overriding and flattening xtuner configs (mmengine ``Config``)."""
from __future__ import annotations

import enum
import inspect
import traceback
from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config, ConfigDict

from xtuner.utils.errors import ConfigError, did_you_mean

__all__ = ["load_config", "merge_cfg_options", "flatten_config", "make_dumpable", "render_leaf",
           "config_source_text", "is_self_contained", "inline_config", "base_files",
           "config_data"]


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


# Top-level keys that mmengine's Runner (or xtuner's train setup) reads itself: an override of
# one of them reaches the run directly.
RUNNER_KEYS = frozenset({
    "auto_scale_lr", "custom_hooks", "data_preprocessor", "default_hooks", "default_scope",
    "env_cfg", "experiment_name", "launcher", "load_from", "log_level", "log_processor", "model",
    "optim_wrapper", "param_scheduler", "randomness", "resume", "test_cfg", "test_dataloader",
    "test_evaluator", "train_cfg", "train_dataloader", "val_cfg", "val_dataloader",
    "val_evaluator", "visualizer", "work_dir", "tokenizer", "runner_type", "strategy",
    "find_unused_parameters", "sequence_parallel_size",
})


# What mmengine's Config reads; Python configs are xtuner's own.
CONFIG_SUFFIXES = (".py", ".json", ".yaml", ".yml")


def _module_exists(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module, found without importing it or its
    parents (a config importing ``torch.optim`` must not import torch before the cheap
    checks). A parent that is not a package (``os.path``) counts as found."""
    import importlib.util
    import sys
    from importlib.machinery import PathFinder

    if dotted in sys.modules:
        return True
    parts = dotted.split(".")
    spec = importlib.util.find_spec(parts[0])
    for depth in range(2, len(parts) + 1):
        if spec is None:
            return False
        name = ".".join(parts[:depth])
        if name in sys.modules:
            spec = sys.modules[name].__spec__
            continue
        if not spec.submodule_search_locations:
            return True  # a module whose attribute is imported like a submodule
        spec = PathFinder.find_spec(name, list(spec.submodule_search_locations))
    return spec is not None


def _missing_module_hint(dotted: str) -> str:
    """``" (did you mean 'xtuner.model'?)"`` from the modules beside the one misspelled."""
    import pkgutil

    parent, _, leaf = dotted.rpartition(".")
    if not parent or not _module_exists(parent):
        return ""
    import importlib.util

    spec = importlib.util.find_spec(parent)
    locations = list(spec.submodule_search_locations or []) if spec else []
    siblings = [f"{parent}.{m.name}" for m in pkgutil.iter_modules(locations)]
    return did_you_mean(dotted, siblings)


def _check_imports(path: Path, undefined: str | None = None) -> None:
    """Check the config's absolute imports, reporting the first bad one by ``file:line``.

    mmengine imports a config's ``from M import N`` lazily, so a misspelled module only fails
    when the runner builds it, and a misspelled ``N`` is reported where ``N``'s intended name
    is used. Every module is checked (without importing it); when loading failed on the
    undefined name ``undefined``, the imported names are checked too (importing their
    modules).

    Raises:
        ConfigError: a module that does not exist, or an imported name it lacks.
    """
    import ast
    import importlib

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if not _module_exists(module):
                raise ConfigError(f"{path}:{node.lineno}: no module named '{module}'"
                                  f"{_missing_module_hint(module)}: fix the import")
        if undefined is None or not isinstance(node, ast.ImportFrom):
            continue
        try:
            imported = importlib.import_module(node.module)
        except ImportError:  # exists but does not import (a missing dependency): not this check
            continue
        for alias in node.names:
            if alias.name != "*" and not hasattr(imported, alias.name):
                public = [n for n in dir(imported) if not n.startswith("_")]
                raise ConfigError(f"{path}:{node.lineno}: {node.module} has no "
                                  f"'{alias.name}'{did_you_mean(alias.name, public)}: fix the "
                                  "import")


def _load_file(path: Path) -> Config:
    """``Config.fromfile`` with every way a config fails to load as one :class:`ConfigError`."""
    import yaml

    if path.suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path} is not a config file: a config is a Python file (.py; "
                          "mmengine also reads .json/.yaml); see `xtuner copy-cfg`")
    try:
        cfg = Config.fromfile(str(path))
    except NameError as exc:
        if path.suffix == ".py":
            _check_imports(path, undefined=exc.name)  # a misspelled import is the cause
        raise ConfigError(f"cannot load config {_config_error_location(exc, path)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigError(f"cannot load config {path}{line}: YAML syntax error: "
                          f"{exc.problem}") from exc
    except (SyntaxError, ImportError, AttributeError, TypeError, ValueError,
            KeyError) as exc:
        where = _config_error_location(exc, path)
        raise ConfigError(f"cannot load config {where}: {type(exc).__name__}: {exc}") from exc
    if path.suffix == ".py":
        _check_imports(path)
    return cfg


def _template_module(name: str):
    """The renderer ``configs/_templates/NAME.py`` of catalog leaves."""
    import importlib.util

    from xtuner.utils.paths import configs_dir

    path = configs_dir() / "_templates" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("[!_]*.py"))
        raise ConfigError(f"config_template '{name}' does not exist (no {path})"
                          f"{did_you_mean(name, known)}")
    spec = importlib.util.spec_from_file_location(f"xtuner_config_template_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_leaf(path: str | Path, values: Mapping | None = None) -> str | None:
    """The v0-style text a catalog leaf runs, or None when ``path`` is not a catalog leaf.

    A catalog leaf is an mmengine ``_base_`` config of values that sets ``config_template``
    (``configs/_base_/default_runtime.py`` does): the template of that name renders them into
    one self-contained file in v0's five sections.

    Args:
        path: The leaf file.
        values: Its merged values, when already loaded.

    Raises:
        ConfigError: the leaf sets a value its template does not use, or lacks one it needs.
    """
    path = Path(path)
    if values is None:
        values = _load_file(path).to_dict()
    if "config_template" not in values:
        return None
    template = _template_module(values["config_template"])
    known = set(template.REQUIRED) | set(template.OPTIONAL)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"catalog leaf {path} sets {', '.join(repr(k) for k in unknown)}, which template "
            f"'{values['config_template']}' does not use"
            f"{did_you_mean(unknown[0], known, n=1)}; its values are listed in "
            f"configs/_templates/{values['config_template']}.py")
    missing = [k for k in template.REQUIRED if k not in values]
    if missing:
        raise ConfigError(f"catalog leaf {path} sets no {', '.join(missing)} (its bases should; "
                          f"see configs/_templates/{values['config_template']}.py)")
    from xtuner.utils.paths import configs_dir

    try:
        source = f"configs/{path.resolve().relative_to(configs_dir()).as_posix()}"
    except ValueError:
        source = str(path)
    return template.render(values, name=path.stem, source=source)


def _load_text(text: str, path: Path) -> Config:
    """Load config source ``text`` as if it were the file ``path`` (self-contained text only)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="xtuner_cfg_") as tmp:
        rendered = Path(tmp) / path.name
        rendered.write_text(text, encoding="utf-8")
        try:
            cfg = Config.fromfile(str(rendered))
        except (SyntaxError, ImportError, NameError, AttributeError, TypeError, ValueError,
                KeyError) as exc:
            raise ConfigError(f"cannot load config {path} (as rendered): "
                              f"{type(exc).__name__}: {exc}") from exc
    object.__setattr__(cfg, "_filename", str(path))  # work dir names and messages use it
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a config file; a broken config raises :class:`ConfigError` naming file and line.

    A catalog leaf (see :func:`render_leaf`) is rendered by its template first; the returned
    config is the rendered one, with ``cfg.filename`` the leaf's path.
    """
    path = Path(path)
    cfg = _load_file(path)
    if "config_template" in cfg:
        return _load_text(render_leaf(path, cfg.to_dict()), path)
    return cfg


def is_self_contained(path: str | Path) -> bool:
    """True when the config file inherits nothing (no ``_base_``, no ``read_base``)."""
    import ast

    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            return False
        if isinstance(node, ast.With) or (isinstance(node, ast.ImportFrom) and node.level):
            return False
    return True


def config_source_text(path: str | Path) -> str | None:
    """The self-contained text that runs for ``path``: a catalog leaf rendered, a file that
    inherits nothing as it is, None for a file that inherits from bases."""
    path = Path(path)
    rendered = render_leaf(path)
    if rendered is not None:
        return rendered
    return path.read_text(encoding="utf-8") if is_self_contained(path) else None


# Top-level dicts the runner builds without a `type` key, and what it builds them with.
_IMPLIED_TYPES = {"log_processor": "mmengine.runner.LogProcessor"}


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
            # A new keyword argument of a callable (`dict(type=..., ...)`, or a runner dict
            # whose callable is implied) is allowed when the callable takes it.
            callable_type = dict.get(node, "type") if "type" in node else (
                _IMPLIED_TYPES.get(parts[0]) if depth == 1 else None)
            if is_leaf and callable_type is not None:
                accepted = _accepted_kwargs(callable_type)
                if accepted is None or part in accepted:
                    return
                raise ConfigError(f"--cfg-options key '{dotted}': {_type_label(callable_type)}"
                                  f" takes no argument '{part}'{did_you_mean(part, accepted)}")
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


def _type_label(type_obj) -> str:
    obj = resolve_type(type_obj)
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


# Integer counts: a fractional value there is a mistake, not a finer setting.
_COUNT_KEYS = frozenset({
    "max_iters", "batch_size", "num_workers", "interval", "accumulative_counts",
    "max_length", "save_steps", "save_total_limit", "max_keep_ckpts", "evaluation_freq",
    "every_n_iters", "dataloader_num_workers", "r", "lora_alpha", "seed",
})


def _get_dotted(node, dotted: str):
    """The value at ``dotted`` (list indices as numbers), or a sentinel when it is not set."""
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = dict.__getitem__(node, part) if isinstance(node, dict) else node[part]
        else:
            return _UNSET
    return node


_UNSET = object()


def _check_value_type(cfg: Config, key: str, value) -> None:
    """A value of the wrong kind (``max_epochs=1x``) is one clear error, before anything runs."""
    last = key.rsplit(".", 1)[-1]
    if last in ("prompt_template", "template") and isinstance(value, str):
        # A template name is accepted wherever a template is; a typo is refused here, before
        # anything is built, rather than when the chat hook first uses it.
        from xtuner.dataset.map_fns.template_map_fn import resolve_template

        try:
            resolve_template(value)
        except ConfigError as exc:
            raise ConfigError(f"--cfg-options {key}={value!r}: {exc}") from None
    old = _get_dotted(cfg._cfg_dict, key)
    if old is _UNSET or old is None or value is None:
        return
    number = (int, float)
    if {type(old), type(value)} == {bool, str} and "auto" in (old, value):
        ok = True  # switches that take True, False or 'auto' (use_liger_kernel, ...)
    elif isinstance(old, bool) or isinstance(value, bool):
        ok = isinstance(old, bool) and isinstance(value, bool)
    elif isinstance(old, number):
        ok = isinstance(value, number) and not (
            isinstance(old, int) and last in _COUNT_KEYS and value != int(value))
    elif isinstance(old, str):
        ok = isinstance(value, str)
    elif isinstance(old, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(old, Mapping):
        ok = isinstance(value, Mapping)
    else:
        return  # a callable or lazy object: a dotted name or anything else may replace it
    if not ok:
        kind = "a whole number" if isinstance(old, int) and not isinstance(old, bool) \
            and last in _COUNT_KEYS else {bool: "True or False", int: "a number",
                                           float: "a number", str: "a string"}.get(
            type(old), type(old).__name__)
        raise ConfigError(f"--cfg-options {key}={value!r}: expected {kind} (the config has "
                          f"{old!r})")


def merge_cfg_options(cfg: Config, options: Mapping | None) -> list[str]:
    """Apply ``--cfg-options`` so that every value reaches the run; returns notes for the user.

    * A nested key (``optim_wrapper.optimizer.lr``) or a key the runner reads itself
      (``load_from``) is merged as mmengine does.
    * A top-level Settings value (``max_epochs``, ``lr``, ``data_path``...) is set where the
      config assigns it and the config is read again, so every dict built from it changes too
      (a catalog leaf is rendered again). Where that is impossible (the value comes from a
      base file) or it would change nothing, it is an error naming the keys that hold it.
    * Changing ``train_cfg.max_epochs`` / ``max_iters`` rescales the LR schedule to the new
      length (unless the same options set ``param_scheduler``); a note says what changed.
      Giving the one the config does not use replaces the other.

    Raises:
        ConfigError: an unknown key, a value of the wrong kind, or a value that cannot reach
            the run. Nothing is changed then.
    """
    notes: list[str] = []
    if not options:
        return notes
    for key in options:  # every key and value is checked before anything changes
        _lookup(cfg, key)
    for key, value in options.items():
        _check_value_type(cfg, key, value)
    settings = {k: v for k, v in options.items() if "." not in k and k not in RUNNER_KEYS
                and not isinstance(dict.get(cfg._cfg_dict, k), Mapping)}
    if settings:
        notes += _apply_settings(cfg, settings)
    rest = {k: v for k, v in options.items() if k not in settings}
    if rest:
        loop = dict(cfg.get("train_cfg") or {})
        cfg.merge_from_dict(rest)
        notes += _one_training_length(cfg, loop, rest)
        if not any(k.split(".")[0] == "param_scheduler" for k in rest):
            notes += _sync_schedulers(cfg, loop)
    return notes


def _one_training_length(cfg: Config, loop: Mapping, options: Mapping) -> list[str]:
    """A length in iterations given for a config counted in epochs (or the other way round)
    replaces the config's: the loop takes only one."""
    notes = []
    for given, other in (("max_iters", "max_epochs"), ("max_epochs", "max_iters")):
        if (f"train_cfg.{given}" in options and f"train_cfg.{other}" not in options
                and loop.get(other) is not None):
            del cfg.train_cfg[other]
            notes.append(f"train_cfg.{given}={options[f'train_cfg.{given}']} replaces the "
                         f"config's train_cfg.{other}={loop[other]}")
    return notes


def _settings_error(cfg: Config, key: str, why: str) -> ConfigError:
    users = _keys_with_value(cfg._cfg_dict, dict.get(cfg._cfg_dict, key))
    fix = (f"override {', '.join(users)} instead" if users
           else "no other key of the config holds its value")
    return ConfigError(f"--cfg-options {key}: {why}, so it would not reach the run; {fix} "
                       "(or `xtuner copy-cfg` the config and edit it)")


def _apply_settings(cfg: Config, settings: Mapping) -> list[str]:
    """Set top-level Settings where the config's text assigns them and read it again."""
    import ast

    path = Path(cfg.filename) if cfg.filename else None
    text = config_source_text(path) if path is not None and path.is_file() else None
    notes = []
    for key, value in settings.items():
        if text is None:
            why = (f"'{key}' of {path.name} is set in a base config and was copied into the "
                   "dicts when the config was read" if path else
                   f"'{key}' was copied into the dicts when the config was read")
            raise _settings_error(cfg, key, why)
        assigns = [node for node in ast.parse(text).body if isinstance(node, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == key for t in node.targets)]
        if len(assigns) != 1:
            raise _settings_error(cfg, key, f"{path.name} assigns '{key}' {len(assigns)} times")
        node = assigns[0].value
        lines = text.splitlines(keepends=True)
        start = sum(len(line) for line in lines[:node.lineno - 1]) + _col(lines, node.lineno,
                                                                        node.col_offset)
        stop = sum(len(line) for line in lines[:node.end_lineno - 1]) + _col(
            lines, node.end_lineno, node.end_col_offset)
        new_text = text[:start] + repr(value) + text[stop:]
        new = _load_text(new_text, path)
        changed = [k for k in _changed_keys(cfg._cfg_dict, new._cfg_dict) if k != key]
        if not changed:
            raise _settings_error(cfg, key, f"no dict of {path.name} uses '{key}'")
        for attr in ("_cfg_dict", "_text", "_imported_names"):
            if attr in vars(new):
                object.__setattr__(cfg, attr, vars(new)[attr])
        text = new_text
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6
                                          else "")
        notes.append(f"{key}={value!r} reaches {shown}")
    return notes


def _col(lines: list[str], lineno: int, col_offset: int) -> int:
    """Character column of an AST byte offset (the line may hold non-ASCII text)."""
    return len(lines[lineno - 1].encode("utf-8")[:col_offset].decode("utf-8"))


def config_data(node):
    """A raw config tree as plain data, without importing anything: lazy imports become
    ``'<module.attr>'`` / ``'<module:name>'`` strings, tuples lists. Two configs that run the
    same have equal ``config_data`` (the catalog and copy-cfg tests compare it)."""
    from mmengine.config.lazy import LazyAttr, LazyObject

    if isinstance(node, LazyAttr):
        return f"<{node._module}.{node.name}>"
    if isinstance(node, LazyObject):
        return f"<{node._module}:{node._imported}>"
    if isinstance(node, Mapping):
        return {str(k): config_data(v) for k, v in dict.items(node)}
    if isinstance(node, (list, tuple)):
        return [config_data(v) for v in node]
    return node


def _changed_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two raw config trees."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key in dict.fromkeys([*dict.keys(old), *dict.keys(new)]):
            if key not in old or key not in new:
                found.append(f"{prefix}{key}")
            else:
                found += _changed_keys(dict.__getitem__(old, key), dict.__getitem__(new, key),
                                       f"{prefix}{key}.")
        return found
    if (isinstance(old, (list, tuple)) and isinstance(new, (list, tuple))
            and len(old) == len(new)):
        found = []
        for i, (a, b) in enumerate(zip(old, new)):
            found += _changed_keys(a, b, f"{prefix}{i}.")
        return found
    return [] if config_data(old) == config_data(new) else [prefix[:-1]]


def _sync_schedulers(cfg: Config, loop: Mapping) -> list[str]:
    """Stretch ``param_scheduler`` to a changed ``train_cfg`` length; notes say what changed."""
    train_cfg = cfg.get("train_cfg") or {}
    schedulers = cfg.get("param_scheduler")
    if isinstance(schedulers, Mapping):
        schedulers = [schedulers]
    notes = []
    for unit, by_epoch in (("max_epochs", True), ("max_iters", False)):
        old, new = loop.get(unit), train_cfg.get(unit)
        if old == new or not schedulers or new is None:  # unchanged, or replaced by the other
            continue
        if not isinstance(old, (int, float)) or not old:
            if isinstance(new, (int, float)) and "max_epochs" in loop and not by_epoch:
                notes.append(f"param_scheduler was left as it is: it counts epochs (up to "
                             f"{loop['max_epochs']}) while train_cfg now sets max_iters={new}")
            continue
        changes = []
        for scheduler in schedulers:
            if not isinstance(scheduler, Mapping) or scheduler.get("by_epoch", True) != by_epoch:
                continue
            name = type_name(scheduler.get("type"))
            moved = []
            for bound in ("begin", "end"):
                value = scheduler.get(bound)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                scaled = value * new / old
                scaled = round(scaled) if not by_epoch else (
                    int(scaled) if float(scaled).is_integer() and isinstance(value, int)
                    else round(scaled, 10))
                if scaled != value:
                    scheduler[bound] = scaled
                    moved.append(f"{bound} {value:g}->{scaled:g}")
            if moved:
                changes.append(f"{name} {', '.join(moved)}")
        if changes:
            notes.append(f"train_cfg.{unit} {old}->{new}: param_scheduler stretched to match "
                         f"({'; '.join(changes)})")
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
    mmengine and xtuner resolve when the file is loaded again. The top-level Settings
    (everything but the keys the runner reads) are left out: their values were copied into the
    dicts when the config was read, so editing them in the copy would change nothing; each
    value is edited in the dict that uses it. :func:`inline_config` keeps Settings that drive
    the dicts, for ``read_base`` configs.
    """
    cfg = make_dumpable(load_config(source))
    root = cfg._cfg_dict
    for key in list(dict.keys(root)):
        if key not in RUNNER_KEYS:
            dict.__delitem__(root, key)
    target = Path(target)
    cfg.dump(str(target))
    target.write_text(
        f"# {Path(source).name} with its bases resolved: each value sits in the dict that uses "
        "it\n# (the Settings it was built from are left out; editing them would change "
        "nothing).\n" + target.read_text(encoding="utf-8"), encoding="utf-8")
    # Check the copy reloads, so a user never edits a file that cannot run.
    load_config(target)
    return target


def _read_base_imports(tree) -> tuple[list, list]:
    """``(the read_base with-blocks, the relative star imports inside them)``."""
    import ast

    blocks = [node for node in tree.body if isinstance(node, ast.With)]
    imports = [stmt for block in blocks for stmt in block.body
               if isinstance(stmt, ast.ImportFrom)]
    return blocks, imports


def base_files(path: str | Path) -> list[Path]:
    """Every file ``path`` inherits from, nearest first (``_base_`` lists and ``read_base``)."""
    import ast

    path = Path(path).resolve()
    found: list[Path] = []
    if not path.is_file():
        return found
    tree = ast.parse(path.read_text(encoding="utf-8"))
    direct: list[Path] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            direct += [(path.parent / b).resolve() for b in Config._get_base_files(str(path))]
    for stmt in _read_base_imports(tree)[1]:
        folder = path.parent
        for _ in range(stmt.level - 1):
            folder = folder.parent
        direct.append((folder / Path(*(stmt.module or "").split("."))).with_suffix(".py"))
    for base in direct:
        if base not in found:
            found.append(base)
        found += [b for b in base_files(base) if b not in found]
    return found


def inline_config(source: str | Path) -> str:
    """The text of a ``read_base`` config with its bases written in, as one v0-style file.

    The base's text comes first, unchanged, so its Settings still drive its dicts; the
    child's own imports join the base's and each of its statements (``model.update(...)``)
    goes at the end of the base's section (v0's ``PART n`` banners) that defines the name it
    changes.

    Raises:
        ConfigError: the config inherits through ``_base_`` or imports names from a base
            selectively (only ``from .base import *`` is inlined).
    """
    import ast

    source = Path(source)
    text = source.read_text(encoding="utf-8")
    tree = ast.parse(text)
    blocks, imports = _read_base_imports(tree)
    if not blocks:
        return text
    if len(imports) != 1 or [a.name for a in imports[0].names] != ["*"]:
        raise ConfigError(f"{source}: only one `from .base import *` in read_base() can be "
                          "inlined; use --keep-bases to copy the config with its bases")
    base = base_files(source)[0]
    base_text = inline_config(base)
    lines = text.splitlines()
    child_imports, statements, header = [], [], []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    previous_end = len(header)
    for node in tree.body:
        segment = "\n".join(lines[previous_end:node.end_lineno]).strip("\n")
        previous_end = node.end_lineno
        if node in blocks:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if not (isinstance(node, ast.ImportFrom) and node.module == "mmengine.config"
                    and [a.name for a in node.names] == ["read_base"]):
                child_imports.append(node)
            continue
        statements.append((node, segment))
    out = _merge_imports(base_text, child_imports, lines)
    for node, segment in statements:
        segment = _subscript_chain(node, segment, text)
        targets = (node.targets if isinstance(node, ast.Assign) else [node.target]
                   if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [None])
        if all(isinstance(t, ast.Name) for t in targets):
            # Rebinding a base's variable after read_base() changes that name only, not the
            # dicts built from it: kept at the end, where it has the same (lack of) effect.
            out = (out.rstrip("\n") + f"\n\n# {source.stem} (set after the dicts were built, "
                   f"so it changes only this name):\n{segment}\n")
            continue
        out = _insert_in_section(out, node, f"# {source.stem}:\n{segment}")
    intro = header + [f"# It is {base.stem} (below) with the changes marked '# {source.stem}:'."]
    return "\n".join(intro) + "\n" + out


def _subscript_chain(node, segment: str, text: str) -> str:
    """``model.llm.update(...)`` -> ``model['llm'].update(...)``: in the inheriting file the
    base's dicts are ConfigDicts (attribute access works), in one file they are plain dicts."""
    import ast

    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(
            node.value.func, ast.Attribute):
        chain = node.value.func.value
    elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
        chain = node.targets[0]
    else:
        return segment
    keys = []
    while isinstance(chain, ast.Attribute):
        keys.insert(0, chain.attr)
        chain = chain.value
    if not keys or not isinstance(chain, ast.Name):
        return segment
    old = ".".join([chain.id, *keys])
    new = chain.id + "".join(f"[{k!r}]" for k in keys)
    at = segment.find(old)
    return segment if at < 0 else segment[:at] + new + segment[at + len(old):]


def _merge_imports(text: str, imports: list, child_lines: list[str]) -> str:
    """Add the child's imports to the base text (into a one-line import of the same module)."""
    import ast

    lines = text.splitlines()
    tree = ast.parse(text)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    last = max((n.end_lineno for n in top), default=0)
    extra = []
    for node in imports:
        same = [n for n in top if isinstance(node, ast.ImportFrom) and isinstance(n, ast.ImportFrom)
                and n.module == node.module and n.level == node.level == 0
                and n.lineno == n.end_lineno and all(a.asname is None for a in n.names)]
        if same and all(a.asname is None for a in node.names):
            target = same[0]
            names = sorted({a.name for a in target.names} | {a.name for a in node.names},
                           key=lambda n: (not n.isupper(), n[:1].islower(), n))
            lines[target.lineno - 1] = f"from {node.module} import {', '.join(names)}"
            continue
        segment = "\n".join(child_lines[node.lineno - 1:node.end_lineno])
        if segment not in lines:
            extra.append(segment)
    # Third-party imports go before the first-party (xtuner) block, as isort would put them.
    first_party = [n.lineno for n in top if isinstance(n, ast.ImportFrom)
                   and (n.module or "").split(".")[0] == "xtuner"]
    at = last
    if first_party and first_party[0] > 1 and lines[first_party[0] - 2].strip() == "":
        at = first_party[0] - 2
    lines[at:at] = extra
    return "\n".join(lines) + "\n"


def _insert_in_section(text: str, node, segment: str) -> str:
    """Put ``segment`` at the end of the ``PART n`` section that defines the name ``node``
    changes (at the end of the file when there are no sections)."""
    import ast

    root = node
    while not isinstance(root, ast.Name):
        if isinstance(root, ast.Expr):
            root = root.value
        elif isinstance(root, ast.Call):
            root = root.func
        elif isinstance(root, (ast.Attribute, ast.Subscript)):
            root = root.value
        elif isinstance(root, (ast.Assign, ast.AugAssign)):
            root = root.targets[0] if isinstance(root, ast.Assign) else root.target
        else:
            break
    lines = text.rstrip("\n").splitlines()
    name = root.id if isinstance(root, ast.Name) else None
    defined = [n.lineno for n in ast.parse(text).body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    banners = [i for i, line in enumerate(lines)
               if line.startswith("#") and line.strip("# ").startswith("PART ")]
    at = len(lines)
    if defined and banners:
        after = [b for b in banners if b > defined[-1] - 1]
        if after:
            at = after[0] - 1  # the first line of the next banner block
            while at > 0 and lines[at - 1].strip() == "":
                at -= 1
    lines[at:at] = ["", *segment.splitlines()] if at < len(lines) else ["", *segment.splitlines()]
    return "\n".join(lines) + "\n"


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
