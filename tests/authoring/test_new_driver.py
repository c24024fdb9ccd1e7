"""`mmplug new-driver`: the generated project, its driver, and one-line errors for bad names."""

from __future__ import annotations

import importlib.metadata
import json
import random
import tomllib
from importlib import resources

import pytest

from mmplug import VM, PluginHost, VMConfig
from mmplug.authoring import scaffold
from mmplug.cli import main
from mmplug.compaction import compact_memory
from mmplug.constants import MigrateMode
from mmplug.kernel import PAGE_MAPPING_MOVABLE, page_isolated
from mmplug.migrate import PageList, isolate_movable_page, migrate_pages
from mmplug.testing import migrate_page


def run_cli(args, capsys):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def project(tmp_path, capsys):
    code, out, err = run_cli(["new-driver", "gpupool", "--dir", str(tmp_path / "proj")], capsys)
    assert code == 0, err
    return tmp_path / "proj"


@pytest.fixture
def driver(project):
    """The generated driver, loaded from its file, and a VM to run it on."""
    host = PluginHost()
    loaded = host.load(str(project / "mmplug_gpupool" / "__init__.py"))
    return loaded, VM(VMConfig(nr_pages=1024), plugins=host)


def test_writes_every_file_and_says_what_to_do_next(tmp_path, capsys):
    code, out, _ = run_cli(["new-driver", "gpupool", "--dir", str(tmp_path / "p")], capsys)
    assert code == 0
    files = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*")
                   if p.is_file())
    assert files == [".gitignore", "README.md", "mmplug_gpupool/__init__.py", "pyproject.toml",
                     "tests/test_gpupool.py"]
    assert "mmplug check-driver gpupool" in out
    # pytest comes with the test extra: the install step must name it (run for real in
    # test_generated_project.py)
    assert "python -m pip install -e '.[test]'" in out and "python -m pytest" in out


