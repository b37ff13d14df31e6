"""Import a function's handler module from its directory, as Nuclio does."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from myspinbot.runtime.config import FunctionConfig

Handler = Callable[[Any, Any], Any]


def load_handler_module(function_dir: Path, config: FunctionConfig) -> ModuleType:
    """Load `<dir>/<module>.py` under a name unique to the function.

    Every function's module is called `handler`; a unique name lets several
    functions live in one interpreter (tests, Nuclio's test harness).
    """
    function_dir = Path(function_dir).resolve()
    path = function_dir / (config.handler_module.replace(".", "/") + ".py")
    name = f"myspinbot_fn_{config.name.replace('-', '_')}_{config.handler_module}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Nuclio puts the function directory on the path, so helper modules next to
    # the handler import as they would there.
    if str(function_dir) not in sys.path:
        sys.path.insert(0, str(function_dir))
    spec.loader.exec_module(module)
    return module


def handler_of(module: ModuleType, config: FunctionConfig) -> Handler:
    fn = getattr(module, config.handler_function, None)
    if not callable(fn):
        raise ImportError(f"{module.__file__} has no callable {config.handler_function!r}")
    return fn  # type: ignore[no-any-return]
