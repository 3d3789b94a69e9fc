#!/usr/bin/env python3
"""Fails when modules inside one crate import each other in a circle.

For every crate under crates/, each top-level module (src/<name>.rs or src/<name>/) is a node;
`use crate::<other>` (and `crate::<other>::` paths) anywhere in its files is an edge. Test-only
files (tests.rs, *_tests.rs, files under tests/) and the crate root are ignored. Prints each
cycle found; exit 1 if any.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(src: pathlib.Path, file: pathlib.Path):
    rel = file.relative_to(src)
    if rel.parts[0] in ("lib.rs", "main.rs", "bin"):
        return None
    if rel.name == "tests.rs" or rel.name.endswith("_tests.rs") or "tests" in rel.parts[:-1]:
        return None
    return rel.parts[0].removesuffix(".rs")


def strip_test_modules(text: str) -> str:
    # Drop `#[cfg(test)] mod x { ... }` blocks: test code may use anything.
    out, i = [], 0
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text[i:])
        if not m:
            out.append(text[i:])
            return "".join(out)
        start = i + m.start()
        out.append(text[i:start])
        depth, j = 0, i + m.end() - 1
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        i = j


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main() -> int:
    bad = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        graph = {}
        for file in src.rglob("*.rs"):
            module = module_of(src, file)
            if module is None:
                continue
            text = strip_test_modules(file.read_text(encoding="utf-8"))
            # Doc links and comments are not imports.
            text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
            for target in USE.findall(text):
                is_module = (src / f"{target}.rs").exists() or (src / target).is_dir()
                if target != module and is_module:
                    graph.setdefault(module, set()).add(target)
        for cycle in cycles(graph):
            bad += 1
            print(f"{src.parent.name}: import cycle: {' -> '.join(cycle)}")
    if bad:
        print(f"check-imports: {bad} cycle(s); move shared items into a module both can use")
        return 1
    print("check-imports: no import cycles inside any crate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
