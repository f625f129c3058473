/* Guest memory: the region table a vhost-user frontend hands us, and the one place that turns
 * guest-physical (GPA) and frontend-virtual (UVA) addresses into host pointers. Every lookup
 * checks the whole [addr, addr + len) range, because both kinds of address come from an
 * untrusted guest or VMM. */
#ifndef MVN_MEM_H
#define MVN_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* vhost-user allows 8 regions in SET_MEM_TABLE; ADD_MEM_REG may add up to what we announce in
 * GET_MAX_MEM_SLOTS, which is this. */
#define MVN_MAX_REGIONS 32

struct mvn_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
	uint8_t *host;  /* host address of gpa */
	void *map_base; /* NULL when the memory is not ours to unmap (fuzzer) */
	size_t map_len;
};

struct mvn_mem {
	uint32_t n;
	struct mvn_region r[MVN_MAX_REGIONS];
};

/* Host pointer for [gpa, gpa + len) when it lies inside one region, else NULL. */
uint8_t *mvn_mem_gpa_ptr(const struct mvn_mem *m, uint64_t gpa, uint64_t len);
/* Same for frontend-virtual addresses (vring addresses of SET_VRING_ADDR). */
uint8_t *mvn_mem_uva_ptr(const struct mvn_mem *m, uint64_t uva, uint64_t len);
/* True when every byte of [gpa, gpa + len) is backed by some region (it may span several). */
bool mvn_mem_covers(const struct mvn_mem *m, uint64_t gpa, uint64_t len);
/* Copies between guest memory and a host buffer, across region boundaries. 0 or -1 (unbacked).
 * Writes move (memmove): the source may itself be guest memory (a frame copied guest to guest,
 * vring.h), which a hostile frontend can map over the destination; the bytes are then its own
 * garbage, never an overlap that C leaves undefined. */
int mvn_mem_read(const struct mvn_mem *m, uint64_t gpa, void *dst, uint64_t len);
int mvn_mem_write(const struct mvn_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* Checks one region's own fields: non-empty, no address wrap-around. 0 or -EINVAL. */
int mvn_region_check(const struct mvn_region *r);
/* True when r overlaps a region of m in guest-physical space. */
bool mvn_mem_overlaps(const struct mvn_mem *m, const struct mvn_region *r);
/* mmaps fd for r (size + mmap_offset bytes, which the file must hold). Does not close fd.
 * 0 or -errno. */
int mvn_region_map(struct mvn_region *r, int fd);
void mvn_region_unmap(struct mvn_region *r);
/* Unmaps every region and empties the table. */
void mvn_mem_clear(struct mvn_mem *m);

#endif
