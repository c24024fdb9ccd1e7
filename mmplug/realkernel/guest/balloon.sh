# balloon: the host inflates the balloon through QMP when the guest says
# "inflate", and deflates part of it when the guest says "deflate"; then
# compact_memory.  Set by the host in /scenario.env: INFLATE_PAGES, DEFLATE_PAGES.
say inflate
wait_vmstat balloon_inflate $INFLATE_PAGES 600
say deflate
wait_vmstat balloon_deflate $DEFLATE_PAGES 600
snap before 0
compact_memory
snap after 3
