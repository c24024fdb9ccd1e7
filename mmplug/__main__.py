"""`python -m mmplug`: the same as the `mmplug` command."""

from .cli import main

main()
