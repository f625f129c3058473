/* The forwarding fast path: frames a guest sends to another vNIC of its network, taken from the
 * guest's transmit ring, rewritten and pushed into the peer's inbound frame ring without a trip
 * through TypeScript; and the inbound ring delivered into the guest's receive ring (device.c).
 *
 * It takes only frames whose fate is certain: an IPv4 packet without options or an IPv6 packet
 * that is not ICMPv6, from the vNIC's own MAC and address, well formed, within the MTU (a TCP
 * GSO frame: its segments), with a TTL or hop limit left, to an address the table holds, and
 * with no offload or a TCP one it can pass on unchanged (wire_len). For such a frame the
 * gateway's services have nothing to answer and the router (routing/forward.ts) would deliver
 * it to that peer; the test tests/ffi/fastpath_test.ts holds the two to the same result. Every
 * other frame is left, in order, in the burst for the TypeScript path, which decides,
 * answers, counts and drops exactly as before. The table is built by routing/fast_table.ts.
 *
 * A taken frame goes straight into the peer's guest (direct.h) when the peer allows it, its
 * inbound ring is empty, its guest negotiated the frame's offloads and has a buffer for it, else
 * into that ring for the peer's own loop. Going straight into the peer's guest, a frame of
 * MVN_GATHER_MIN bytes or more is copied once: the burst holds a snapshot of its first
 * MVN_SNAP_BYTES (every header classify reads or rewrites lies in them), and the rest is copied
 * from the sender's buffers into the receiver's, before the sender's chains are given back
 * (mvn_vring_tx_gather). Every other frame is completed in the burst first. Frames this path
 * takes may overtake frames of the same burst left to TypeScript (those with offloads, or
 * anything TypeScript must look at), never frames of earlier bursts.
 *
 * Table layout (little-endian): a header of FWD_HEADER bytes
 *   [u32 version][u32 flags][u32 mtu][u32 count][own MAC 6][gateway MAC 6][own IPv4 4]
 *   [own IPv6 16][16 reserved]
 * then count entries of FWD_ENTRY bytes, sorted by (family, address):
 *   [u8 family 4|6][3 pad][i32 peer device][address 16, IPv4 in the first 4][MAC 6][2 pad]
 *   [u64 ring address][u64 ring length]
 * The rings are SharedArrayBuffers the caller keeps alive while it passes the table. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "direct.h"
#include "fring.h"
#include "mvnet.h"
#include "vring.h"

#define FWD_VERSION 1u
#define FWD_HEADER 64u
#define FWD_ENTRY 48u
#define FWD_V4 1u
#define FWD_V6 2u

#define ETH_HLEN 14u
#define ETHERTYPE_IPV4 0x0800u
#define ETHERTYPE_IPV6 0x86ddu
#define IPV4_HLEN 20u
#define IPV6_HLEN 40u
#define IPPROTO_ICMPV6 58u
#define IPPROTO_TCP 6u
#define TCP_HLEN 20u
#define TCP_CSUM_OFF 16u
/* virtio-net header values (virtio 1.x section 5.1.6). */
#define HDR_F_NEEDS_CSUM 1u
#define HDR_GSO_NONE 0u
#define HDR_GSO_TCPV4 1u
#define HDR_GSO_TCPV6 4u
#define IPV4_FLAG_RESERVED 0x8000u
/* Distinct peers one burst may wake; a burst is at most a few hundred frames, and a peer met
 * when the list is full is woken at once. */
#define MAX_WAKE 64
/* Frames one mvn_fwd_tx call takes at most (the vNIC loop asks for 64). */
#define FWD_MAX_BURST 64u

struct fwd_table {
	uint32_t flags, mtu, count;
	const uint8_t *own_mac, *gw_mac, *own4, *own6;
	const uint8_t *entries;
};

