"""Run inside the notebook kernel by ``llmc grade``: keep a learner's cell from changing how a check judges.

The graded notebook calls :func:`arm` after the course's set-up cells and before the learner's code, and
:func:`restore` right before each check cell. ``restore`` puts back what the learner's code may have replaced:

- the checker's modules (``llmc_kernels.check*``, ``reference``, ``opspec``, ``errors``, ``_honesty``): every
  module-level name, the contents of their dicts and lists (tolerances), the code of their functions, the
  attributes of their classes, and their ``sys.modules`` entries;
- the functions and classes of every other ``llmc_kernels`` module, NumPy's and Python's built-ins, and any name
  added to a module that would shadow a built-in (a module-level ``print``);
- ``sys.stdout``/``sys.stderr``/``sys.displayhook``/``sys.excepthook``;
- the IPython shell's exception handlers, input and AST transformers, display hooks and event callbacks, the
  kernel's message handlers, and methods replaced on the shell or kernel object;
- the notebook's names bound to modules at :func:`arm` time (``check``, ``np``, ...).

It prints one ``llmc-grade-guard: restored ...`` line naming what it put back (nothing when nothing changed);
the grader reports that for review. This raises the bar; it is not a sandbox: the learner's code runs in the
same process as the check. ``llmc grade`` also reads the learner's cells for such constructs.

``arm(seed)`` also sets the checks' default seed (``llmc grade --seed``).
"""
from __future__ import annotations

import builtins
import sys
import types

_JUDGE = ("llmc_kernels.check", "llmc_kernels.reference", "llmc_kernels.opspec", "llmc_kernels.errors",
          "llmc_kernels._honesty", "llmc_kernels")
_SHELL_ATTRS = ("custom_exceptions", "CustomTB", "InteractiveTB", "SyntaxTB", "displayhook", "display_pub",
                "display_trap", "display_formatter", "input_transformer_manager", "events", "data_pub",
                "showtraceback", "_showtraceback", "showsyntaxerror", "run_cell", "run_cell_async", "run_ast_nodes",
                "run_code", "transform_cell", "ex", "ev")
_SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
_KERNEL_ATTRS = ("do_execute", "execute_request", "send_response", "session", "iopub_socket", "_publish_execute_input",
                 "_publish_status")
_MISSING = object()
_CALLABLE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType,
             staticmethod, classmethod, property)
_STATE: dict | None = None
# set anew by IPython/ipykernel for every cell they run
_PER_CELL = {("builtins", "input"), ("builtins", "raw_input"), ("builtins", "getpass")}


def _same(a, b) -> bool:
    """Identity, except that bound methods are made anew on each attribute access: compare those by equality."""
    return a is b or (isinstance(a, types.MethodType) and isinstance(b, types.MethodType) and a == b)


def _is_judge(name: str) -> bool:
    return name in _JUDGE or name.startswith("llmc_kernels.check")


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _copy(value):
    if type(value) is dict:
        return dict(value)
    if type(value) is list:
        return list(value)
    return _MISSING


