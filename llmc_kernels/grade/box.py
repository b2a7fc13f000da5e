"""The first code of every learner process of ``llmc grade`` (``python -m llmc_kernels.grade.box``).

It runs before any learner code, reads its configuration from stdin (one frame, see :mod:`.sandbox`),
fences the process in, and then executes the learner process proper (:mod:`.worker` or
:mod:`.replay`) in its place. It imports only the standard library: Linux refuses a new user namespace to
a process with threads, and NumPy starts some.

The fence, from the outside in:

- the process dies with the grader (``PR_SET_PDEATHSIG``) and refuses to start for another parent;
- where Linux allows it (unprivileged user namespaces), new user, mount, network and PID namespaces: no
  network but an unconfigured loopback; a ``/proc`` of its own, so the grader and other learners' processes
  are out of sight; empty file systems mounted over the instructor's ``--solutions`` folder and the grader's
  working folder (other than this process's own); a second, nested user and mount namespace locks those mounts,
  so that the learner's code, root inside its namespace, cannot unmount them. When this process (PID 1 of its
  namespace) ends, the kernel kills every process it left behind;
- resource limits: CPU time, file size, address space (not on the cuda backend: CUDA reserves far more address
  space than it uses), core dumps off;
- a private working folder (``cwd``); the grader gives it a private HOME and a scrubbed environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import struct
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
ROLES = ("worker", "replay", "probe")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _map_ids(uid: int, gid: int) -> None:
    """Map this namespace's root to ``uid``/``gid`` of the parent namespace (the only mapping allowed)."""
    try:
        _write("/proc/self/setgroups", "deny")
    except FileNotFoundError:
        pass
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(
        _libc.mount(
            source and source.encode(),
            target.encode(),
            fstype and fstype.encode(),
            ctypes.c_ulong(flags),
            data and data.encode(),
        ),
        f"mount {target}",
    )


def _read_config() -> dict:
    """One frame on stdin, read unbuffered so that the request after it stays in the pipe for the worker."""
    head = b""
    while len(head) < 8:
        chunk = os.read(0, 8 - len(head))
        if not chunk:
            raise SystemExit("grade_box: no configuration on stdin")
        head += chunk
    (size,) = struct.unpack("<Q", head)
    body = b""
    while len(body) < size:
        chunk = os.read(0, size - len(body))
        if not chunk:
            raise SystemExit("grade_box: configuration cut short")
        body += chunk
    return json.loads(body.decode())


def enter_namespaces(cfg: dict) -> dict:
    """New user, mount, network and PID namespaces; returns in PID 1 of the new PID namespace (the parent
    waits there and exits as it does). Raises OSError where Linux refuses them."""
    uid, gid = os.getuid(), os.getgid()
    keep = cfg.get("keep")
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    _map_ids(uid, gid)
    pid = os.fork()
    if pid:  # outside: wait for the namespace's PID 1, exit as it did
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                os._exit(70)
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) % 256 if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    found = {"proc": False, "hidden": []}
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # this process's own folder, opened in the new mount namespace before anything is hidden: it is mounted
    # back from this handle where a hidden folder covers it
    keep_fd = os.open(keep, getattr(os, "O_PATH", os.O_RDONLY)) if keep else None
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        found["proc"] = True
    except OSError as e:  # a container that masks parts of /proc forbids a fresh one
        found["proc_error"] = str(e)
    for path in cfg.get("hide", []):
        if not os.path.isdir(path):
            continue
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=755")
        found["hidden"].append(path)
        if keep and (keep + os.sep).startswith(path.rstrip(os.sep) + os.sep):
            os.makedirs(keep, exist_ok=True)
            _mount(f"/proc/self/fd/{keep_fd}", keep, None, MS_BIND | MS_REC)
    if keep_fd is not None:
        os.close(keep_fd)
    # a nested, less privileged user namespace: the mounts above become locked (the learner, root in its
    # namespace, can neither unmount them nor remount them writable)
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (nested)")
    _map_ids(0, 0)
    return found


def set_limits(limits: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, key in (
        ("cpu", resource.RLIMIT_CPU),
        ("fsize", resource.RLIMIT_FSIZE),
        ("as", resource.RLIMIT_AS),
        ("nproc", getattr(resource, "RLIMIT_NPROC", None)),
    ):
        value = limits.get(name)
        if value is None or key is None:
            continue
        _, hard = resource.getrlimit(key)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        top = value
        if name == "cpu":  # SIGXCPU at the soft limit, SIGKILL 5 s later
            top = value + 5 if hard == resource.RLIM_INFINITY else min(hard, value + 5)
        resource.setrlimit(key, (value, top))


def probe(found: dict, cuda: bool) -> None:
    """Say what this box achieved (for the grader's report), on stdout as JSON."""
    import socket

    try:
        socket.create_connection(("1.1.1.1", 53), timeout=0.5).close()
        found["network"] = "reachable"
    except OSError as e:
        found["network"] = f"unreachable ({e.strerror or e})"
    found["pid"] = os.getpid()
    if cuda:  # CUDA must still work inside the namespaces
        try:
            import cupy

            found["cuda"] = f"{cupy.cuda.runtime.getDeviceCount()} device(s)"
        except Exception as e:  # noqa: BLE001 -- any failure means: no GPU in here
            found["cuda_error"] = f"{type(e).__name__}: {e}"
    sys.stdout.write(json.dumps(found) + "\n")
    sys.stdout.flush()


def main() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    cfg = _read_config()
    if os.getppid() != cfg.get("grader"):  # started by something else, or the grader is gone already
        os._exit(70)
    role = cfg.get("role")
    if role not in ROLES:
        raise SystemExit(f"grade_box: unknown role {role!r}")
    found = {"namespaces": False}
    if cfg.get("namespaces"):
        try:
            found.update(enter_namespaces(cfg))
            found["namespaces"] = True
        except OSError as e:
            if role != "probe":
                sys.stderr.write(f"llmc grade: the sandbox could not be set up: {e}\n")
                os._exit(71)
            found["error"] = str(e)
    set_limits(cfg.get("limits", {}))
    os.chdir(cfg["cwd"])
    if role == "probe":
        probe(found, bool(cfg.get("cuda")))
        os._exit(0)
    os.execv(sys.executable, [sys.executable, "-m", f"llmc_kernels.grade.{role}"])


if __name__ == "__main__":
    main()
