"""``composer train BLUEPRINT --workers N``: N data-parallel worker processes on this machine.

Each worker is ``python -m composer train ...`` (the same command line without ``--workers``)
with Keras's cluster variables set: coordinator ``127.0.0.1:PORT`` (a free port), N processes,
its own process id. They join JAX's multi-process runtime and train with
``keras.distribution.DataParallel`` (composer/distributed.py). Worker 0's output is shown as it
comes and only worker 0 writes the run folder; the others' output is kept and shown if one fails.
When one worker fails the others are stopped (they would wait for it in the next collective).
At the end every worker's last line (loss, weights checksum) is printed, and a difference in the
weights is an error. Several machines: start one ``composer train`` per process yourself
(docs/distributed.md).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .blueprint.errors import BlueprintError
from .distributed import ENV

HOST = "127.0.0.1"
STOP_GRACE_S = 10


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check(workers: int, cluster_flags) -> None:
    if workers < 2:
        raise BlueprintError(f"must be at least 2, got {workers}", key="--workers",
                             hint="one process trains without --workers")
    if os.environ.get(ENV["num_processes"]):  # a worker started by a launcher never launches
        raise BlueprintError(f"cannot start workers from a worker ({ENV['num_processes']} is set)",
                             key="--workers")
    if any(v is not None for v in cluster_flags):
        raise BlueprintError("--workers starts its own cluster on this machine", key="--workers",
                             hint="drop --coordinator, --num-processes and --process-id, or drop --workers "
                             "and start every process yourself (docs/distributed.md)")
    # the Keras backend is checked by the workers (distributed.for_training): importing Keras here
    # would only delay their start


def _pump(stream, lines: list[str], echo):
    from .distributed import WORKER_LINE

    result = WORKER_LINE.split("{", 1)[0]  # shown in the summary, with the other workers'
    for line in stream:
        lines.append(line)
        if echo is not None and not line.startswith(result):
            echo.write(line)
            echo.flush()


def launch_local(workers: int, argv: list[str], distribution: str | None = None,
                 cluster_flags=(None, None, None), out=None) -> int:
    """Run ``composer <argv>`` in ``workers`` processes joined on 127.0.0.1; returns an exit status."""
    _check(workers, cluster_flags)
    out = out or sys.stdout
    if distribution is None:
        argv = [*argv, "--distribution", "data_parallel"]
    address = f"{HOST}:{free_port()}"
    procs, outs, errs, threads = [], [], [], []
    # SIGTERM (a scheduler, `timeout`) ends the launcher through SystemExit, so the finally
    # below stops the workers instead of leaving them orphaned, waiting on each other
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for i in range(workers):
            env = {**os.environ, ENV["coordinator"]: address, ENV["num_processes"]: str(workers),
                   ENV["process_id"]: str(i)}
            proc = subprocess.Popen([sys.executable, "-m", "composer", *argv], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=None if i == 0 else subprocess.PIPE)
            procs.append(proc)
            outs.append([])
            errs.append([])
            threads.append(threading.Thread(target=_pump, args=(proc.stdout, outs[i], out if i == 0 else None)))
            if i:
                threads.append(threading.Thread(target=_pump, args=(proc.stderr, errs[i], None)))
        for t in threads:
            t.start()
        print(f"started {workers} workers, coordinator {address}; worker 0's output follows",
              file=sys.stderr, flush=True)
        codes = _wait(procs)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(procs)  # a no-op for workers that ended
    for t in threads:
        t.join()
    return _report(codes, outs, errs, address, out)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _wait(procs) -> list[int | None]:
    """Exit codes once every worker ended; after one fails, the others are stopped."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return codes
        if any(c not in (None, 0) for c in codes):
            _stop(procs)
            return [p.wait() for p in procs]
        time.sleep(0.2)


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _report(codes, outs, errs, address, out) -> int:
    from .distributed import WORKER_LINE

    prefix = WORKER_LINE.split("{", 1)[0]
    lines = [next((ln.strip() for ln in reversed(o) if ln.startswith(prefix)), None) for o in outs]
    print(f"\n{len(codes)} workers at {address}: exit codes {codes}", file=out)
    failed = [c for c in codes if c != 0]
    if failed:
        for i, code in enumerate(codes):
            # worker 0's stderr was shown as it came; a stopped worker (negative) has nothing to add
            if i and code > 0 and code != codes[0]:
                tail = "".join(errs[i][-20:]).rstrip()
                print(f"\nworker {i} (exit {code}), last lines of its stderr:\n{tail}", file=sys.stderr)
        # the first worker that failed on its own (a user mistake, exit 2, fails every worker alike)
        return next((c for c in codes if c > 0), 1)
    for i, line in enumerate(lines):
        print(f"  {line or f'worker {i}: no result line'}", file=out)
    checksums = {ln.rsplit(" ", 1)[-1] for ln in lines if ln}
    if len(checksums) != 1 or None in lines:
        print("error: the workers did not end with identical weights", file=sys.stderr)
        return 1
    print(f"  every worker ended with identical weights (sha256 {checksums.pop()})", file=out)
    return 0
