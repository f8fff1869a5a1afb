"""Functions and classes of XTuner 0.2.0's evaluation tools, taken from the wheel's files.

``tools/mmbench.py`` and ``tools/eval_refcoco.py`` import torch, peft, transformers and v0's
model code at the top, so they are not executed whole: only the named top-level definitions
are compiled from v0's source, unchanged, in a namespace holding what they use.
"""
from __future__ import annotations

import ast

import pytest
import v0_oracle


def v0_definitions(relative: str, names: list[str], namespace: dict) -> dict:
    """Compile the top-level ``names`` of the v0 file ``relative`` (under ``xtuner/``)."""
    try:
        root = v0_oracle._unpacked()
    except RuntimeError as exc:
        pytest.skip(f"XTuner 0.2.0 wheel not available: {exc}")
    path = root / relative
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wanted = [node for node in tree.body
              if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names]
    assert sorted(n.name for n in wanted) == sorted(names), f"{relative} changed"
    module = ast.Module(body=wanted, type_ignores=[])
    exec(compile(module, str(path), "exec"), namespace)  # noqa: S102 - v0's own code
    return {name: namespace[name] for name in names}
