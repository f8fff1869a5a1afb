"""XTuner 0.2.0's own data-pipeline code, loaded from its wheel, as the oracle of parity tests.

The wheel is fetched once with ``pip download xtuner==0.2.0 --no-deps`` into
``$XTUNER_TEST_CACHE`` (default ``~/.cache/xtuner-tests``), checked against its sha256 and
unpacked there. Its pure-Python modules are then executed from their files under the package
name ``xtuner_v0`` (``xtuner_v0.dataset.utils``, ``xtuner_v0.utils.templates``, ...), so they
never replace our ``xtuner`` in ``sys.modules``.

v0's code is not edited. Its absolute ``xtuner.*`` imports are answered explicitly: each module
runs with an ``__import__`` that maps ``xtuner.X`` to ``xtuner_v0.X`` and refuses any v0 module
that was not loaded here. ``xtuner_v0.utils`` holds exactly what the loaded modules import from
``xtuner.utils`` (v0's ``constants.py`` and ``templates.py``); v0's real ``utils/__init__``
would drag in torch-heavy modules the data pipeline does not use. ``requests`` (imported by
``dataset/utils.py`` for ``load_image`` only) is answered with a module that raises on use when
it is not installed.

Tests use :func:`load_v0`, which skips the calling test with the reason when the wheel cannot
be had (no network and no cached copy).
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest

V0_VERSION = "0.2.0"
WHEEL_NAME = f"xtuner-{V0_VERSION}-py3-none-any.whl"
# sha256 of the PyPI wheel: a truncated or replaced cache file is refused.
WHEEL_SHA256 = "5b59e7e194d78579c3d00a9a68ea7195472869d7a4601d692ce200224ac86443"
ALIAS = "xtuner_v0"

# v0 files (relative to the wheel's `xtuner/`) loaded, in dependency order.
_MAP_FN_FILES = [
    "alpaca_map_fn", "alpaca_zh_map_fn", "arxiv_map_fn", "code_alpaca_map_fn", "colors_map_fn",
    "crime_kg_assitant_map_fn", "default_map_fn", "law_reference_map_fn", "llava_map_fn",
    "medical_map_fn", "msagent_map_fn", "oasst1_map_fn", "openai_map_fn", "openorca_map_fn",
    "pretrain_map_fn", "sql_map_fn", "stack_exchange_map_fn", "tiny_codes_map_fn",
    "wizardlm_map_fn",
]  # fmt: skip


def cache_dir() -> Path:
    return Path(os.environ.get("XTUNER_TEST_CACHE", Path.home() / ".cache" / "xtuner-tests"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel() -> Path:
    """The cached wheel, downloaded first if needed; raises RuntimeError when it cannot be had."""
    wheel = cache_dir() / WHEEL_NAME
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    wheel.unlink(missing_ok=True)
    wheel.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"xtuner=={V0_VERSION}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(wheel.parent)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"pip download xtuner=={V0_VERSION} failed: {exc}") from exc
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"pip download xtuner=={V0_VERSION} failed: {tail[0]}")
    if _sha256(wheel) != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} does not have the sha256 of PyPI's {WHEEL_NAME}")
    return wheel


def _unpacked() -> Path:
    """The wheel's ``xtuner/`` folder, unpacked next to the wheel."""
    wheel = _wheel()
    root = cache_dir() / f"xtuner-{V0_VERSION}-{WHEEL_SHA256[:12]}"
    if not (root / ".complete").is_file():
        # Unpack aside and rename, so a concurrent test run never reads half-written files.
        shutil.rmtree(root, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".unpack-"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp, [n for n in zf.namelist() if n.startswith("xtuner/")])
        (tmp / ".complete").write_text(WHEEL_SHA256)
        try:
            tmp.rename(root)
        except OSError:  # another run renamed its copy first
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "xtuner"


class _Unavailable(types.ModuleType):
    """A module v0 imports but the oracle never uses: any attribute access says so."""

    def __getattr__(self, attr):
        raise RuntimeError(f"{self.__name__}.{attr} is not available to the v0 oracle "
                           f"(the package is not installed here)")


def _v0_import(name, globals=None, locals=None, fromlist=(), level=0):
    """``__import__`` for v0's modules: ``xtuner.X`` means ``xtuner_v0.X``, and only loaded ones."""
    if level == 0 and (name == "xtuner" or name.startswith("xtuner.")):
        target = ALIAS + name[len("xtuner"):]
        if target not in sys.modules:
            raise ImportError(f"v0 oracle: v0 module {name!r} is not provided (see "
                              "tests/v0_oracle.py)")
        return sys.modules[target] if fromlist else sys.modules[ALIAS]
    if level == 0 and name == "requests" and importlib.util.find_spec("requests") is None:
        return _Unavailable("requests")
    return builtins.__import__(name, globals, locals, fromlist, level)


_V0_BUILTINS = {**vars(builtins), "__import__": _v0_import}


def _package(name: str, path: Path | None = None) -> types.ModuleType:
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return module


