"""check-driver cannot be hung, silenced or fooled by the driver it checks."""

from __future__ import annotations

import json

import pytest
from relhelp import (
    COPY,
    SIMPLEPOOL,
    broken,
    ctrl_c_while_migrating,
    errors,
    mmplug,
    run_cli,
    slow_driver,
    variant,
)

#: a hang these tests look for must not hang the test run instead
pytestmark = pytest.mark.timeout(120)


def fail_lines(out: str) -> list[str]:
    return [ln.strip() for ln in out.splitlines() if ln.startswith("    ") and ": " in ln]


@pytest.mark.parametrize("driver, check, rule, what", [
    ("hangs", "MIG-7/success", "MIG-8", "migratepage did not return within 2 s (hung)"),
    ("sleeps", "MIG-7/success", "MIG-8", "migratepage did not return within 2 s (hung)"),
    ("free_hangs", "REL-1", "API-1", "free() did not return within 2 s (hung)"),
])
@pytest.mark.slow
def test_a_hung_driver_call_is_a_fail_naming_driver_and_callback(capsys, driver, check, rule,
                                                                 what):
    code, out, _ = run_cli(capsys, "check-driver", broken(driver), "--no-races", "-k", check,
                           "--timeout", "2")
    assert code == 1
    assert f"{rule}: {what}" in out and f"driver broken_{driver}" in out
    assert out.splitlines()[-1].startswith(f"Total for broken_{driver}: ")


@pytest.mark.slow
def test_a_hang_on_a_simulated_cpu_of_the_race_checks_is_a_fail(capsys):
    code, out, _ = run_cli(capsys, "check-driver", broken("sleeps"), "-k", "RACE", "--quick",
                           "--timeout", "2")
    assert code == 1
    assert "test RACE " in out and ": FAIL" in out
    assert "MIG-8: race " in out and "migratepage did not return within 2 s (hung)" in out
    assert "reproduce: mmplug check-driver " in out and "--replay " in out


@pytest.mark.parametrize("driver, rule, what", [
    ("exits_in_callback", "MIG-8", "migratepage called sys.exit(0)"),
    ("interrupts_itself", "ISO-2", "isolate_page raised KeyboardInterrupt itself"),
    ("custom_base_exception", "PUT-2", "putback_page raised PoolGone: pool state lost"),
])
def test_a_base_exception_from_the_driver_fails_and_never_exits_0(capsys, driver, rule, what):
    code, out, _ = run_cli(capsys, "check-driver", broken(driver), "--no-races", "--quick")
    assert code == 1
    assert any(ln.startswith(f"{rule}: {what}") for ln in fail_lines(out)), out
    assert out.splitlines()[-1].startswith(f"Total for broken_{driver}: ")


def test_os_exit_in_a_callback_is_a_fail_not_a_silent_exit():
    r = mmplug("check-driver", broken("exits_hard"), "--no-races", "-k", "MIG-7/success")
    assert r.returncode == 1, r.stderr
    assert "MIG-8: migratepage called os._exit(0)" in r.stdout
    assert "Total for broken_exits_hard: 1, Succeeded: 0, Failed: 1" in r.stdout


def test_a_driver_that_eats_memory_fails_within_the_memory_limit(tmp_path):
    hog = variant(tmp_path, "hog", COPY,
                  "        junk = [bytearray(1 << 20) for _ in range(1 << 20)]\n" + COPY)
    r = mmplug("check-driver", hog, "--no-races", "-k", "MIG-7/success",
               "--memory-limit", "512MiB", "--timeout", "100")   # memory first, however slow
    assert r.returncode == 1, r.stderr
    assert "MIG-8: migratepage ran out of memory (MemoryError)" in r.stdout


def test_what_a_driver_prints_never_reaches_the_json_on_stdout(capsys, tmp_path):
    chatty = variant(tmp_path, "chatty", COPY, "        print('copying', page)\n" + COPY)
    code, out, err = run_cli(capsys, "check-driver", chatty, "--no-races", "--quick",
                             "-k", "MIG", "--json", "-")
    assert code == 0
    assert json.loads(out)["driver"] == "chatty"
    assert "copying" in err


def test_the_users_ctrl_c_stops_the_race_checks_at_once(tmp_path):
    """SIGINT while a simulated CPU sleeps inside the driver: the user's, not the driver's."""
    code, out, err = ctrl_c_while_migrating("check-driver", slow_driver(tmp_path), "-k", "RACE")
    assert code == 130
    assert errors(err)[-1] == "mmplug: interrupted"
    assert "Total for" not in out and "FAIL" not in out


@pytest.mark.parametrize("args, says", [
    (["-k", ""], "-k/--select '': an empty pattern"),
    (["-k", "NOPE-9"], "matches no check"),
    (["-k", "X" * 5000], "matches no check"),
    (["-o", ""], "--output '': give a file name"),
    (["-o", "/"], "is a folder"),
    (["-o", "/no/such/folder/r.json"], "does not exist"),
    (["--replay", "garbage"], "--replay 'garbage': not a schedule"),
    (["--replay", "no_such_scenario@0x3-1"], "no race scenario 'no_such_scenario'"),
    (["--scenario", "two_compactors"], "--scenario needs --replay"),
    (["--max-examples", "99999999999"], "--max-examples 99999999999: at most"),
    (["--timeout", "-1"], "--timeout -1.0: expected seconds"),
    (["--timeout", "nan"], "--timeout nan"),
    (["--memory-limit", "12"], "at least 64MiB"),
    (["--memory-limit", "much"], "is not a size"),
])
def test_bad_options_exit_2_with_one_line_before_any_check(capsys, args, says):
    code, out, err = run_cli(capsys, "check-driver", str(SIMPLEPOOL), *args)
    assert code == 2 and out == ""   # no check ran, not even the header
    assert err.count("\n") == 1 and err.startswith("mmplug: error: ") and says in err
    assert len(err) < 600


@pytest.mark.parametrize("driver", ["", "/", "/dev/null", "no_such_driver_xyz"])
def test_bad_driver_names_exit_2(capsys, driver):
    code, _, err = run_cli(capsys, "check-driver", driver)
    assert code == 2 and err.count("\n") == 1 and err.startswith("mmplug: error: ")
