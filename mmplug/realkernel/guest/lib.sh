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
        # pages the allocator takes off the buddy lists while compaction runs
        # (another task's, or an interrupt's): the model has no other task
        echo 1 > $T/events/kmem/mm_page_alloc_zone_locked/enable 2>/dev/null
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

# /proc/$1 (or the file $1) into $R, read by the shell itself: no process starts
# (and allocates) between what came before and the read.
read_proc() {
    R=
    f=/proc/$1
    [ "${1#/}" = "$1" ] || f=$1
    while IFS= read -r l; do
        R="$R$l
"
    done < $f
}

# drain N: drain the per-cpu free lists (mmplug_pfn/drain): every free page is
# then on the buddy lists, and the probe keeps in its record N (0-3) which pfns
# are free at this moment (mmplug_pfn/freeN), before anything that reads the
# page arrays allocates.  The free blocks per order of the same moment go to $BI:
# the probe's mmplug_pfn/buddyinfoN, taken under the zone lock with the record
# (reading /proc/buddyinfo now could itself allocate first: a page the shell
# faults in takes a whole per-cpu batch off the buddy lists), else /proc/buddyinfo.
drain() {
    [ -e $P/drain ] && echo $1 > $P/drain
    buddyinfo $1
}

# $BI: the free blocks per order record N saw (see drain).
buddyinfo() {
    if [ -e $P/buddyinfo$1 ]; then read_proc $P/buddyinfo$1; else read_proc buddyinfo; fi
    BI=$R
}

# The probe's record N (free pfns, pageblock types) into files $2/free$3, $2/blocks$3.
record() {
    [ -e $P/free$1 ] && cat $P/free$1 > $2/free$3
    [ -e $P/blocks$1 ] && cat $P/blocks$1 > $2/blocks$3
}

# A snapshot named $1 (record $2): counters and zone files into /out/$1, then the
# page arrays, then the free pfns the probe recorded when /proc/buddyinfo was read.
snap() {
    d=/out/$1
    mkdir -p $d
    settle
    cat /proc/vmstat > $d/vmstat
    [ -e /sys/block/zram0/mm_stat ] && cat /sys/block/zram0/mm_stat > $d/mm_stat
    [ -d /sys/kernel/debug/zswap ] && grep -r . /sys/kernel/debug/zswap > $d/zswap
    cat $P/blocks > $d/blocks
    drain $2
    echo -n "$BI" > $d/buddyinfo
    cat /proc/pagetypeinfo > $d/pagetypeinfo
    cat /proc/zoneinfo > $d/zoneinfo
    dump /proc/kpageflags $1/kpageflags
    dump /proc/kpagecount $1/kpagecount
    dump $P/movable $1/movable
    record $2 $d ""
    say snapshot $1
}

# echo 1 > /proc/sys/vm/compact_memory, traced.  It starts from drained per-cpu
# lists, as the model (which has none) does.  The free pfns, pageblock types and
# free blocks per order of the moment it began and of the moment it ended (before
# this shell writes a file, whose pages would come from those compaction just
# freed) are kept as before/{free,blocks,buddyinfo}.start and after/{...}.end, and
# /proc/vmstat right before and after it as before/vmstat.start and
# after/vmstat.end: the snapshots' counters also count what kswapd, kcompactd
# and direct compaction do around it.  Writing record 1 arms the probe's
# compaction hooks: compact_zone() drains again and records its zone as it begins
# and as it ends, so that what this shell allocates between its write and the
# compaction (reading vmstat grows its heap) is in neither record.
compact_memory() {
    read_proc vmstat
    vmstat_start=$R
    [ -e $P/drain ] && echo 1 > $P/drain
    [ -e $P/buddyinfo1 ] || { read_proc buddyinfo; start=$R; }
    [ -d $T ] && echo 1 > $T/tracing_on
    echo 1 > /proc/sys/vm/compact_memory
    [ -d $T ] && echo 0 > $T/tracing_on
    drain 2
    end=$BI
    [ -e $P/buddyinfo1 ] && { buddyinfo 1; start=$BI; }
    read_proc vmstat
    vmstat_end=$R
    mkdir -p /out/after
    echo -n "$start" > /out/before/buddyinfo.start
    echo -n "$end" > /out/after/buddyinfo.end
    echo -n "$vmstat_start" > /out/before/vmstat.start
    echo -n "$vmstat_end" > /out/after/vmstat.end
    record 1 /out/before .start
    record 2 /out/after .end
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
