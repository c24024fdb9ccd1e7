"""A run process of mmplug.compare.executors: `python -m mmplug.compare.child` makes the
one run it reads on stdin and writes its result to stdout."""

from mmplug.compare.executors import child_main

if __name__ == "__main__":
    child_main()
