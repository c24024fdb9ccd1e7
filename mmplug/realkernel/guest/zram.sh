# zram: fill with blocks of known compressed sizes, free some, compact_memory,
# then zram's own compact.  Set by the host in /scenario.env: DISKSIZE,
# COMPRESSOR, NBLOCKS, FREE_RUNS (a file of "first count" block runs), ZCOMPACT.
echo $COMPRESSOR > /sys/block/zram0/comp_algorithm || fail "compressor $COMPRESSOR"
echo $DISKSIZE > /sys/block/zram0/disksize || fail "disksize $DISKSIZE"
data=$(disk data) || fail "no data disk"
say fill $NBLOCKS blocks
dd if=$data of=/dev/zram0 bs=4096 count=$NBLOCKS iflag=direct oflag=direct 2>/dev/null \
    || fail "writing zram0"
cat /sys/block/zram0/mm_stat > /out/mm_stat.filled
say free
while read first count; do
    blkdiscard -o $((first * 4096)) -l $((count * 4096)) /dev/zram0 || fail "discard $first"
done < /free.runs
snap before 0
compact_memory
snap after 3
if [ "$ZCOMPACT" = 1 ]; then
    echo 1 > /sys/block/zram0/compact
    cat /sys/block/zram0/mm_stat > /out/mm_stat.compacted
    say zram compacted
fi