def arm(seed: int | None = None) -> None:
    """Take the snapshot that :func:`restore` goes back to. With ``seed``, the checks draw their random cases
    from that seed (set before the snapshot, so that restoring keeps it)."""
    global _STATE
    import llmc_kernels.check       # the checkers, loaded here in case the chapter's own cells did not
    import llmc_kernels.check_model
    import llmc_kernels.reference  # noqa: F401
    if seed is not None:
        llmc_kernels.check.DEFAULT_SEED = llmc_kernels.check_model.DEFAULT_SEED = int(seed)
    mods = {}
    for name, mod in list(sys.modules.items()):
        if isinstance(mod, types.ModuleType) and (name == "llmc_kernels" or name.startswith("llmc_kernels.")) \
                and name != __name__:
            mods[name] = mod
    for name in ("numpy", "builtins"):
        if name in sys.modules:
            mods[name] = sys.modules[name]
    state = {"modules": {}, "contents": {}, "code": [], "classes": {}, "sys": {}, "lists": {}, "events": {},
             "handlers": None, "user": {}}
    for name, mod in mods.items():
        namespace = dict(vars(mod))
        state["modules"][name] = (mod, namespace)
        if not _is_judge(name):
            continue
        for key, value in namespace.items():
            snapshot = _copy(value)
            if snapshot is not _MISSING:
                state["contents"][(name, key)] = (value, snapshot)
            if isinstance(value, types.FunctionType):
                state["code"].append((f"{name}.{key}", value, value.__code__, value.__defaults__,
                                      value.__kwdefaults__))
            elif isinstance(value, type) and getattr(value, "__module__", "") == name:
                state["classes"][f"{name}.{key}"] = (value, dict(vars(value)))
                for attr, member in vars(value).items():
                    if isinstance(member, types.FunctionType):
                        state["code"].append((f"{name}.{key}.{attr}", member, member.__code__, member.__defaults__,
                                              member.__kwdefaults__))
    state["sys"] = {k: getattr(sys, k) for k in ("stdout", "stderr", "displayhook", "excepthook")}
    ip = _shell()
    if ip is not None:
        state["shell"] = _snap(ip, _SHELL_ATTRS)
        state["lists"] = {k: list(getattr(ip, k)) for k in _SHELL_LISTS if isinstance(getattr(ip, k, None), list)}
        callbacks = getattr(getattr(ip, "events", None), "callbacks", None)
        if isinstance(callbacks, dict):
            state["events"] = {k: list(v) for k, v in callbacks.items()}
        kernel = getattr(ip, "kernel", None)
        if kernel is not None:
            state["kernel"] = _snap(kernel, _KERNEL_ATTRS + ("shell_handlers",))
            handlers = getattr(kernel, "shell_handlers", None)
            if isinstance(handlers, dict):
                state["handlers"] = (handlers, dict(handlers))
        state["user"] = {k: v for k, v in ip.user_ns.items()
                         if isinstance(v, types.ModuleType) or k in ("RawKernel", "__builtins__")}
    _STATE = state


def _restore_modules(state, restored):
    shadowable = set(dir(builtins))
    for name, (mod, namespace) in state["modules"].items():
        judge = _is_judge(name)
        current = vars(mod)
        for key, value in namespace.items():
            now = current.get(key, _MISSING)
            if _same(now, value) or (name, key) in _PER_CELL:
                continue
            if judge or isinstance(value, _CALLABLE) or key.startswith("__"):
                current[key] = value
                restored.append(f"{name}.{key}")
        if name != "builtins":
            for key in [k for k in current if k not in namespace and k in shadowable]:
                del current[key]
                restored.append(f"{name}.{key} (added)")
        if judge and sys.modules.get(name) is not mod:
            sys.modules[name] = mod
            restored.append(f"sys.modules[{name!r}]")
    for (name, key), (obj, snapshot) in state["contents"].items():
        if obj != snapshot:
            if isinstance(obj, dict):
                obj.clear()
                obj.update(snapshot)
            else:
                obj[:] = snapshot
            restored.append(f"{name}.{key} (contents)")
    for where, func, code, defaults, kwdefaults in state["code"]:
        if func.__code__ is not code or func.__defaults__ is not defaults or func.__kwdefaults__ is not kwdefaults:
            func.__code__, func.__defaults__, func.__kwdefaults__ = code, defaults, kwdefaults
            restored.append(f"{where} (code)")
    for where, (cls, attrs) in state["classes"].items():
        current = dict(vars(cls))
        for key, value in attrs.items():
            if current.get(key, _MISSING) is not value and key not in ("__dict__", "__weakref__"):
                try:
                    setattr(cls, key, value)
                    restored.append(f"{where}.{key}")
                except (AttributeError, TypeError):
                    pass
        for key in [k for k in current if k not in attrs]:
            try:
                delattr(cls, key)
                restored.append(f"{where}.{key} (added)")
            except (AttributeError, TypeError):
                pass


