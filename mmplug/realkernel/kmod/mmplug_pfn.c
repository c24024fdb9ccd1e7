// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * mmplug_pfn: the page-frame probe of `mmplug kernel run`.
 *
 * /proc/kpageflags cannot tell a zsmalloc subpage from any other page the
 * kernel allocated, nor show a pageblock's migratetype.  This module, built
 * at run time against the guest kernel's own headers, adds two read-only
 * files and one command under /sys/kernel/debug/mmplug_pfn/:
 *
 *   movable   one line per non-LRU movable page (mapping tagged
 *             PAGE_MAPPING_MOVABLE): pfn, struct page address, page->private,
 *             page->index, refcount, page->flags, then the symbol of the
 *             movable operations the mapping points at (zsmalloc_mops,
 *             balloon_mops, z3fold_mops, ...), which names the driver.
 *   blocks    one line per pageblock of every populated zone: zone name,
 *             first pfn, migratetype.
 *   drain     writing a record number N (0-3; anything else: 0) runs
 *             drain_all_pages(NULL): free pages waiting on per-cpu lists
 *             reach the buddy lists, where /proc/kpageflags shows them as
 *             KPF_BUDDY (a page on a per-cpu list looks like any allocated
 *             kernel page there); then, under each zone's lock, it records
 *             in record N which pfns are free and every pageblock's
 *             migratetype (an allocation may change it: __rmqueue_fallback()).
 *             Writing 1 also arms the compaction hooks until 2 is written:
 *             each compact_zone() the writing task runs (its compact_memory)
 *             drains again and records its zone into
 *             record 1 as it begins (the mm_compaction_begin tracepoint) and
 *             into record 2 as it ends (mm_compaction_end), and writing 2
 *             then records only the zones no compaction ended in.  Whatever
 *             allocates between the write and compaction (the writing shell
 *             faulting a page in takes a whole per-cpu batch from the buddy
 *             lists, rmqueue_bulk()) is undone or seen by the zone's record.
 *   freeN     the pfns free when record N was taken, as "first end" ranges,
 *             after a "#" line naming the record, its drain and the zones a
 *             compaction hook recorded ("hooked DMA DMA32").
 *   blocksN   the pageblocks' migratetypes when record N was taken, as in
 *             blocks.
 *   buddyinfoN  each zone's free blocks per order (free_area[].nr_free) when
 *             record N was taken, under the same lock, as /proc/buddyinfo
 *             prints them: the shell need not read /proc/buddyinfo, and
 *             allocate, right after a drain.
 *             A shell's builtin echo writes drain without starting a
 *             process, so a record is the machine's free memory at that
 *             moment, whatever a later reader (dd, cat) allocates while
 *             reading /proc/kpageflags or these files.
 *
 * The guest is quiet while these are read; nothing here takes a lock a
 * page's owner takes, so a racing change would only show a stale value.
 */
#include <linux/module.h>
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/memory_hotplug.h>
#include <linux/kprobes.h>
#include <linux/pageblock-flags.h>
#include <linux/bitmap.h>
#include <linux/tracepoint.h>

struct compact_control;

static struct dentry *root;
static void (*drain_all)(struct zone *zone);

/* The records of free pfns: one bit per pfn below freemap_end in each. */
#define RECORDS 4
static unsigned long *freemaps[RECORDS];
static unsigned long freemap_end;
static unsigned long drains[RECORDS];
static unsigned long drain_count;
/* per record, the zones (bit: zone index) a compaction hook recorded into it */
static unsigned long hooked[RECORDS];
static bool armed;
/* the task that armed the hooks: its compact_memory, not kcompactd's or another
 * task's direct compaction, takes the records */
static pid_t armer;
static unsigned char *blockmaps[RECORDS];
/* per record, zone and order: free_area[order].nr_free */
static unsigned long nr_free[RECORDS][MAX_NR_ZONES][MAX_ORDER];
static unsigned long *freemap;		/* the record being taken or listed */
static unsigned long record_n;		/* its number */
static unsigned char *blockmap;

static void for_each_zone_pfn(struct seq_file *m,
			      void (*fn)(struct seq_file *, struct zone *))
{
	int nid, z;

	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);

		for (z = 0; z < MAX_NR_ZONES; z++) {
			struct zone *zone = &pgdat->node_zones[z];

			if (populated_zone(zone))
				fn(m, zone);
		}
	}
}

