"""gunicorn config modules for test_dispositions.py: preload_app, and the application's
USR2 handler registered again in a server hook, as the usual advice says. Which hook
is named by PRELOAD_HOOK: post_fork (runs in the worker before gunicorn's own signal
set-up, which resets USR2) or post_worker_init (runs after it)."""
import os
import signal

preload_app = True


def _register(_):
    import preload_app as app  # the module the master imported before forking
    signal.signal(signal.SIGUSR2, app._on_usr2)


if os.environ.get("PRELOAD_HOOK") == "post_fork":
    def post_fork(server, worker):
        _register(worker)
else:
    def post_worker_init(worker):
        _register(worker)
