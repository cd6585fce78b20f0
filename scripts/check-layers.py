#!/usr/bin/env python3
"""Check that #include "..." goes down the layers only (doc/ARCHITECTURE.md).

Every C file of arbiter/, worker/ and shared/ belongs to one layer, named below by its
module (foo.c, foo.h and foo_internal.h are module foo). A file may include a header of its own layer
or a lower one, never a higher one; modules of one layer may include each other only
without a circle; and only the wiring layer includes the arbiter's header. A file
that is in no layer is an error too: a new module says where it belongs.

Exit status 0 when the tree keeps the rules, 1 with one line per broken rule."""
import os
import re
import sys

LAYERS = [
    ("shared", "shared/*"),
    ("worker", "worker/*"),
    ("low", "arbiter/{loop,loop_epoll,loop_uring,signals,lifecycle,listeners,options,"
            "options_load,config_file,"
            "activation,spawn,postfork,check,upstate,upsettings,descendants}"),
    ("middle", "arbiter/{notify,pool,control,control_cmd,control_path,control_client,"
               "metrics,bpf,bpf_pin,bpf_load,bpf_handover,bpf_events,serving,serving_scan}"),
    ("wiring", "arbiter/{arbiter,main,reload,retire,upgrade,status,prometheus}"),
]
# What a layer may include besides its own and the layers listed before it. The
# worker is a program of its own: it needs only shared/.
MAY_INCLUDE = {
    "shared": {"shared"},
    "worker": {"shared", "worker"},
    "low": {"shared", "low"},
    "middle": {"shared", "low", "middle"},
    "wiring": {"shared", "worker", "low", "middle", "wiring"},
}


def expand(pattern):
    d, _, names = pattern.partition("/")
    if names == "*":
        return d, None
    return d, set(names.strip("{}").split(","))


def layer_of(path):
    d, base = os.path.split(path)
    # foo_internal.h is what foo's own files share: part of module foo
    mod = os.path.splitext(base)[0].removesuffix("_internal")
    for name, pattern in LAYERS:
        pd, mods = expand(pattern)
        if d == pd and (mods is None or mod in mods):
            return name, f"{d}/{mod}"
    return None, f"{d}/{mod}"


def header_path(inc, src_dir):
    for d in (src_dir, "shared", "arbiter", "worker"):
        p = os.path.join(d, inc)
        if os.path.exists(p):
            return os.path.normpath(p)
    return None


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    os.chdir(root)
    errors = []
    edges = {}
    for d in ("shared", "worker", "arbiter"):
        for base in sorted(os.listdir(d)):
            if not base.endswith((".c", ".h")):
                continue
            path = f"{d}/{base}"
            layer, mod = layer_of(path)
            if layer is None:
                errors.append(f"{path}: in no layer: add its module to scripts/check-layers.py"
                              " and doc/ARCHITECTURE.md")
                continue
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if not m:
                        continue
                    hp = header_path(m.group(1), d)
                    if hp is None:
                        continue  # a generated header (the BPF skeleton) or a system one
                    hl, hmod = layer_of(hp)
                    if hmod == mod:
                        continue
                    where = f"{path}:{lineno}"
                    if hmod == "arbiter/arbiter" and layer != "wiring":
                        errors.append(f"{where}: includes arbiter.h, which only the wiring "
                                      "layer may")
                        continue
                    allowed = MAY_INCLUDE[layer]
                    if hl not in allowed and f"{hl}:{os.path.basename(hmod)}" not in allowed:
                        errors.append(f"{where}: {layer} layer includes {m.group(1)} of the "
                                      f"{hl} layer above it")
                    if hl == layer:
                        edges.setdefault(mod, set()).add(hmod)
    # Circles among the modules of one layer.
    state = {}

    def visit(mod, stack):
        state[mod] = 1
        for nxt in sorted(edges.get(mod, ())):
            if state.get(nxt) == 1:
                circle = stack[stack.index(nxt):] + [nxt]
                errors.append("include circle: " + " -> ".join(circle))
            elif not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[mod] = 2

    for mod in sorted(edges):
        if not state.get(mod):
            visit(mod, [mod])
    for e in errors:
        print(f"layers: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
