"""``--cfg-options KEY=VALUE ...``: mmengine's ``DictAction``, refusing an item without ``=``."""
from __future__ import annotations

from mmengine.config import DictAction

__all__ = ["CfgOptionsAction"]


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` that reports an item without ``=`` as a one-line usage error
    (mmengine unpacks ``KEY=VALUE`` unchecked: ``--cfg-options lr`` ended in a traceback)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values if isinstance(values, list) else [values]:
            if "=" not in item:
                parser.error(f"{option_string or self.dest} {item!r}: expected KEY=VALUE")
        super().__call__(parser, namespace, values, option_string)
