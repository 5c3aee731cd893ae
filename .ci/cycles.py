#!/usr/bin/env python3
"""Fails when the files of `src/` import each other in a cycle.

An edge A -> B means file A names an item of module B: a `use` of a `crate::`, `super::` or
`self::` path, or such a path written inline (`crate::worker::process::spawn(..)`). `mod x;`
declarations are not edges (a parent declares its children; importing is what couples files).
Comments are skipped, so doc links do not count. Prints every cycle (strongly connected group of
files) with the names that tie it, and exits 1 if there is any.

Usage: python3 .ci/cycles.py [SRC_DIR]   (default: src next to this script's parent)
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path, src):
    """The module path (list of names) of a source file."""
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(module, files):
    """The file that defines `module` (a list of names), or None."""
    return files.get(tuple(module))


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] if "//" in line and not _in_string(line) else line
                     for line in text.splitlines()
                     if not line.lstrip().startswith("//"))


def _in_string(line):
    # A `//` inside a string literal ("http://..."): keep the line whole.
    before = line.split("//", 1)[0]
    return before.count('"') % 2 == 1


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (aliases and globs dropped)."""
    tree = tree.strip()
    if "{" not in tree:
        tree = re.sub(r"\s+as\s+" + IDENT + r"$", "", tree)
        return [tree.rstrip(":*").rstrip(":")]
    head, rest = tree.split("{", 1)
    body = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            for sub in expand_use_tree(p):
                out.append((head + sub) if sub != "self" else head.rstrip(":"))
    return out


def reexports(text):
    """Items a file re-exports (`pub use a::B;`, `pub(crate) use a::{B, C as D}`): name -> path."""
    out = {}
    for m in re.finditer(r"\bpub(?:\([a-z]+\))?\s+use\s+([^;]+);", text):
        tree = " ".join(m.group(1).split())
        for path in expand_use_tree(tree):
            out[path.split("::")[-1]] = path
        for alias in re.finditer(r"(" + IDENT + r"(?:::" + IDENT + r")*)\s+as\s+(" + IDENT + r")", tree):
            out[alias.group(2)] = alias.group(1)
    return out


def paths_in(text):
    """Every crate/super/self path the file names."""
    found = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        found.extend(expand_use_tree(" ".join(m.group(1).split())))
    text_wo_use = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in re.finditer(r"\b((?:crate|super|self)(?:::" + IDENT + r")+)", text_wo_use):
        found.append(m.group(1))
    return [p for p in found if p.split("::")[0] in ("crate", "super", "self")]


def resolve(path, here, files, reexported=None, depth=0):
    """The file a path points into: the longest module prefix that is a file, followed through
    re-exports (a `mod.rs` or `lib.rs` that only re-exports an item is a facade, not a coupling)."""
    target, item = _resolve(path, here, files)
    if target and item and reexported and depth < 8:
        inner = reexported.get(target, {}).get(item)
        if inner:
            module = [m for m, f in files.items() if f == target][0]
            followed = resolve(inner, list(module), files, reexported, depth + 1)
            if followed[0]:
                return followed
    return target, item


def _resolve(path, here, files):
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    else:
        base = list(here)
        rest = parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    for n in range(len(rest), -1, -1):
        f = file_of(base + rest[:n], files)
        if f:
            return f, rest[n] if n < len(rest) else ""
    return None, ""


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    src = os.path.normpath(src)
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[tuple(module_of(p, src))] = p
    texts = {}
    for path in files.values():
        text = strip_comments(open(path, encoding="utf-8").read())
        # Unit tests (`#[cfg(test)] mod tests { use super::*; }`, at the end of a file) are not
        # part of the file's dependencies.
        texts[path] = text.split("#[cfg(test)]\nmod tests", 1)[0]
    reexported = {path: reexports(text) for path, text in texts.items()}
    graph, names = defaultdict(set), defaultdict(set)
    for module, path in files.items():
        graph[path]
        text = texts[path]
        for p in paths_in(text):
            # `self::` and `super::` are relative to the file's own module.
            target, item = resolve(p, list(module), files, reexported)
            if target and target != path:
                graph[path].add(target)
                names[(path, target)].add(item or "(module)")
    cycles = [sorted(c) for c in sccs(graph) if len(c) > 1]
    rel = lambda p: os.path.relpath(p, os.path.dirname(src))
    for i, c in enumerate(sorted(cycles), 1):
        print(f"import cycle {i}: {len(c)} files: " + ", ".join(rel(p) for p in c))
        for a in c:
            for b in sorted(graph[a]):
                if b in c:
                    print(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(names[(a, b)]))}")
    if cycles:
        print(f"{len(cycles)} import cycle(s) between files of {rel(src)}")
        return 1
    print(f"no import cycle between the {len(files)} files of {rel(src)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
