"""`mmplug kernel`: Debian's kernel in qemu and the model compact the same memory.

parts.py (qemu, the kernel packages, set-up), initramfs.py (the guest's
cpio), probe.py + kmod/ (the page-frame probe module, built at run time),
guest.py (booting, console, QMP, the output disk), guest/ (the shell the
guest runs), blocks.py (data of known compressed sizes), scenario.py (the
TOML scenarios), procfs.py (parsers of what the guest printed),
kernelside.py and modelside.py (each side's results), sidebyside.py (the
table and the named differences), run.py (the whole run), command.py (CLI).
"""