def _static(cls, key):
    """The class attribute as stored (no descriptor call: a classmethod stays a classmethod)."""
    for klass in cls.__mro__:
        if key in vars(klass):
            return vars(klass)[key]
    return _MISSING


def _snap(obj, keys) -> dict:
    """What each attribute is now: on the instance (or in its traitlets values) and on its class."""
    traits = getattr(obj, "_trait_values", None)
    snap = {}
    for key in keys:
        cls_attr = (_static(type(obj), key), key in vars(type(obj)))
        if isinstance(traits, dict) and key in traits:
            snap[key] = ("trait", traits[key], cls_attr)
        else:
            snap[key] = ("inst", vars(obj).get(key, _MISSING), cls_attr)
    return snap


def _back(obj, snap: dict, label: str, restored: list) -> None:
    traits = getattr(obj, "_trait_values", None)
    cls = type(obj)
    for key, (where, value, (cls_attr, own)) in snap.items():
        if where == "trait":
            if traits.get(key, _MISSING) is not value:
                traits[key] = value
                restored.append(f"{label}.{key}")
        else:
            current = vars(obj).get(key, _MISSING)
            if current is not value:
                if value is _MISSING:
                    del vars(obj)[key]
                else:
                    vars(obj)[key] = value
                restored.append(f"{label}.{key}")
        if _static(cls, key) is not cls_attr:
            try:
                if not own and key in vars(cls):
                    delattr(cls, key)
                if _static(cls, key) is not cls_attr and cls_attr is not _MISSING:
                    setattr(cls, key, cls_attr)
                restored.append(f"{label} class.{key}")
            except (AttributeError, TypeError):
                pass


def _restore_shell(state, restored):
    ip = _shell()
    if ip is None or "shell" not in state:
        return
    _back(ip, state["shell"], "shell", restored)
    for key, items in state["lists"].items():
        current = getattr(ip, key, None)
        if not isinstance(current, list):
            setattr(ip, key, list(items))
            restored.append(f"shell.{key}")
        elif current != items:
            current[:] = items
            restored.append(f"shell.{key}")
    callbacks = getattr(getattr(ip, "events", None), "callbacks", None)
    if isinstance(callbacks, dict):
        for event, items in state["events"].items():
            now = callbacks.get(event)
            if isinstance(now, list) and now != items:
                extra = [cb for cb in now if cb not in items]
                # matplotlib's inline backend registers callbacks when a learner imports pyplot: harmless
                benign = all(cb in now for cb in items) and all(
                    (getattr(cb, "__module__", "") or "").startswith(("matplotlib", "IPython", "ipykernel"))
                    for cb in extra)
                if not benign:
                    now[:] = items
                    restored.append(f"shell.events[{event!r}]")
    kernel = getattr(ip, "kernel", None)
    if kernel is not None and "kernel" in state:
        _back(kernel, state["kernel"], "kernel", restored)
        if state["handlers"] is not None:
            handlers, snapshot = state["handlers"]
            if handlers != snapshot:
                handlers.clear()
                handlers.update(snapshot)
                restored.append("kernel.shell_handlers (contents)")
    for key, value in state["user"].items():
        if ip.user_ns.get(key, _MISSING) is not value:
            ip.user_ns[key] = value
            restored.append(f"the notebook's name {key}")


def restore() -> list[str]:
    """Put back what :func:`arm` saw; returns (and prints) what had changed."""
    restored: list[str] = []
    state = _STATE
    if state is None:
        raise RuntimeError("llmc grade: grade_guard.restore() before arm()")
    for key, value in state["sys"].items():
        if not _same(getattr(sys, key), value):
            setattr(sys, key, value)
            restored.append(f"sys.{key}")
    _restore_modules(state, restored)
    _restore_shell(state, restored)
    if restored:
        print("llmc-grade-guard: restored " + "; ".join(dict.fromkeys(restored)))
    return restored