static void list_movable(struct seq_file *m, struct zone *zone)
{
	unsigned long pfn, end = zone_end_pfn(zone);

	for (pfn = zone->zone_start_pfn; pfn < end; pfn++) {
		struct page *page = pfn_to_online_page(pfn);
		unsigned long word;

		if (!page)
			continue;
		word = (unsigned long)READ_ONCE(page->mapping);
		if ((word & PAGE_MAPPING_FLAGS) != PAGE_MAPPING_MOVABLE)
			continue;
		seq_printf(m, "%lu %px %lx %lx %d %lx %ps\n", pfn, page,
			   page_private(page), page->index, page_ref_count(page),
			   page->flags, (void *)(word & ~PAGE_MAPPING_FLAGS));
		if (!(pfn & 1023))
			cond_resched();
	}
}

/*
 * The migratetype bits of a pageblock live in its memory section's usemap,
 * NR_PAGEBLOCK_BITS per block; the first bits are the migratetype.
 */
static unsigned long block_migratetype(unsigned long pfn)
{
	unsigned long *map = section_to_usemap(__pfn_to_section(pfn));
	unsigned long bit = ((pfn & (PAGES_PER_SECTION - 1)) >> pageblock_order)
			    * NR_PAGEBLOCK_BITS;
	unsigned long word = READ_ONCE(map[bit / BITS_PER_LONG]);

	return (word >> (bit % BITS_PER_LONG)) & MIGRATETYPE_MASK;
}

static void list_blocks(struct seq_file *m, struct zone *zone)
{
	unsigned long pfn = zone->zone_start_pfn & ~(pageblock_nr_pages - 1);
	unsigned long end = zone_end_pfn(zone);

	for (; pfn < end; pfn += pageblock_nr_pages) {
		unsigned long first = max(pfn, zone->zone_start_pfn);

		if (!pfn_to_online_page(first))
			continue;
		seq_printf(m, "%s %lu %lu\n", zone->name, pfn,
			   block_migratetype(first));
	}
}