def _exec_file(name: str, path: Path, is_package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if is_package else None)
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__builtins__"] = _V0_BUILTINS  # exec keeps a __builtins__ already there
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    setattr(sys.modules[parent], child, module)
    return module


@functools.lru_cache(maxsize=1)
def _load() -> types.SimpleNamespace:
    src = _unpacked()
    _package(ALIAS, src)
    _package(f"{ALIAS}.utils", src / "utils")
    constants = _exec_file(f"{ALIAS}.utils.constants", src / "utils" / "constants.py")
    templates = _exec_file(f"{ALIAS}.utils.templates", src / "utils" / "templates.py")
    utils = sys.modules[f"{ALIAS}.utils"]
    for module in (constants, templates):
        for key, value in vars(module).items():
            if key.isupper():
                setattr(utils, key, value)
    registry = _exec_file(f"{ALIAS}.registry", src / "registry.py")

    _package(f"{ALIAS}.dataset", src / "dataset")
    dataset_utils = _exec_file(f"{ALIAS}.dataset.utils", src / "dataset" / "utils.py")
    huggingface = _exec_file(f"{ALIAS}.dataset.huggingface", src / "dataset" / "huggingface.py")

    map_dir = src / "dataset" / "map_fns"
    _package(f"{ALIAS}.dataset.map_fns", map_dir)
    fns_pkg = f"{ALIAS}.dataset.map_fns.dataset_map_fns"
    _package(fns_pkg, map_dir / "dataset_map_fns")
    for stem in _MAP_FN_FILES:
        _exec_file(f"{fns_pkg}.{stem}", map_dir / "dataset_map_fns" / f"{stem}.py")
    # The package __init__ (DATASET_FORMAT_MAPPING) imports the files above relatively.
    del sys.modules[fns_pkg]
    dataset_map_fns = _exec_file(fns_pkg, map_dir / "dataset_map_fns" / "__init__.py",
                                 is_package=True)
    for stem in _MAP_FN_FILES:
        # As a normal import leaves it: `pkg.<file>` is the submodule unless the package
        # re-exported a function of the same name. dill pickles a function by reference when
        # `pkg.<file>.<fn>` resolves (msagent's globals cannot be pickled by value).
        if not hasattr(dataset_map_fns, stem):
            setattr(dataset_map_fns, stem, sys.modules[f"{fns_pkg}.{stem}"])
    template_map_fn = _exec_file(f"{ALIAS}.dataset.map_fns.template_map_fn",
                                 map_dir / "template_map_fn.py")
    return types.SimpleNamespace(
        constants=constants, templates=templates, registry=registry, utils=dataset_utils,
        huggingface=huggingface, dataset_map_fns=dataset_map_fns,
        template_map_fn=template_map_fn,
        PROMPT_TEMPLATE=templates.PROMPT_TEMPLATE, SYSTEM_TEMPLATE=templates.SYSTEM_TEMPLATE,
        DATASET_FORMAT_MAPPING=dataset_map_fns.DATASET_FORMAT_MAPPING,
        encode_fn=dataset_utils.encode_fn, Packer=dataset_utils.Packer,
        process=huggingface.process,
    )


_unavailable: list[str] = []  # why the wheel could not be had; tried once per session


def load_v0() -> types.SimpleNamespace:
    """v0.2.0's data-pipeline modules; skips the test when the wheel cannot be downloaded."""
    if not _unavailable:
        try:
            return _load()
        except RuntimeError as exc:
            _unavailable.append(str(exc))
    pytest.skip(f"XTuner {V0_VERSION} wheel unavailable (needs PyPI once): {_unavailable[0]}")


class _Presented:
    """A tokenizer shown to v0 under another class name (and optionally other BOS ids).

    v0 picks BOS/EOS by ``type(tokenizer).__name__``. Under transformers 4, which v0 ran on,
    ``AutoTokenizer`` gave Qwen2 models a ``Qwen2TokenizerFast``; transformers 5 names the same
    tokenizer ``Qwen2Tokenizer``, which v0's list does not contain. Presenting it under the name
    v0 knew asks v0 what it did with that tokenizer.
    """

    def __init__(self, tokenizer, bos_token_id):
        self.tokenizer = tokenizer
        self.bos_token_id = bos_token_id
        self.eos_token_id = tokenizer.eos_token_id

    def encode(self, text, add_special_tokens=True):
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)


@functools.cache
def _presented_class(name: str) -> type:
    cls = type(name, (_Presented,), {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls  # picklable by reference, for datasets' fingerprinting
    return cls


# transformers 5 class name -> the name v0 saw under transformers 4.
_V4_NAMES = {"Qwen2Tokenizer": "Qwen2TokenizerFast"}


def as_v0_saw_it(tokenizer, bos_token_id=None):
    """``tokenizer`` as v0 met it under transformers 4 (see :class:`_Presented`)."""
    name = type(tokenizer).__name__
    if name not in _V4_NAMES and bos_token_id is None:
        return tokenizer
    bos = tokenizer.bos_token_id if bos_token_id is None else bos_token_id
    return _presented_class(_V4_NAMES.get(name, name))(tokenizer, bos)