struct fwd_entry {
	int32_t handle;
	const uint8_t *mac;
	uint8_t *ring;
	uint64_t ring_len;
};

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t le32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Fixed-size compares, inlined (a call to memcmp per field was 8 % of the 64-byte loop). */
static bool eq4(const uint8_t *a, const uint8_t *b)
{
	uint32_t x, y;
	memcpy(&x, a, 4);
	memcpy(&y, b, 4);
	return x == y;
}

static bool eq6(const uint8_t *a, const uint8_t *b)
{
	uint16_t x2, y2;
	memcpy(&x2, a + 4, 2);
	memcpy(&y2, b + 4, 2);
	return eq4(a, b) && x2 == y2;
}

static bool eq16(const uint8_t *a, const uint8_t *b)
{
	uint64_t x[2], y[2];
	memcpy(x, a, 16);
	memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1];
}

/* 8 bytes at p as a big-endian number: comparing two of them compares the bytes in order. */
static inline uint64_t load_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

static bool table_open(struct fwd_table *t, const uint8_t *p, uint32_t len)
{
	if (p == NULL || len < FWD_HEADER || le32(p) != FWD_VERSION)
		return false;
	t->flags = le32(p + 4);
	t->mtu = le32(p + 8);
	t->count = le32(p + 12);
	if (t->count > (len - FWD_HEADER) / FWD_ENTRY)
		return false;
	t->own_mac = p + 16;
	t->gw_mac = p + 22;
	t->own4 = p + 28;
	t->own6 = p + 32;
	t->entries = p + FWD_HEADER;
	return true;
}

/*
 * Binary search by (family, address); addr has 4 or 16 bytes as family says. An entry holds
 * its address in 16 bytes (an IPv4 address first, then zeros). The key is kept in registers:
 * building it in a stack buffer and reading it back in wider loads stalled on store forwarding
 * (7 % of the 64-byte loop's samples on one instruction).
 */
