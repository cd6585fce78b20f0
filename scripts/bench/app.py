# The WSGI app gunicorn serves in the benchmark (scripts/bench/run.sh).
# Deliberately trivial: the benchmark measures the arbiter, not the app.
# /sleep?ms=N answers after N ms, like sigvisor's built-in worker: run.sh
# keeps one such request in flight while it stops the server. X-Pid names the
# worker that answered (fair.sh counts the requests per worker).

import os
import time
from urllib.parse import parse_qs

BODY = b"ok\n"


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        ms = parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0]
        time.sleep(min(int(ms), 60000) / 1000)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY))),
                              ("X-Pid", str(os.getpid()))])
    return [BODY]
