"""The hooks of an mmplug plugin.

A driver plugin is a module (or object) whose functions carry
``@mmplug.hookimpl``.  It implements `mmplug_driver` to make itself known and
the three movable callbacks; it may also bring its own race scenarios and
conformance checks.  These driver hooks are never broadcast: each is called on
the driver's own plugin only, so a driver loaded under another name keeps
them, and each page leads through its mapping word to its own driver's
callbacks (mm/migrate.c calls ``mapping->a_ops->...`` the same way).  The
callbacks keep their kernel names; every other hook starts with ``mmplug_``.

The event hooks are broadcast to every plugin that implements them, like
tracepoints.  A plugin that implements only event hooks is a listener, not a
driver.  Listeners are looked up when an event fires, so one registered after a
VM was made hears its events too.  Each ``mmplug_after_<callback>`` event
fires once the callback returned, whatever it returned (a refusal and a failed
migration too), with the callback's arguments, the address space and the
result; a call the VM rejects (it raised, hung or broke a rule) ends in a
DriverError instead.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("mmplug")
hookimpl = pluggy.HookimplMarker("mmplug")


# --- what a driver is ---------------------------------------------------------------------

@hookspec
def mmplug_driver() -> Any:
    """Make this plugin's driver known: return an ``mmplug.DriverInfo``.

    Called once when the plugin is loaded.  ``DriverInfo.factory(vm, mapping,
    **options)`` creates one instance (a pool, a device) that owns `mapping`.
    """


@hookspec
def isolate_page(page: Any, mode: int) -> Any:
    """a_ops->isolate_page: take `page` out of the driver's own structures.

    Called with the page locked (ISO-2); must not unlock it nor set
    PG_isolated (ISO-3).  Return True only if the page was removed from the
    driver's structures; False refuses isolation and must change nothing
    (ISO-6).  `mode` is an isolate_mode_t (``ISOLATE_ASYNC_MIGRATE`` ...).
    """


@hookspec
def migratepage(mapping: Any, newpage: Any, page: Any, mode: int) -> Any:
    """a_ops->migratepage: move the contents and the driver's use of `page` to `newpage`.

    Both pages are locked by the VM.  On success (return 0): copy the
    contents, ``set_page_movable(newpage, mapping)``, take the driver's own
    reference on `newpage`, point the driver's structures at it,
    ``clear_page_movable(page)``, drop the driver's reference on `page`, and
    never touch ``page.lru`` (MIG-7).  Return ``-EAGAIN`` to be retried, or
    another negative errno to fail for good (MIG-8).  `mode` is a MigrateMode.
    """


@hookspec
def putback_page(page: Any) -> Any:
    """a_ops->putback_page: isolation was undone; put `page` back where it was (PUT-2).

    Called with the page locked; returns nothing.
    """


@hookspec
def mmplug_race_scenarios(driver: Any) -> Any:
    """Race scenarios of this driver's own (an iterable of ``mmplug.Scenario``).

    The race explorer runs them after the generic ones, on several simulated
    CPUs (``mmplug check-driver --races``).  `driver` is the DriverInfo as
    loaded: its name is the one the user gave (``NAME@SPEC``), so a scenario
    must not depend on it.
    """


@hookspec
def mmplug_conformance_checks(driver: Any) -> Any:
    """Checks of this driver's own rules (DRV-*): an iterable of checks made with
    ``@mmplug.conformance_check``; check-driver runs them after its own.
    `driver` is the DriverInfo as loaded."""


# --- events ---------------------------------------------------------------------------------

@hookspec
def mmplug_after_isolate_page(mapping: Any, page: Any, mode: int, result: Any) -> None:
    """Event: `mapping`'s isolate_page(page, mode) returned `result` (True or False)."""


@hookspec
def mmplug_after_migratepage(mapping: Any, newpage: Any, page: Any, mode: int,
                             result: Any) -> None:
    """Event: `mapping`'s migratepage(mapping, newpage, page, mode) returned `result`
    (0, -EAGAIN or another negative errno)."""


@hookspec
def mmplug_after_putback_page(mapping: Any, page: Any) -> None:
    """Event: `mapping`'s putback_page(page) returned: the page is the driver's again."""


@hookspec
def mmplug_after_compact_zone(zone: Any, order: int, mode: Any, result: Any) -> None:
    """Event: one compact_zone() run for `order` in `mode` ended with `result`
    (a CompactResult)."""


#: The callbacks a driver must implement, in the argument order the VM calls them.
DRIVER_CALLBACKS = {
    "isolate_page": ("page", "mode"),
    "migratepage": ("mapping", "newpage", "page", "mode"),
    "putback_page": ("page",),
}
#: What a driver may bring besides its DriverInfo and its callbacks.
OPTIONAL_DRIVER_HOOKS = ("mmplug_race_scenarios", "mmplug_conformance_checks")
#: Every hook called on the driver's own plugin only, never broadcast.
DRIVER_HOOKS = ("mmplug_driver", *DRIVER_CALLBACKS, *OPTIONAL_DRIVER_HOOKS)
#: The hooks broadcast to every plugin that implements them.
EVENT_HOOKS = ("mmplug_after_isolate_page", "mmplug_after_migratepage",
               "mmplug_after_putback_page", "mmplug_after_compact_zone")
