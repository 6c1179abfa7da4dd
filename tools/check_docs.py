"""Run the Python examples of a Markdown page in order and compare what they print with the
output block that follows each one.

    PYTHONPATH=. python3 tools/check_docs.py docs/backends.md [--fix]

Every ```python block runs in one namespace, in order; when the next fenced block is a plain
``` block, it is the expected output. --fix writes the printed output into the page instead.
Numbers that depend on the machine (timings) differ from run to run: read the diff.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import traceback
import types
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def main() -> int:
    path = sys.argv[1]
    fix = "--fix" in sys.argv
    text = Path(path).read_text()
    blocks = list(FENCE.finditer(text))
    # A module of its own, so that examples may define dataclasses.
    module = types.ModuleType("doc_examples")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    replacements = []
    failures = 0
    for index, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                code = compile(block.group(2), f"{path} block {index}", "exec")
                exec(code, namespace)  # noqa: S102 - running the page's own examples is the point
            except Exception:  # noqa: BLE001 - an example that fails is the report
                traceback.print_exc(file=printed)
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if following is None or following.group(1) != "":
            continue
        if printed.getvalue() != following.group(2):
            failures += 1
            line = text.count("\n", 0, following.start()) + 1
            print(
                f"--- {path}:{line}: expected\n{following.group(2)}+++ printed\n{printed.getvalue()}"
            )
            replacements.append((following.start(2), following.end(2), printed.getvalue()))
    if fix:
        for start, end, new in reversed(replacements):
            text = text[:start] + new + text[end:]
        Path(path).write_text(text)
    print(f"{path}: {failures} output block(s) differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
