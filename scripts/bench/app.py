# The WSGI app gunicorn serves in the benchmark (scripts/bench/run.sh).
# Deliberately trivial: the benchmark measures the arbiter, not the app.

BODY = b"ok\n"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
