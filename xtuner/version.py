"""The package version (kept in one place; ``setup.py`` reads it without importing xtuner)."""

__version__ = "0.1.0"


def parse_version_info(version_str: str) -> tuple:
    """Split ``'0.1.0rc1'`` into ``(0, 1, 0, 'rc1')`` (v0's ``version_info`` shape)."""
    parts: list = []
    for piece in version_str.split("."):
        if piece.isdigit():
            parts.append(int(piece))
        else:
            digits = "".join(ch for ch in piece if ch.isdigit())
            rest = piece[len(digits):]
            if digits:
                parts.append(int(digits))
            parts.append(rest)
    return tuple(parts)


version_info = parse_version_info(__version__)