#define PROBE_FILE(name)						\
static int name##_show(struct seq_file *m, void *v)			\
{									\
	for_each_zone_pfn(m, list_##name);				\
	return 0;							\
}									\
DEFINE_SHOW_ATTRIBUTE(name)

PROBE_FILE(movable);
PROBE_FILE(blocks);

/* Under the zone lock no block can merge, split or leave the free lists. */
static void record_free(struct zone *zone)
{
	unsigned long pfn = zone->zone_start_pfn, end = zone_end_pfn(zone);
	unsigned long flags, n;

	spin_lock_irqsave(&zone->lock, flags);
	for (n = 0; n < MAX_ORDER; n++)
		nr_free[record_n][zone_idx(zone)][n] = zone->free_area[n].nr_free;
	while (pfn < end && pfn < freemap_end) {
		struct page *page = pfn_to_online_page(pfn);

		n = 1;
		if (page && (pfn == zone->zone_start_pfn || !(pfn & (pageblock_nr_pages - 1))))
			blockmap[pfn >> pageblock_order] = block_migratetype(pfn);
		if (page && PageBuddy(page)) {
			n = 1UL << page_private(page);
			bitmap_set(freemap, pfn, min(n, freemap_end - pfn));
			/* a free block of pageblock order or more spans whole blocks */
			if (n > pageblock_nr_pages) {
				unsigned long b;

				for (b = pfn + pageblock_nr_pages; b < pfn + n && b < end;
				     b += pageblock_nr_pages)
					blockmap[b >> pageblock_order] = block_migratetype(b);
			}
		}
		pfn += n;
	}
	spin_unlock_irqrestore(&zone->lock, flags);
}

/* zones (bit: zone index) the record being taken leaves as a hook recorded them */
static unsigned long skip;

static void record_zone(struct seq_file *m, struct zone *zone)
{
	unsigned long start = zone->zone_start_pfn;

	if (skip & BIT(zone_idx(zone)))
		return;

	if (start < freemap_end)
		bitmap_clear(freemap, start, min(zone_end_pfn(zone), freemap_end) - start);
	record_free(zone);
}

static void list_free(struct seq_file *m, struct zone *zone)
{
	unsigned long pfn = zone->zone_start_pfn;
	unsigned long end = min(zone_end_pfn(zone), freemap_end);

	while (pfn < end) {
		unsigned long first = find_next_bit(freemap, end, pfn);
		unsigned long last;

		if (first >= end)
			break;
		last = find_next_zero_bit(freemap, end, first);
		seq_printf(m, "%lu %lu\n", first, last);
		pfn = last;
	}
}

static DEFINE_MUTEX(records_lock);

static int free_show(struct seq_file *m, void *v)
{
	unsigned long n = (unsigned long)m->private;

	mutex_lock(&records_lock);
	freemap = freemaps[n];
	seq_printf(m, "# record %lu, drain %lu", n, drains[n]);
	if (hooked[n]) {
		int z;

		seq_puts(m, ", hooked");
		for (z = 0; z < MAX_NR_ZONES; z++)
			if (hooked[n] & BIT(z))
				seq_printf(m, " %s", NODE_DATA(first_online_node)->node_zones[z].name);
	}
	seq_putc(m, '\n');
	for_each_zone_pfn(m, list_free);
	mutex_unlock(&records_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(free);

static void list_recorded_blocks(struct seq_file *m, struct zone *zone)
{
	unsigned long pfn = zone->zone_start_pfn & ~(pageblock_nr_pages - 1);
	unsigned long end = min(zone_end_pfn(zone), freemap_end);

	for (; pfn < end; pfn += pageblock_nr_pages) {
		if (!pfn_to_online_page(max(pfn, zone->zone_start_pfn)))
			continue;
		seq_printf(m, "%s %lu %u\n", zone->name, pfn, blockmap[pfn >> pageblock_order]);
	}
}

static int recorded_blocks_show(struct seq_file *m, void *v)
{
	unsigned long n = (unsigned long)m->private;

	mutex_lock(&records_lock);
	blockmap = blockmaps[n];
	for_each_zone_pfn(m, list_recorded_blocks);
	mutex_unlock(&records_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(recorded_blocks);

static void list_buddyinfo(struct seq_file *m, struct zone *zone)
{
	unsigned long n = (unsigned long)m->private;
	int order;

	seq_printf(m, "Node %d, zone %8s ", zone_to_nid(zone), zone->name);
	for (order = 0; order < MAX_ORDER; order++)
		seq_printf(m, "%6lu ", nr_free[n][zone_idx(zone)][order]);
	seq_putc(m, '\n');
}

static int buddyinfo_show(struct seq_file *m, void *v)
{
	mutex_lock(&records_lock);
	for_each_zone_pfn(m, list_buddyinfo);
	mutex_unlock(&records_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(buddyinfo);

static ssize_t drain_write(struct file *file, const char __user *buf,
			   size_t len, loff_t *ppos)
{
	char c = '0';
	unsigned long n;

	if (!drain_all)
		return -EOPNOTSUPP;
	if (len && get_user(c, buf))
		return -EFAULT;
	n = (c >= '0' && c < '0' + RECORDS) ? c - '0' : 0;
	drain_all(NULL);
	mutex_lock(&records_lock);
	if (freemaps[n] && blockmaps[n]) {
		freemap = freemaps[n];
		blockmap = blockmaps[n];
		record_n = n;
		if (n == 1) {
			hooked[1] = hooked[2] = 0;
			WRITE_ONCE(armer, task_pid_nr(current));
			WRITE_ONCE(armed, true);
		}
		/* a zone whose compaction ended is recorded as it was then */
		skip = n == 2 && armed ? hooked[2] : 0;
		if (n == 2)
			WRITE_ONCE(armed, false);
		else
			hooked[n] = 0;
		for_each_zone_pfn(NULL, record_zone);
		drains[n] = ++drain_count;
	}
	skip = 0;
	mutex_unlock(&records_lock);
	return len;
}

static const struct file_operations drain_fops = {
	.owner = THIS_MODULE,
	.write = drain_write,
};

/*
 * compact_zone() as it begins and ends: the zone starting at zone_start is
 * drained and recorded into record n.  A tracepoint's probe runs with
 * preemption off, so nothing here sleeps: drain_all_pages(NULL) only tries
 * its mutex, and a record is skipped (the shell's record stands) if a reader
 * holds the records.
 */
static void hook_record(unsigned long n, unsigned long zone_start)
{
	int nid, z;

	if (!READ_ONCE(armed) || task_pid_nr(current) != READ_ONCE(armer) ||
	    !mutex_trylock(&records_lock))
		return;
	for_each_online_node(nid) {
		for (z = 0; z < MAX_NR_ZONES; z++) {
			struct zone *zone = &NODE_DATA(nid)->node_zones[z];

			if (!populated_zone(zone) || zone->zone_start_pfn != zone_start)
				continue;
			drain_all(NULL);
			freemap = freemaps[n];
			blockmap = blockmaps[n];
			record_n = n;
			record_zone(NULL, zone);
			hooked[n] |= BIT(z);
			drains[n] = ++drain_count;
		}
	}
	mutex_unlock(&records_lock);
}

static void on_begin(void *data, struct compact_control *cc, unsigned long zone_start,
		     unsigned long zone_end, bool sync)
{
	hook_record(1, zone_start);
}

static void on_end(void *data, struct compact_control *cc, unsigned long zone_start,
		   unsigned long zone_end, bool sync, int status)
{
	hook_record(2, zone_start);
}

static struct tracepoint *tp_begin, *tp_end;
static bool hooks_on;

static void find_tracepoint(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "mm_compaction_begin"))
		tp_begin = tp;
	else if (!strcmp(tp->name, "mm_compaction_end"))
		tp_end = tp;
}

/*
 * drain_all_pages() is not exported; a kprobe registered on it yields its
 * address, which is all this module keeps of the probe.
 */
static void *lookup(const char *name)
{
	struct kprobe kp = { .symbol_name = name };
	void *addr;

	if (register_kprobe(&kp))
		return NULL;
	addr = kp.addr;
	unregister_kprobe(&kp);
	return addr;
}

static void zone_end(struct seq_file *m, struct zone *zone)
{
	freemap_end = max(freemap_end, zone_end_pfn(zone));
}

static int __init mmplug_pfn_init(void)
{
	unsigned long n;

	drain_all = lookup("drain_all_pages");
	for_each_zone_pfn(NULL, zone_end);
	root = debugfs_create_dir("mmplug_pfn", NULL);
	debugfs_create_file("movable", 0400, root, NULL, &movable_fops);
	debugfs_create_file("blocks", 0400, root, NULL, &blocks_fops);
	if (!drain_all)
		return 0;
	debugfs_create_file("drain", 0200, root, NULL, &drain_fops);
	for (n = 0; n < RECORDS; n++) {
		char name[16];

		freemaps[n] = bitmap_zalloc(freemap_end, GFP_KERNEL);
		blockmaps[n] = kzalloc((freemap_end >> pageblock_order) + 1, GFP_KERNEL);
		if (!freemaps[n] || !blockmaps[n])
			continue;
		snprintf(name, sizeof(name), "free%lu", n);
		debugfs_create_file(name, 0400, root, (void *)n, &free_fops);
		snprintf(name, sizeof(name), "blocks%lu", n);
		debugfs_create_file(name, 0400, root, (void *)n, &recorded_blocks_fops);
		snprintf(name, sizeof(name), "buddyinfo%lu", n);
		debugfs_create_file(name, 0400, root, (void *)n, &buddyinfo_fops);
	}
	/* without the hooks, records 1 and 2 are the shell's: the moments of its writes */
	for_each_kernel_tracepoint(find_tracepoint, NULL);
	if (!tp_begin || !tp_end || !freemaps[1] || !freemaps[2] || !blockmaps[1] ||
	    !blockmaps[2] || tracepoint_probe_register(tp_begin, (void *)on_begin, NULL))
		return 0;
	if (tracepoint_probe_register(tp_end, (void *)on_end, NULL))
		tracepoint_probe_unregister(tp_begin, (void *)on_begin, NULL);
	else
		hooks_on = true;
	return 0;
}

static void __exit mmplug_pfn_exit(void)
{
	unsigned long n;

	if (hooks_on) {
		tracepoint_probe_unregister(tp_begin, (void *)on_begin, NULL);
		tracepoint_probe_unregister(tp_end, (void *)on_end, NULL);
		tracepoint_synchronize_unregister();
	}
	debugfs_remove_recursive(root);
	for (n = 0; n < RECORDS; n++) {
		bitmap_free(freemaps[n]);
		kfree(blockmaps[n]);
	}
}

module_init(mmplug_pfn_init);
module_exit(mmplug_pfn_exit);
MODULE_DESCRIPTION("mmplug page-frame probe: movable owners, pageblock types, pcp drain, "
		   "free pfns");
MODULE_LICENSE("Dual MIT/GPL");
