/* Guest memory regions and address translation. See mem.h. */
#include "mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* [addr, addr + len) inside [base, base + size)? Written so that no sum can overflow. */
static bool range_inside(uint64_t addr, uint64_t len, uint64_t base, uint64_t size)
{
	if (addr < base)
		return false;
	uint64_t off = addr - base;
	return off < size && len <= size - off;
}

uint8_t *mvn_mem_gpa_ptr(const struct mvn_mem *m, uint64_t gpa, uint64_t len)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct mvn_region *r = &m->r[i];
		if (range_inside(gpa, len, r->gpa, r->size))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

uint8_t *mvn_mem_uva_ptr(const struct mvn_mem *m, uint64_t uva, uint64_t len)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct mvn_region *r = &m->r[i];
		if (range_inside(uva, len, r->uva, r->size))
			return r->host + (uva - r->uva);
	}
	return NULL;
}

/* The region holding the byte at gpa, or NULL. */
static const struct mvn_region *region_at(const struct mvn_mem *m, uint64_t gpa)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct mvn_region *r = &m->r[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size)
			return r;
	}
	return NULL;
}

/* Walks [gpa, gpa + len) piece by piece, one region at a time; calls fn for each piece.
 * Fails on the first unbacked byte or on wrap-around of the guest address. */
static int for_each_piece(const struct mvn_mem *m, uint64_t gpa, uint64_t len,
			  void (*fn)(uint8_t *host, uint64_t n, void *ctx), void *ctx)
{
	if (len > UINT64_MAX - gpa)
		return -1;
	while (len > 0) {
		const struct mvn_region *r = region_at(m, gpa);
		if (r == NULL)
			return -1;
		uint64_t off = gpa - r->gpa;
		uint64_t n = r->size - off;
		if (n > len)
			n = len;
		if (fn != NULL)
			fn(r->host + off, n, ctx);
		gpa += n;
		len -= n;
	}
	return 0;
}

bool mvn_mem_covers(const struct mvn_mem *m, uint64_t gpa, uint64_t len)
{
	return for_each_piece(m, gpa, len, NULL, NULL) == 0;
}

struct copy_ctx {
	uint8_t *buf;
	bool to_guest;
};

static void copy_piece(uint8_t *host, uint64_t n, void *p)
{
	struct copy_ctx *c = p;
	if (c->to_guest)
		memmove(host, c->buf, n);
	else
		memcpy(c->buf, host, n);
	c->buf += n;
}

int mvn_mem_read(const struct mvn_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	uint8_t *fast = mvn_mem_gpa_ptr(m, gpa, len);
	if (fast != NULL) {
		memcpy(dst, fast, len);
		return 0;
	}
	/* Check first so that a failed copy leaves dst untouched past what was valid. */
	if (!mvn_mem_covers(m, gpa, len))
		return -1;
	struct copy_ctx c = { .buf = dst, .to_guest = false };
	return for_each_piece(m, gpa, len, copy_piece, &c);
}

int mvn_mem_write(const struct mvn_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	uint8_t *fast = mvn_mem_gpa_ptr(m, gpa, len);
	if (fast != NULL) {
		memmove(fast, src, len);
		return 0;
	}
	/* Never write part of a buffer and then fail: check the whole range first. */
	if (!mvn_mem_covers(m, gpa, len))
		return -1;
	struct copy_ctx c = { .buf = (uint8_t *)src, .to_guest = true };
	return for_each_piece(m, gpa, len, copy_piece, &c);
}

int mvn_region_check(const struct mvn_region *r)
{
	if (r->size == 0)
		return -EINVAL;
	if (r->size > UINT64_MAX - r->gpa || r->size > UINT64_MAX - r->uva)
		return -EINVAL;
	if (r->mmap_offset > UINT64_MAX - r->size)
		return -EINVAL;
	return 0;
}

bool mvn_mem_overlaps(const struct mvn_mem *m, const struct mvn_region *r)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct mvn_region *o = &m->r[i];
		if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
			return true;
	}
	return false;
}

int mvn_region_map(struct mvn_region *r, int fd)
{
	int rc = mvn_region_check(r);
	if (rc != 0)
		return rc;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	/* Touching a mapping past the end of its file raises SIGBUS, which would kill the whole
	 * data plane: the region must lie inside the file as it is now. */
	if (!S_ISREG(st.st_mode) || st.st_size < 0)
		return -EINVAL;
	uint64_t need = r->size + r->mmap_offset;
	if (need > (uint64_t)st.st_size || need > SIZE_MAX)
		return -EINVAL;
	/* hugetlbfs only maps whole huge pages: round up to the file's block size where the file
	 * is that long. */
	uint64_t len = need;
	uint64_t blk = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 1;
	if (need % blk != 0 && need / blk * blk + blk <= (uint64_t)st.st_size)
		len = need / blk * blk + blk;
	void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	r->map_base = p;
	r->map_len = (size_t)len;
	r->host = (uint8_t *)p + r->mmap_offset;
	return 0;
}

void mvn_region_unmap(struct mvn_region *r)
{
	if (r->map_base != NULL)
		munmap(r->map_base, r->map_len);
	r->map_base = NULL;
	r->map_len = 0;
	r->host = NULL;
}

void mvn_mem_clear(struct mvn_mem *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		mvn_region_unmap(&m->r[i]);
	m->n = 0;
}
