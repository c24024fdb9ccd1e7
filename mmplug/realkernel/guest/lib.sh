# Shell functions of the guest (busybox ash).
P=/sys/kernel/debug/mmplug_pfn
T=/sys/kernel/tracing

say() { echo "MMPLUG: $*" > /dev/console; }

fail() {
    say "error $*"
    echo "$*" > /out/error
    finish
}

# The block device whose virtio serial is $1 (data, out, swap).
disk() {
    for d in /sys/block/vd*; do
        if [ "$(cat $d/serial 2>/dev/null)" = "$1" ]; then
            echo /dev/${d##*/}
            return 0
        fi
    done
    return 1
}

# Nothing compacts or collapses behind the scenario's back: no proactive
# compaction (kcompactd's fragmentation score), no THP, no khugepaged.  The
# trace buffer is sized now, so that enabling events later allocates nothing.
quieten() {
    echo 0 > /proc/sys/vm/compaction_proactiveness
    echo never > /sys/kernel/mm/transparent_hugepage/enabled
    echo never > /sys/kernel/mm/transparent_hugepage/defrag
    echo 0 > /proc/sys/kernel/printk_ratelimit 2>/dev/null
    if [ -d $T ]; then
        echo 4096 > $T/buffer_size_kb
        for e in mm_compaction_begin mm_compaction_end mm_compaction_migratepages \
                 mm_compaction_isolate_migratepages mm_compaction_isolate_freepages; do
            echo 1 > $T/events/compaction/$e/enable 2>/dev/null
        done
        echo 1 > $T/events/migrate/mm_migrate_pages/enable 2>/dev/null
        echo 0 > $T/tracing_on
        echo > $T/trace
    fi
}

# The value of one /proc/vmstat counter.
vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }

# Wait until counter $1 reaches $2 (at most $3 seconds).
wait_vmstat() {
    n=0
    while [ "$(vmstat $1)" -lt "$2" ]; do
        n=$((n + 1))
        [ $n -gt $(($3 * 10)) ] && fail "$1 stayed at $(vmstat $1), below $2"
        usleep 100000
    done
}

# Let reclaim and writeback finish: wait until the free page count holds still.
settle() {
    sync
    n=0
    last=-1
    while [ $n -lt 50 ]; do
        now=$(awk '$1 == "nr_free_pages" { print $2 }' /proc/vmstat)
        [ "$now" = "$last" ] && break
        last=$now
        n=$((n + 1))
        usleep 200000
    done
}

# dump FILE NAME: FILE's bytes into the next 16 MiB slot of the out disk, written
# with O_DIRECT so that no page cache grows while the page arrays are read;
# one dd process, whose few pages are all a snapshot adds to the machine.
SLOT=0
dump() {
    dd if=$1 of=$OUTDEV bs=4096 seek=$((16384 + SLOT * 4096)) oflag=direct conv=sync,notrunc \
        2> /tmp/dd.log || fail "dump $1"
    echo "$2 $SLOT $(sed -n 's/ records out$//p' /tmp/dd.log)" >> /out/slots
    SLOT=$((SLOT + 1))
}

# A snapshot named $1: counters and zone files into /out/$1, then the page arrays.
# Per-cpu free lists are drained first (mmplug_pfn/drain), so that every free
# page is on the buddy lists and shows KPF_BUDDY in /proc/kpageflags.
snap() {
    d=/out/$1
    mkdir -p $d
    settle
    cat /proc/vmstat > $d/vmstat
    [ -e /sys/block/zram0/mm_stat ] && cat /sys/block/zram0/mm_stat > $d/mm_stat
    [ -d /sys/kernel/debug/zswap ] && grep -r . /sys/kernel/debug/zswap > $d/zswap
    cat $P/blocks > $d/blocks
    echo 1 > $P/drain
    cat /proc/buddyinfo > $d/buddyinfo
    cat /proc/pagetypeinfo > $d/pagetypeinfo
    cat /proc/zoneinfo > $d/zoneinfo
    echo 1 > $P/drain
    dump /proc/kpageflags $1/kpageflags
    dump /proc/kpagecount $1/kpagecount
    dump $P/movable $1/movable
    say snapshot $1
}

# echo 1 > /proc/sys/vm/compact_memory, traced.
compact_memory() {
    [ -d $T ] && echo 1 > $T/tracing_on
    echo 1 > /proc/sys/vm/compact_memory
    [ -d $T ] && echo 0 > $T/tracing_on
    [ -d $T ] && cat $T/trace > /out/trace
    say compacted
}

finish() {
    out=${OUTDEV:-$(disk out)}
    cat /proc/cmdline > /out/cmdline
    dmesg > /out/dmesg
    (cd /out && tar -cf $out .)
    sync
    say done
    poweroff -f
}
