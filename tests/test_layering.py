"""The layers stay apart: the core knows no bundled driver, and drivers know the core only
through `mmplug` and `mmplug.kernel`."""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

import mmplug.kernel
import mmplug.page
from mmplug.authoring import scaffold

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "mmplug"

pytestmark = pytest.mark.skipif(not (ROOT / "drivers").is_dir(), reason="a source tree only")

# --- the core names no bundled driver ----------------------------------------------------------
#
# The rule, precisely: in mmplug/**/*.py no identifier, no comment and no string that is a name
# (a literal without white space) contains "zsmalloc", "z3fold", "balloon", "zspage" or starts
# with "zs_".  Allowed: docstrings and prose (a literal with white space: messages, help, the
# readings of compare's rows), which may cite the kernel's drivers as examples; a comment that
# cites a kernel source file (mm/zsmalloc.c); the kernel's own names the model keeps (the
# vmstat events balloon_inflate, balloon_deflate, balloon_migrate of
# include/linux/vm_event_item.h).  Exempt as a whole: the code that reads a real kernel's
# memory or boots one (mmplug/realkernel/, mmplug/compare/snapshot.py), whose subject is the
# kernel's zram, zswap and virtio_balloon.

DRIVER_WORD = re.compile(r"zsmalloc|z3fold|balloon|zspage|(?<![a-z])zs_", re.I)
KERNEL_NAMES = {"balloon_inflate", "balloon_deflate", "balloon_migrate"}
KERNEL_FILE = re.compile(r"\b(?:mm|drivers/[\w/]+|include/[\w/]+)/\w+\.[ch]\b")
EXEMPT = ("realkernel/", "compare/snapshot.py")


def _docstrings(tree: ast.AST) -> set[int]:
    """Line numbers where a docstring starts."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                out.add(body[0].lineno)
    return out


def driver_names_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of every place the rule above forbids."""
    docs = _docstrings(ast.parse(source))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        text = tok.string
        if tok.type == tokenize.NAME:
            bad = DRIVER_WORD.search(text) is not None
        elif tok.type == tokenize.COMMENT:
            bad = DRIVER_WORD.search(KERNEL_FILE.sub("", text)) is not None
        elif tok.type == tokenize.STRING:
            if tok.start[0] in docs:
                continue
            value = ast.literal_eval(text) if not text.lstrip("rbuRBU").startswith(("f", "F")) \
                else text
            bad = (isinstance(value, str) and not re.search(r"\s", value)
                   and value not in KERNEL_NAMES and DRIVER_WORD.search(value) is not None)
        else:
            continue
        if bad:
            found.append((tok.start[0], text))
    return found


def test_the_core_names_no_bundled_driver():
    found = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).as_posix()
        if rel.startswith(EXEMPT):
            continue
        found += [f"mmplug/{rel}:{line}: {text}"
                  for line, text in driver_names_in(path.read_text())]
    assert found == []


@pytest.mark.parametrize("source, bad", [
    ('from x import _is\nok = _is("balloon")\n', True),
    ("ZS_OBJECT_SIZE = 3072\n", True),
    ("def _zs_setup(env):\n    pass\n", True),
    ("x = 1  # special case for z3fold's headless pages\n", True),
    ('name = "zsmalloc"\n', True),
    ("x = 1  # as mm/zsmalloc.c does\n", False),
    ('msg = "a pinned object (zsmalloc\'s pin_tag) fails it"\n', False),
    ('def f():\n    """Like zs_page_migrate in mm/zsmalloc.c."""\n', False),
    ('EVENTS = ("balloon_inflate", "balloon_deflate")\n', False),
])
def test_the_rule_catches_what_it_says_and_allows_what_it_says(source, bad):
    assert bool(driver_names_in(source)) is bad


# --- drivers import only mmplug and mmplug.kernel ----------------------------------------------

ALLOWED = {"mmplug", "mmplug.kernel"}
#: what a driver must not reach through the VM object: mmplug.kernel has the function for it
VM_INSIDES = {"zone", "cpus", "sync", "_refcount", "warn_once", "mappings", "vmstat"}


def _driver_sources() -> list[tuple[str, str]]:
    out = [(p.relative_to(ROOT).as_posix(), p.read_text())
           for p in sorted(ROOT.glob("drivers/*/mmplug_*/**/*.py"))]
    out.append(("tests/drivers/simplepool.py", (ROOT / "tests/drivers/simplepool.py").read_text()))
    files = scaffold.DriverProject.for_name("gpupool").files()
    out.append(("the template's driver", files["mmplug_gpupool/__init__.py"]))
    return out


def _mmplug_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "mmplug"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "mmplug":
            names.add(node.module)
    return names


def test_drivers_import_only_mmplug_and_mmplug_kernel():
    sources = _driver_sources()
    assert len(sources) > 30     # every module of the three bundled drivers
    bad = {name: sorted(_mmplug_imports(ast.parse(text)) - ALLOWED) for name, text in sources}
    assert {name: mods for name, mods in bad.items() if mods} == {}


def test_drivers_reach_the_vm_only_through_mmplug_kernel():
    bad = []
    for name, text in _driver_sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr in VM_INSIDES:
                bad.append(f"{name}:{node.lineno}: .{node.attr}")
    assert bad == []


def test_page_helpers_a_driver_could_confuse_with_the_kernels_are_private():
    """A public helper of mmplug.page that shares a name with mmplug.kernel's is the same
    function (re-exported), never a variant without the schedule point."""
    for name, fn in vars(mmplug.kernel).items():
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        other = getattr(mmplug.page, name, None)
        assert other is None or other is fn, name


def test_the_architecture_doc_shows_the_tree():
    """docs/architecture.md names every module of the core and of its main packages."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    tree = text[text.index("```\nmmplug/"):]
    tree = tree[:tree.index("\n```", 4)]
    missing = [p.relative_to(CORE).as_posix()
               for pkg in ("", "cpus", "races", "conformance", "compare")
               for p in sorted((CORE / pkg).glob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and f" {p.name} " not in tree]
    assert missing == []
    for pkg in ("cpus/", "races/", "conformance/", "compare/"):
        assert f"  {pkg} " in tree
