"""``xtuner train script.py`` for a Python-API script that defines
``trainer = TrainerConfig(...)`` (seed 000's config files do)."""
from __future__ import annotations

import ast
import runpy
from pathlib import Path

from xtuner.utils.errors import ConfigError

__all__ = ["defines_trainer", "trainer_from_script"]


def defines_trainer(path: str | Path) -> bool:
    """True when the file assigns a top-level ``trainer`` from a ``TrainerConfig(...)`` call
    (read without running it; mmengine's config loader cannot run such a script)."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        return False
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return False  # load_config reports it with its line
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id == "trainer" for t in node.targets)):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "TrainerConfig":
                return True
    return False


def trainer_from_script(path: str | Path):
    """Run the script (not as ``__main__``, so a ``fit()`` under the main guard does not
    start) and return its ``trainer``."""
    from xtuner.train.config import TrainerConfig

    namespace = runpy.run_path(str(path), run_name="xtuner_train_script")
    trainer = namespace.get("trainer")
    if not isinstance(trainer, TrainerConfig):
        raise ConfigError(f"{path}: 'trainer' is a {type(trainer).__name__}, expected a "
                          "TrainerConfig")
    return trainer
