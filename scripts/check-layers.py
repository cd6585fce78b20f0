#!/usr/bin/env python3
"""Check that #include "..." and calls go down the layers only (doc/ARCHITECTURE.md).

Every C file of arbiter/, worker/ and shared/ belongs to one layer, named below by its
module (foo.c, foo.h and foo_internal.h are module foo). A file may include a header of its own layer
or a lower one, never a higher one; modules of one layer may include each other only
without a circle; and only the wiring layer includes the arbiter's header. A file
that is in no layer is an error too: a new module says where it belongs.

The wiring layer shares one header, so its includes cannot show which way its calls
go: CALL_ORDER does. A function a wiring file defines may be called only from the
wiring files listed before it (and from its own); a call back up is an error, as is a
wiring file missing from the list. Calls through a pointer (the hooks the layers below
are given) are how anything reports back up, and are not calls here.

Calls are checked across the layers too: a file may call a function of its own layer
or of a layer it may include, whatever declared it (a prototype written into a .c file
would pass the include check), and the arbiter's files call each other without a
circle.

Exit status 0 when the tree keeps the rules, 1 with one line per broken rule."""
import os
import re
import sys

LAYERS = [
    ("shared", "shared/*"),
    ("worker", "worker/*"),
    ("low", "arbiter/{loop,loop_epoll,loop_uring,signals,lifecycle,listeners,listener_set,"
            "options,options_load,config_file,"
            "activation,spawn,spawn_vm,postfork,worker_image,check,upstate,upsettings,descendants,listen_queue,heartbeat,boot_gate}"),
    ("middle", "arbiter/{sources,notify,pool,pool_slots,pool_watch,pool_state,control,control_cmd,control_path,control_client,provenance,killable,"
               "control_workers,control_reload,control_cmds,dispositions,"
               "metrics,bpf,bpf_object,bpf_pin,bpf_load,bpf_handover,bpf_events,serving,serving_scan,autoscale}"),
    ("wiring", "arbiter/{arbiter,main,setup,scale,commands,reload,retire,upgrade,upgrade_adopt,upgrade_internal,arbiter_bpf,sync,status,"
               "prometheus}"),
]
# The wiring layer's files, callers first: main starts the arbiter, which runs the
# loop; setup opens what the loop serves; a USR2 may start a reload, which retires
# listeners; the probes' glue, the pool's settings and the views are called by those.
CALL_ORDER = ["main", "arbiter", "setup", "scale", "commands", "upgrade_adopt", "upgrade", "reload", "retire", "arbiter_bpf",
              "sync", "prometheus", "status"]
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


def code_only(text):
    """text with its comments, strings and character constants blanked (lines kept)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  blank, text, flags=re.S)


def circles(edges, what):
    """One line per circle in the graph edges (module -> modules it uses)."""
    found = []
    state = {}

    def visit(mod, stack):
        state[mod] = 1
        for nxt in sorted(edges.get(mod, ())):
            if state.get(nxt) == 1:
                found.append(f"{what}: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[mod] = 2

    for mod in sorted(edges):
        if not state.get(mod):
            visit(mod, [mod])
    return found


def check_call_order():
    errors = []
    files = {}
    for base in sorted(os.listdir("arbiter")):
        path = f"arbiter/{base}"
        if not base.endswith(".c") or layer_of(path)[0] != "wiring":
            continue
        mod = base[:-2]
        if mod not in CALL_ORDER:
            errors.append(f"{path}: in no place of the wiring call order: add it to "
                          "CALL_ORDER in scripts/check-layers.py")
            continue
        with open(path, encoding="utf-8") as f:
            files[mod] = code_only(f.read())
    # Kernel style: a function's definition starts its line, with its return type.
    defined = {}
    for mod, text in files.items():
        for m in re.finditer(r"^(?!static\b)[A-Za-z_][\w \t*]*?\b(\w+)\(([^;{]*?)\)\s*\{",
                             text, re.M):
            defined[m.group(1)] = mod
    if not defined:
        return errors
    call = re.compile(r"\b(" + "|".join(map(re.escape, sorted(defined))) + r")\s*\(")
    for mod, text in files.items():
        rank = CALL_ORDER.index(mod)
        for lineno, line in enumerate(text.split("\n"), 1):
            for m in call.finditer(line):
                callee = defined[m.group(1)]
                if callee != mod and CALL_ORDER.index(callee) <= rank:
                    errors.append(f"arbiter/{mod}.c:{lineno}: calls {m.group(1)}(), defined "
                                  f"in arbiter/{callee}.c above it in the wiring call order")
    return errors


def check_calls():
    """A call to a function of a layer the caller may not include is an error, whatever
    declared it (a prototype written in a .c file passes the include check); so is a
    circle of calls among the arbiter's files (the worker is one program whose files
    share builtin.h, and is left out of that)."""
    errors = []
    files = {}
    for d in ("shared", "worker", "arbiter"):
        for base in sorted(os.listdir(d)):
            if base.endswith(".c"):
                path = f"{d}/{base}"
                layer, mod = layer_of(path)
                if layer is None:
                    continue  # said by main()
                with open(path, encoding="utf-8") as f:
                    files[path] = (layer, mod, code_only(f.read()))
    defined = {}
    for path, (layer, mod, text) in files.items():
        for m in re.finditer(r"^(?!static\b)[A-Za-z_][\w \t*]*?\b(\w+)\(([^;{]*?)\)\s*\{",
                             text, re.M):
            if m.group(1) != "main":
                defined[m.group(1)] = (layer, mod)
    call = re.compile(r"\b(" + "|".join(map(re.escape, sorted(defined))) + r")\s*\(")
    edges = {}
    for path, (layer, mod, text) in files.items():
        for lineno, line in enumerate(text.split("\n"), 1):
            for m in call.finditer(line):
                cl, cmod = defined[m.group(1)]
                if cmod == mod:
                    continue
                if cl not in MAY_INCLUDE[layer]:
                    errors.append(f"{path}:{lineno}: calls {m.group(1)}(), defined in "
                                  f"{cmod}.c of the {cl} layer above it")
                elif mod.startswith("arbiter/") and cmod.startswith("arbiter/"):
                    edges.setdefault(mod, set()).add(cmod)
    return errors + circles(edges, "call circle")


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
    errors += circles(edges, "include circle")
    errors += check_call_order()
    errors += check_calls()
    for e in errors:
        print(f"layers: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
