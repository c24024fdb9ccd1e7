"""The hooks of an mmplug driver plugin.

A driver plugin is a module (or object) whose functions carry
``@mmplug.hookimpl``.  It implements `mmplug_driver` to make itself known and
the three movable callbacks.  pluggy finds and validates the plugin; the VM
never broadcasts the callbacks: each page leads through its mapping word to its
own driver's functions (mm/migrate.c calls ``mapping->a_ops->...`` the same way).

The event hooks are broadcast to every plugin that implements them, like
tracepoints; the VM calls them only if some plugin does.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mmplug")
hookimpl = pluggy.HookimplMarker("mmplug")


@hookspec
def mmplug_driver():
    """Make this plugin's driver known: return an ``mmplug.DriverInfo``.

    Called once when the plugin is loaded.  ``DriverInfo.factory(vm, mapping,
    **options)`` creates one instance (a pool, a device) that owns `mapping`.
    """


@hookspec
def isolate_page(page, mode):
    """a_ops->isolate_page: take `page` out of the driver's own structures.

    Called with the page locked (ISO-2); must not unlock it nor set
    PG_isolated (ISO-3).  Return True only if the page was removed from the
    driver's structures; False refuses isolation and must change nothing
    (ISO-6).  `mode` is an isolate_mode_t (``ISOLATE_ASYNC_MIGRATE`` ...).
    """


@hookspec
def migratepage(mapping, newpage, page, mode):
    """a_ops->migratepage: move the contents and the driver's use of `page` to `newpage`.

    Both pages are locked by the VM.  On success (return 0): copy the
    contents, ``set_page_movable(newpage, mapping)``, take the driver's own
    reference on `newpage`, point the driver's structures at it,
    ``clear_page_movable(page)``, drop the driver's reference on `page`, and
    never touch ``page.lru`` (MIG-7).  Return ``-EAGAIN`` to be retried, or
    another negative errno to fail for good (MIG-8).  `mode` is a MigrateMode.
    """


@hookspec
def putback_page(page):
    """a_ops->putback_page: isolation was undone; put `page` back where it was (PUT-2).

    Called with the page locked; returns nothing.
    """


@hookspec
def mmplug_page_isolated(page, mapping):
    """Event: a non-LRU movable page was isolated (trace point)."""


@hookspec
def mmplug_page_migrated(page, newpage, mapping, mode):
    """Event: `page` was migrated to `newpage` by its driver."""


@hookspec
def mmplug_page_putback(page, mapping):
    """Event: an isolated page was given back to its driver."""


@hookspec
def mmplug_compaction_finished(zone, result, order, mode):
    """Event: one compact_zone() run ended with `result` (a CompactResult)."""


#: The callbacks a driver must implement, in the argument order the VM calls them.
DRIVER_CALLBACKS = {
    "isolate_page": ("page", "mode"),
    "migratepage": ("mapping", "newpage", "page", "mode"),
    "putback_page": ("page",),
}
EVENT_HOOKS = ("mmplug_page_isolated", "mmplug_page_migrated", "mmplug_page_putback",
               "mmplug_compaction_finished")
