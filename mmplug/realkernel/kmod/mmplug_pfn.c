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
 *   drain     writing anything runs drain_all_pages(NULL): free pages
 *             waiting on per-cpu lists reach the buddy lists, where
 *             /proc/kpageflags shows them as KPF_BUDDY (a page on a per-cpu
 *             list looks like any allocated kernel page there).
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

static struct dentry *root;
static void (*drain_all)(struct zone *zone);

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

static ssize_t drain_write(struct file *file, const char __user *buf,
			   size_t len, loff_t *ppos)
{
	if (!drain_all)
		return -EOPNOTSUPP;
	drain_all(NULL);
	return len;
}

static const struct file_operations drain_fops = {
	.owner = THIS_MODULE,
	.write = drain_write,
};

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

static int __init mmplug_pfn_init(void)
{
	drain_all = lookup("drain_all_pages");
	root = debugfs_create_dir("mmplug_pfn", NULL);
	debugfs_create_file("movable", 0400, root, NULL, &movable_fops);
	debugfs_create_file("blocks", 0400, root, NULL, &blocks_fops);
	if (drain_all)
		debugfs_create_file("drain", 0200, root, NULL, &drain_fops);
	return 0;
}

static void __exit mmplug_pfn_exit(void)
{
	debugfs_remove_recursive(root);
}

module_init(mmplug_pfn_init);
module_exit(mmplug_pfn_exit);
MODULE_DESCRIPTION("mmplug page-frame probe: movable owners, pageblock types, pcp drain");
MODULE_LICENSE("Dual MIT/GPL");
