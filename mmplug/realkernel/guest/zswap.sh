# zswap-z3fold: tmpfs filled beyond RAM from the data disk, so reclaim swaps
# pages out through zswap into a z3fold pool; some files removed; then
# compact_memory.  Set by the host in /scenario.env: COMPRESSOR, MAX_POOL,
# NFILES, FBLOCKS, TMPFS_SIZE, REMOVE (file numbers).
Z=/sys/module/zswap/parameters
swap=$(disk swap) || fail "no swap disk"
mkswap $swap > /dev/null || fail "mkswap"
swapon $swap || fail "swapon"
echo $COMPRESSOR > $Z/compressor || fail "zswap compressor $COMPRESSOR"
echo z3fold > $Z/zpool || fail "zswap zpool z3fold"
echo $MAX_POOL > $Z/max_pool_percent
echo 1 > $Z/enabled || fail "zswap enable"
mkdir -p /mnt
mount -t tmpfs -o size=$TMPFS_SIZE tmpfs /mnt || fail "tmpfs"
data=$(disk data) || fail "no data disk"
say fill $NFILES files
i=0
while [ $i -lt $NFILES ]; do
    dd if=$data of=/mnt/f$i bs=4096 skip=$((i * FBLOCKS)) count=$FBLOCKS iflag=direct \
        2> /dev/null || fail "writing file $i"
    i=$((i + 1))
done
grep -r . /sys/kernel/debug/zswap > /out/zswap.filled
say remove
for i in $REMOVE; do
    rm /mnt/f$i
done
grep -r . /sys/kernel/debug/zswap > /out/zswap.removed
snap before 0
compact_memory
snap after 3
