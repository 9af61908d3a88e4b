"""Keep pandas out of a CLI process that does not use it.

pyarrow imports pandas (0.4-0.9 s of start-up, more than any data work in an ingest or validate of
a batch) the first time it converts a Python or NumPy value — a list, an object array, a scalar
argument of a compute function — only to ask whether the value is a pandas object. llctl never
hands pyarrow a pandas object and never imports pandas itself, so a ``llctl`` process declines
that implicit import. An ``import pandas`` statement anywhere (mlflow, alibi-detect, a user's model
factory) and ``importlib.import_module`` import it as usual, and once pandas is loaded pyarrow uses it.
"""

from __future__ import annotations

import os
import sys

_LLCTL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class _NoImplicitPandas:
    """A meta-path finder that refuses ``pandas`` when the import comes from inside a pyarrow call
    made by llctl or by pyarrow's own Python code — not from an import statement."""

    def find_spec(self, name: str, path=None, target=None):  # noqa: ARG002 - the finder protocol
        if name != "pandas" or (arrow := sys.modules.get("pyarrow")) is None or not getattr(arrow, "__file__", None):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back
        if frame is None or not frame.f_code.co_filename.startswith((_LLCTL_DIR, os.path.dirname(arrow.__file__) + os.sep)):
            return None
        import opcode

        if frame.f_code.co_code[frame.f_lasti] == opcode.opmap["IMPORT_NAME"]:
            return None  # an `import pandas` statement: what the code asked for
        raise ModuleNotFoundError("pandas is not imported implicitly by pyarrow in an llctl process", name=name)


def keep_pandas_out() -> None:
    """Install the finder for this process (once)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoImplicitPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoImplicitPandas())