def test_json_says_what_was_written_and_what_to_do_next(tmp_path, capsys):
    code, out, _ = run_cli(["new-driver", "gpupool", "--dir", str(tmp_path / "p"), "--json",
                            "-o", str(tmp_path / "new.json")], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc == json.loads((tmp_path / "new.json").read_text())
    assert doc["name"] == "gpupool" and doc["directory"] == str(tmp_path / "p")
    assert "mmplug_gpupool/__init__.py" in doc["files"]
    assert doc["next"][1] == "python -m pip install -e '.[test]'"


def test_default_directory_is_mmplug_dash_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(["new-driver", "zram_like"], capsys)
    assert code == 0
    assert (tmp_path / "mmplug-zram-like" / "mmplug_zram_like" / "__init__.py").is_file()


def test_pyproject_declares_the_entry_point_and_the_pytest_driver(project):
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "mmplug-gpupool"
    assert meta["project"]["entry-points"]["mmplug.drivers"] == {"gpupool": "mmplug_gpupool"}
    assert meta["tool"]["setuptools"]["packages"] == ["mmplug_gpupool"]
    assert meta["tool"]["pytest"]["ini_options"]["mmplug_driver"] == "gpupool"
    assert any(dep.startswith("mmplug") for dep in meta["project"]["dependencies"])


def test_test_file_runs_the_conformance_suite_through_the_plugin(project):
    text = (project / "tests" / "test_gpupool.py").read_text()
    assert 'test_conformance = conformance_tests("gpupool")' in text


def test_every_template_renders_without_leftover_placeholders():
    project = scaffold.DriverProject.for_name("abc")
    for relpath, text in project.files().items():
        assert "{{" not in text, relpath


def test_render_refuses_an_unknown_placeholder():
    with pytest.raises(KeyError, match="nope"):
        scaffold.render("x = {{nope}}", {"name": "a"})


def test_the_template_files_ship_as_package_data():
    names = {p.name for p in resources.files("mmplug.authoring").joinpath("template").iterdir()}
    assert {template for template, _ in scaffold.LAYOUT} <= names


# --- bad input: one line on stderr, exit 2, nothing written ------------------------------------

@pytest.mark.parametrize("name, why", [
    ("my-driver", "cannot be packaged"),
    ("9lives", "cannot be packaged"),
    ("class", "is a Python keyword"),
    ("", "is empty"),
    ("pöol", "cannot be packaged: use ASCII letters"),    # an identifier, not a distribution
    ("__init__", "cannot be packaged"),                   # mmplug---init-- is no distribution
    ("pool_", "not ending with _"),
    ("p" * 300, "use at most 64"),
    ("a\x00b", "cannot be packaged"),
])
def test_bad_names_give_one_line_and_exit_2(tmp_path, capsys, name, why):
    code, out, err = run_cli(["new-driver", name, "--dir", str(tmp_path / "p")], capsys)
    assert code == 2
    assert err.startswith("mmplug: error: driver name") and why in err
    assert err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_a_bad_name_gets_a_suggestion(tmp_path, capsys):
    _, _, err = run_cli(["new-driver", "gpu-pool", "--dir", str(tmp_path / "p")], capsys)
    assert "(e.g. gpu_pool)" in err
    _, _, err = run_cli(["new-driver", "pöol", "--dir", str(tmp_path / "p")], capsys)
    assert "(e.g. pool)" in err


def test_an_existing_directory_is_refused_and_left_alone(tmp_path, capsys):
    target = tmp_path / "p"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    code, _, err = run_cli(["new-driver", "gpupool", "--dir", str(target)], capsys)
    assert code == 2
    assert "already exists" in err and err.count("\n") == 1
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_the_name_of_an_installed_driver_is_refused(tmp_path, capsys, monkeypatch):
    taken = importlib.metadata.EntryPoint("zsmalloc", "mmplug_zsmalloc", "mmplug.drivers")
    monkeypatch.setattr(scaffold.importlib.metadata, "entry_points",
                        lambda group: [taken] if group == "mmplug.drivers" else [])
    code, _, err = run_cli(["new-driver", "zsmalloc", "--dir", str(tmp_path / "p")], capsys)
    assert code == 2 and "already installed (mmplug_zsmalloc)" in err


# --- the generated driver keeps the contract (core only; the suite runs in the venv test) -----

def test_generated_driver_loads_with_its_declared_capabilities(driver):
    loaded, _ = driver
    assert loaded.ok and loaded.name == "gpupool"
    caps = loaded.info.capabilities
    assert caps.knobs == {"pin", "busy", "map"} and caps.max_object_size == 256
    assert caps.may_refuse_isolation and caps.may_fail_migration and caps.free_while_isolated


def test_generated_driver_keeps_bytes_through_compaction(driver):
    loaded, vm = driver
    pool = vm.create_from(loaded)
    rng = random.Random(3)
    stored = {}
    for _ in range(400):
        data = rng.randbytes(rng.randrange(1, 257))
        stored[pool.store(data)] = data
    for handle in list(stored)[::2]:  # holes in every page, then compaction fills them
        pool.free(handle)
        del stored[handle]
    before = {p.pfn for p in pool.pages()}
    compact_memory(vm)
    for page in list(pool.pages())[:5]:
        assert migrate_page(vm, page).migrated
    assert {p.pfn for p in pool.pages()} != before
    assert all(pool.read(h) == d for h, d in stored.items())
    pool.verify()
    assert vm.warnings == []
    vm.destroy_driver(pool)
    assert vm.unclaimed_pages() == []


def test_generated_driver_migration_waits_while_pinned_or_busy(driver):
    loaded, vm = driver
    pool = vm.create_from(loaded)
    handle = pool.store(b"x" * 10)
    (page,) = pool.pages()
    pool.pin(handle)
    assert not migrate_page(vm, page).migrated
    pool.unpin(handle)
    pool.hold()
    assert not migrate_page(vm, page).migrated
    pool.release()
    assert migrate_page(vm, page).migrated
    assert pool.read(handle) == b"x" * 10


def test_generated_driver_keeps_a_page_with_a_mapped_object(driver):
    loaded, vm = driver
    pool = vm.create_from(loaded)
    handle = pool.store(b"mapped")
    (page,) = pool.pages()
    pool.map(handle)
    assert isolate_movable_page(vm, page, 0) != 0          # ISO-6: refused
    assert vm.vmstat.events["isolate_refused"] == 1 and not page_isolated(page)
    pool.unmap(handle)
    assert isolate_movable_page(vm, page, 0) == 0
    pool.map(handle)                                      # mapped while isolated
    pages = PageList()
    pages.add(page)
    assert migrate_pages(vm, pages, lambda p, _: vm.alloc_page(), None, None,
                         MigrateMode.SYNC) == 1           # -EBUSY: final, put back
    assert vm.vmstat.events["migrate_permanent"] == 1 and vm.vmstat.events["putback_movable"] == 1
    assert not pages and not page_isolated(page) and pool.pages() == [page]
    pool.unmap(handle)
    assert migrate_page(vm, page).migrated and pool.read(handle) == b"mapped"


def test_generated_driver_frees_its_last_object_while_the_page_is_isolated(driver):
    loaded, vm = driver
    pool = vm.create_from(loaded)
    handle = pool.store(b"last")
    (page,) = pool.pages()
    assert isolate_movable_page(vm, page, 0) == 0

    pool.free(handle)                       # REL-1/REL-2: released under the VM's feet

    assert page.mapping == PAGE_MAPPING_MOVABLE and page_isolated(page)
    pages = PageList()
    pages.add(page)
    assert migrate_pages(vm, pages, lambda p, _: vm.alloc_page(), None, None,
                         MigrateMode.SYNC) == 0
    assert vm.vmstat.events["migrate_released"] == 1
    assert not page_isolated(page) and vm.unclaimed_pages() == []


def test_generated_driver_refuses_sync_no_copy_as_zsmalloc_does(driver):
    loaded, vm = driver
    pool = vm.create_from(loaded)
    handle = pool.store(b"data")
    (page,) = pool.pages()
    result = migrate_page(vm, page, MigrateMode.SYNC_NO_COPY)
    assert result.isolated and not result.migrated
    assert vm.vmstat.events["migrate_permanent"] == 1
    assert pool.pages() == [page] and pool.read(handle) == b"data"


def test_a_freed_page_returns_as_a_later_migrations_target(tmp_path, capsys):
    """Why the template's migration test checks each page right after its own migration:
    with objects on several pages, the page one migration frees is the next one's target."""
    code, _, _ = run_cli(["new-driver", "bigpool", "--dir", str(tmp_path / "p")], capsys)
    assert code == 0
    driver_file = tmp_path / "p" / "mmplug_bigpool" / "__init__.py"
    driver_file.write_text(driver_file.read_text().replace("OBJECT_SIZE = 256",
                                                           "OBJECT_SIZE = 1500"))
    host = PluginHost()
    vm = VM(VMConfig(nr_pages=1024), plugins=host)
    pool = vm.create_from(host.load(str(driver_file)))
    for i in range(6):
        pool.store(bytes([i]) * 100)
    before = {p.pfn for p in pool.pages()}
    assert len(before) == 3
    for page in list(pool.pages()):
        assert migrate_page(vm, page).migrated
    assert before & {p.pfn for p in pool.pages()}, "no pfn recurred: the case is not covered"
