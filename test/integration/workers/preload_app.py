"""A WSGI app for gunicorn --preload in test_dispositions.py: at import time, in the
master, it sets a USR2 handler, as an application (or a library it imports) may."""
import signal

usr2_seen = 0


def _on_usr2(sig, frame):
    global usr2_seen
    usr2_seen += 1


signal.signal(signal.SIGUSR2, _on_usr2)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