static bool table_find(const struct fwd_table *t, uint8_t family, const uint8_t *addr,
		       struct fwd_entry *out)
{
	uint64_t khi, klo = 0;
	if (family == 4) {
		uint32_t a;
		memcpy(&a, addr, 4);
		khi = (uint64_t)__builtin_bswap32(a) << 32;
	} else {
		khi = load_be64(addr);
		klo = load_be64(addr + 8);
	}
	uint32_t lo = 0, hi = t->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const uint8_t *e = t->entries + (uint64_t)mid * FWD_ENTRY;
		int c = (int)e[0] - (int)family;
		if (c == 0) {
			uint64_t ehi = load_be64(e + 8), elo = load_be64(e + 16);
			c = ehi != khi ? (ehi < khi ? -1 : 1) : elo != klo ? (elo < klo ? -1 : 1) : 0;
		}
		if (c == 0) {
			int32_t h;
			uint64_t ring, ring_len;
			memcpy(&h, e + 4, 4);
			memcpy(&ring, e + 32, 8);
			memcpy(&ring_len, e + 40, 8);
			out->handle = h;
			out->mac = e + 24;
			out->ring = (uint8_t *)(uintptr_t)ring;
			out->ring_len = ring_len;
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* RFC 1071 over an IPv4 header of IPV4_HLEN bytes: 0 when its checksum is right. */
static uint16_t header_sum(const uint8_t *ip)
{
	uint32_t sum = 0;
	for (uint32_t i = 0; i < IPV4_HLEN; i += 2)
		sum += be16(ip + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* RFC 1624 (equation 3): the TTL drops by one, the checksum follows. */
static void decrement_ttl(uint8_t *ip)
{
	uint16_t old_word = be16(ip + 8);
	ip[8]--;
	uint16_t new_word = be16(ip + 8);
	uint32_t sum = (uint16_t)~be16(ip + 10) + (uint32_t)(uint16_t)~old_word + new_word;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	uint16_t c = (uint16_t)~sum;
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* The size a frame's packets have on a link, for the MTU check: the IP packet, or for a TCP
 * GSO frame its largest segment. 0 when the offload metadata is not one the fast path carries
 * as it is, which is a subset of what routing/offload.ts checkOffload accepts and
 * prepareFromGuest leaves unchanged: none; or a partial TCP checksum at the TCP header's
 * checksum field; or TCP GSO of the packet's IP version (no ECN) with a segment size. ip is the
 * IP header (ip_hlen bytes, total bytes of IP packet inside the frame), proto the next header. */
static uint32_t wire_len(const uint8_t *meta, const uint8_t *ip, uint32_t ip_hlen, uint32_t total,
			 uint8_t proto, bool v6)
{
	uint8_t flags = meta[0], gso = meta[1];
	if (flags == 0 && gso == HDR_GSO_NONE)
		return total;
	/* DATA_VALID or other flags, GSO without NEEDS_CSUM: TypeScript decides. */
	if (flags != HDR_F_NEEDS_CSUM || proto != IPPROTO_TCP)
		return 0;
	uint32_t l4 = ETH_HLEN + ip_hlen;
	if (le16(meta + 6) != l4 || le16(meta + 8) != TCP_CSUM_OFF || ip_hlen + TCP_HLEN > total)
		return 0;
	uint32_t tcp_hlen = (uint32_t)(ip[ip_hlen + 12] >> 4) * 4;
	if (tcp_hlen < TCP_HLEN || ip_hlen + tcp_hlen > total)
		return 0;
	if (gso == HDR_GSO_NONE)
		return total;
	uint32_t size = le16(meta + 4);
	if (gso != (v6 ? HDR_GSO_TCPV6 : HDR_GSO_TCPV4) || size == 0)
		return 0;
	uint32_t seg = ip_hlen + tcp_hlen + size;
	return seg < total ? seg : total;
}

/* The deepest byte classify reads: an IPv6 header's TCP header's data offset. */
_Static_assert(ETH_HLEN + IPV6_HLEN + 13 <= MVN_SNAP_BYTES, "headers outside the snapshot");

/* The peer a frame goes to when the fast path may take it; false leaves it to TypeScript.
 * On true the frame has been rewritten for the peer. Reads and writes only the frame's first
 * MVN_SNAP_BYTES: a gathered frame has nothing else in f. */
static bool classify(const struct fwd_table *t, const uint8_t *meta, uint8_t *f, uint32_t len,
		     struct fwd_entry *to)
{
	if (len < ETH_HLEN || !eq6(f + 6, t->own_mac))
		return false;
	uint8_t *ip = f + ETH_HLEN;
	uint32_t room = len - ETH_HLEN;
	uint16_t type = be16(f + 12);
	if (type == ETHERTYPE_IPV4) {
		if ((t->flags & FWD_V4) == 0 || room < IPV4_HLEN || ip[0] != 0x45)
			return false;
		uint32_t total = be16(ip + 2);
		if (total < IPV4_HLEN || total > room)
			return false;
		uint32_t wire = wire_len(meta, ip, IPV4_HLEN, total, ip[9], false);
		if (wire == 0 || wire > t->mtu)
			return false;
		if ((be16(ip + 6) & IPV4_FLAG_RESERVED) != 0 || header_sum(ip) != 0)
			return false;
		if (!eq4(ip + 12, t->own4) || ip[8] <= 1)
			return false;
		if (!table_find(t, 4, ip + 16, to))
			return false;
		decrement_ttl(ip);
	} else if (type == ETHERTYPE_IPV6) {
		if ((t->flags & FWD_V6) == 0 || room < IPV6_HLEN || (ip[0] >> 4) != 6)
			return false;
		uint32_t total = IPV6_HLEN + be16(ip + 4);
		if (total > room || ip[6] == IPPROTO_ICMPV6)
			return false;
		uint32_t wire = wire_len(meta, ip, IPV6_HLEN, total, ip[6], true);
		if (wire == 0 || wire > t->mtu)
			return false;
		if (!eq16(ip + 8, t->own6) || ip[7] <= 1)
			return false;
		if (!table_find(t, 6, ip + 24, to))
			return false;
		ip[7]--;
	} else {
		return false;
	}
	memcpy(f, to->mac, 6);
	memcpy(f + 6, t->gw_mac, 6);
	return true;
}

static void wake_later(int32_t *wake, uint32_t *nwake, int32_t h)
{
	for (uint32_t i = 0; i < *nwake; i++)
		if (wake[i] == h)
			return;
	if (*nwake < MAX_WAKE)
		wake[(*nwake)++] = h;
	else
		mvn_dev_notify(h);
}

int32_t mvn_fwd_tx(int32_t h, uint8_t *out, uint32_t cap, uint32_t max, const uint8_t *tbl,
		   uint32_t tbl_len, uint32_t *res)
{
	res[0] = res[1] = res[2] = res[3] = 0;
	struct mvn_frame_src src[FWD_MAX_BURST];
	int32_t held;
	int32_t n = mvn_dev_tx_gather(h, out, cap, max < FWD_MAX_BURST ? max : FWD_MAX_BURST, src,
				      &held);
	struct fwd_table t;
	bool fast = n > 0 && table_open(&t, tbl, tbl_len) && t.count > 0;
	int32_t wake[MAX_WAKE];
	uint32_t nwake = 0, off = 0, keep = 0, left = 0;
	/* The peer a direct delivery is open to (direct.dev set), or was last refused by. */
	struct mvn_direct direct = { .dev = NULL };
	int32_t direct_h = 0;
	for (int32_t i = 0; i < n; i++) {
		/* The burst is the shim's own output: each record is within it. */
		uint32_t len = le32(out + off);
		uint32_t rec = 4 + MVN_META_SIZE + len;
		uint8_t *meta = out + off + 4;
		uint8_t *frame = meta + MVN_META_SIZE;
		struct fwd_entry to;
		if (fast && classify(&t, meta, frame, len, &to)) {
			struct mvn_fring ring;
			bool ring_ok = mvn_fring_open(&ring, to.ring, to.ring_len);
			if (to.handle != direct_h) {
				if (direct.dev != NULL)
					mvn_direct_end(&direct);
				direct_h = to.handle;
				/* Straight into the peer's guest only while its ring is empty: frames
				 * queued there were sent earlier and must arrive first. */
				if (ring_ok && !mvn_fring_ready(&ring))
					mvn_direct_begin(&direct, to.handle);
			}
			if (direct.dev != NULL && !mvn_direct_accepts(&direct, meta)) {
				/* The guest did not negotiate this offload: its owner adapts the
				 * frame (vhost/receive.ts). The rest of the burst to this peer follows
				 * it through the ring. */
				mvn_direct_end(&direct);
			}
			if (direct.dev != NULL && !mvn_direct_put_src(&direct, meta, &src[i], len)) {
				/* The guest has no buffer: the frame and the rest of the burst to
				 * this peer wait in its ring for its loop (mvn_fwd_rx). */
				mvn_direct_end(&direct);
			}
			if (direct.dev != NULL) {
				res[0]++;
				res[2]++;
				if (src[i].nx > 0)
					res[3]++;
			} else {
				mvn_frame_src_fill(&src[i], frame);
				if (ring_ok && mvn_fring_push(&ring, meta, frame, len)) {
					res[0]++;
					wake_later(wake, &nwake, to.handle);
				} else {
					res[1]++;
				}
			}
		} else {
			mvn_frame_src_fill(&src[i], frame);
			if (keep != off)
				memmove(out + keep, out + off, rec);
			keep += rec;
			left++;
		}
		off += rec;
	}
	if (direct.dev != NULL)
		mvn_direct_end(&direct);
	/* Every frame is now delivered or complete in out: the guest may have its buffers back. */
	mvn_dev_tx_release(h, held);
	for (uint32_t i = 0; i < nwake; i++)
		mvn_dev_notify(wake[i]);
	return n < 0 ? n : (int32_t)left;
}
