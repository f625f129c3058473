/*
 * mvirt-bench-gen: a loop packet generator for the VM-to-VM packet-rate benchmark.
 *
 * Two DPDK ports (normally virtio-user frontends on the two vhost-user sockets of a
 * backend) play two guests, A on port 0 and B on port 1. A fixed population of IPv4/UDP
 * (or IPv6/UDP) frames is injected, half on each port. Every frame the backend delivers
 * to port p is turned around and sent again from port p: source and destination IP are
 * swapped, the destination MAC becomes the gateway's, the source MAC port p's own, and the
 * TTL / hop limit is restored (a router decrements it on every pass; the IPv4 header
 * checksum is fixed incrementally). So the population circulates
 * port 0 -> backend -> port 1 -> backend -> port 0 ... for a fixed time on one lcore,
 * against an L3 router (which rewrites MACs and decrements the TTL) as well as against a
 * plain L2 forwarder such as testpmd's io mode between two net_vhost ports.
 *
 * With --oneway the population circulates in one direction only: every frame is injected
 * on port 1 and what the backend delivers to port 0 is sent from port 1 again, addresses
 * unchanged (TTL restored). The backend then does one thing per frame: take it from guest
 * B's TX ring and put it into guest A's RX ring (the single-direction guest-rx figure).
 *
 * Frames that are not part of the population (another ethertype, another destination IP:
 * ARP, NDP, router advertisements of a real router) are counted as "foreign" and freed.
 *
 * Output: one JSON line on stdout. Diagnostics go to stderr.
 *
 * Usage: mvirt-bench-gen EAL-ARGS -- [OPTIONS]   (see usage() below)
 *        mvirt-bench-gen --selftest              (frame logic only, no DPDK ports)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/resource.h>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_udp.h>

#define NPORTS 2
#define MAX_BURST 256
#define MIN_FRAME 64
#define MAX_FRAME 1514
#define UDP_SRC_PORT 4000
#define UDP_DST_PORT 4001

struct opts {
	double duration_s;
	double warmup_s;
	double link_timeout_s;
	unsigned population;
	unsigned frame_size;
	unsigned burst;
	unsigned family; /* 4 or 6 */
	unsigned ttl;
	unsigned nb_mbufs;
	unsigned desc;
	bool verify;
	bool oneway; /* every frame goes port 1 -> backend -> port 0 only */
	bool have_mac[NPORTS];
	struct rte_ether_addr mac[NPORTS]; /* own MAC of port 0 (guest A) and 1 (guest B) */
	struct rte_ether_addr gw_mac;      /* destination MAC of every frame sent */
	uint32_t ip4[NPORTS];              /* network order */
	uint8_t ip6[NPORTS][16];
	bool have_ip[NPORTS];
};

/* Frames held by the generator that the port did not accept yet (a FIFO per port). */
struct fifo {
	struct rte_mbuf **slot;
	unsigned cap; /* power of two */
	unsigned head; /* next to send */
	unsigned count;
};

struct port_stats {
	uint64_t rx;        /* population frames received */
	uint64_t tx;        /* frames accepted by the port */
	uint64_t foreign;   /* frames received that are not ours (freed) */
	uint64_t bad_csum;  /* with --verify: IPv4 header checksum wrong on receive */
	uint64_t bad_ttl;   /* with --verify: TTL/hop limit not original or original - 1 */
	uint64_t tx_full;   /* tx bursts that did not take everything offered */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s EAL-ARGS -- [options]\n"
		"       %s --selftest\n"
		"  --duration SEC       measured time (default 10)\n"
		"  --warmup SEC         circulate before measuring (default 0.5)\n"
		"  --population N       frames in flight, half per port (default 1024)\n"
		"  --size BYTES         frame length incl. Ethernet header, no FCS, 64..1514 (default 64)\n"
		"  --family 4|6         IPv4/UDP or IPv6/UDP (default 4)\n"
		"  --ip0 ADDR --ip1 ADDR  guest A (port 0) and guest B (port 1) addresses\n"
		"                       (default 10.0.0.2/10.0.0.3 or fd00::2/fd00::3)\n"
		"  --mac0 MAC --mac1 MAC  source MACs of port 0/1 (default: the ports' MACs)\n"
		"  --gw-mac MAC         destination MAC of every frame (default 02:00:00:00:00:01)\n"
		"  --ttl N              TTL / hop limit restored on every pass (default 64)\n"
		"  --burst N            rx/tx burst (default 32, max %d)\n"
		"  --mbufs N            mempool size (default population + 16384)\n"
		"  --desc N             rx/tx descriptors per port, at most the vdev's queue_size\n"
		"                       (default 1024)\n"
		"  --link-timeout SEC   wait for both links (default 10)\n"
		"  --verify             check IPv4 header checksums and TTLs on receive\n"
		"  --oneway             circulate port 1 -> backend -> port 0 only\n",
		prog, prog, MAX_BURST);
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_seconds(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

enum {
	OPT_DURATION = 256, OPT_WARMUP, OPT_POPULATION, OPT_SIZE, OPT_FAMILY, OPT_IP0, OPT_IP1,
	OPT_MAC0, OPT_MAC1, OPT_GW_MAC, OPT_TTL, OPT_BURST, OPT_MBUFS, OPT_LINK_TIMEOUT,
	OPT_VERIFY, OPT_DESC, OPT_HELP, OPT_ONEWAY,
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"duration", required_argument, NULL, OPT_DURATION},
		{"warmup", required_argument, NULL, OPT_WARMUP},
		{"population", required_argument, NULL, OPT_POPULATION},
		{"size", required_argument, NULL, OPT_SIZE},
		{"family", required_argument, NULL, OPT_FAMILY},
		{"ip0", required_argument, NULL, OPT_IP0},
		{"ip1", required_argument, NULL, OPT_IP1},
		{"mac0", required_argument, NULL, OPT_MAC0},
		{"mac1", required_argument, NULL, OPT_MAC1},
		{"gw-mac", required_argument, NULL, OPT_GW_MAC},
		{"ttl", required_argument, NULL, OPT_TTL},
		{"burst", required_argument, NULL, OPT_BURST},
		{"mbufs", required_argument, NULL, OPT_MBUFS},
		{"desc", required_argument, NULL, OPT_DESC},
		{"link-timeout", required_argument, NULL, OPT_LINK_TIMEOUT},
		{"verify", no_argument, NULL, OPT_VERIFY},
		{"oneway", no_argument, NULL, OPT_ONEWAY},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *ip_arg[NPORTS] = {NULL, NULL};
	int c;

	memset(o, 0, sizeof(*o));
	o->duration_s = 10;
	o->warmup_s = 0.5;
	o->link_timeout_s = 10;
	o->population = 1024;
	o->frame_size = 64;
	o->burst = 32;
	o->family = 4;
	o->ttl = 64;
	o->desc = 1024;
	rte_ether_unformat_addr("02:00:00:00:00:01", &o->gw_mac);

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case OPT_DURATION:
			bad = parse_seconds(optarg, 0.001, 3600, &o->duration_s);
			break;
		case OPT_WARMUP:
			bad = parse_seconds(optarg, 0, 600, &o->warmup_s);
			break;
		case OPT_LINK_TIMEOUT:
			bad = parse_seconds(optarg, 0.1, 600, &o->link_timeout_s);
			break;
		case OPT_POPULATION:
			bad = parse_uint(optarg, 2, 1u << 20, &o->population);
			break;
		case OPT_SIZE:
			bad = parse_uint(optarg, MIN_FRAME, MAX_FRAME, &o->frame_size);
			break;
		case OPT_FAMILY:
			bad = parse_uint(optarg, 4, 6, &o->family) || (o->family != 4 && o->family != 6);
			break;
		case OPT_IP0:
			ip_arg[0] = optarg;
			break;
		case OPT_IP1:
			ip_arg[1] = optarg;
			break;
		case OPT_MAC0:
		case OPT_MAC1: {
			int p = c == OPT_MAC0 ? 0 : 1;
			bad = rte_ether_unformat_addr(optarg, &o->mac[p]) != 0;
			o->have_mac[p] = true;
			break;
		}
		case OPT_GW_MAC:
			bad = rte_ether_unformat_addr(optarg, &o->gw_mac) != 0;
			break;
		case OPT_TTL:
			bad = parse_uint(optarg, 1, 255, &o->ttl);
			break;
		case OPT_BURST:
			bad = parse_uint(optarg, 1, MAX_BURST, &o->burst);
			break;
		case OPT_DESC:
			bad = parse_uint(optarg, 32, 32768, &o->desc);
			break;
		case OPT_MBUFS:
			bad = parse_uint(optarg, 64, 1u << 22, &o->nb_mbufs);
			break;
		case OPT_VERIFY:
			o->verify = true;
			break;
		case OPT_ONEWAY:
			o->oneway = true;
			break;
		case OPT_HELP:
		default:
			usage(argv[0]);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "gen: bad value for %s: %s\n", argv[optind - 1],
				optarg ? optarg : "");
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "gen: unexpected argument %s\n", argv[optind]);
		return -1;
	}
	static const char *def4[NPORTS] = {"10.0.0.2", "10.0.0.3"};
	static const char *def6[NPORTS] = {"fd00::2", "fd00::3"};
	for (int p = 0; p < NPORTS; p++) {
		const char *s = ip_arg[p] ? ip_arg[p] : (o->family == 4 ? def4[p] : def6[p]);
		void *dst = o->family == 4 ? (void *)&o->ip4[p] : (void *)o->ip6[p];
		if (inet_pton(o->family == 4 ? AF_INET : AF_INET6, s, dst) != 1) {
			fprintf(stderr, "gen: not an IPv%u address: %s\n", o->family, s);
			return -1;
		}
	}
	if (o->family == 4 ? o->ip4[0] == o->ip4[1] : memcmp(o->ip6[0], o->ip6[1], 16) == 0) {
		fprintf(stderr, "gen: --ip0 and --ip1 must differ\n");
		return -1;
	}
	if (o->nb_mbufs == 0)
		o->nb_mbufs = o->population + 16384;
	if (o->nb_mbufs < o->population + 4096) {
		fprintf(stderr, "gen: --mbufs must be at least population + 4096\n");
		return -1;
	}
	return 0;
}

static int fifo_init(struct fifo *f, unsigned min_cap, int socket)
{
	unsigned cap = rte_align32pow2(min_cap);
	f->slot = rte_zmalloc_socket("gen_fifo", sizeof(f->slot[0]) * cap, 0, socket);
	if (f->slot == NULL)
		return -1;
	f->cap = cap;
	f->head = 0;
	f->count = 0;
	return 0;
}

static inline void fifo_push(struct fifo *f, struct rte_mbuf *m)
{
	/* Cannot overflow: the capacity exceeds the number of mbufs in the pool. */
	f->slot[(f->head + f->count) & (f->cap - 1)] = m;
	f->count++;
}

/* Offers up to `burst` held frames to the port; returns how many it took. */
static inline unsigned fifo_flush(struct fifo *f, uint16_t port, unsigned burst,
				  struct port_stats *st)
{
	if (f->count == 0)
		return 0;
	unsigned n = RTE_MIN(f->count, burst);
	unsigned contiguous = f->cap - f->head;
	if (n > contiguous)
		n = contiguous;
	uint16_t sent = rte_eth_tx_burst(port, 0, &f->slot[f->head], (uint16_t)n);
	f->head = (f->head + sent) & (f->cap - 1);
	f->count -= sent;
	st->tx += sent;
	if (sent < n)
		st->tx_full++;
	return sent;
}

/* The 16-bit one's-complement sum of the IPv4 header, 0xffff when it is valid. */
static inline uint16_t ip4_hdr_sum(const struct rte_ipv4_hdr *ip)
{
	return rte_raw_cksum(ip, rte_ipv4_hdr_len(ip));
}

/* Builds the frame port `p` sends (from guest p to the other guest) into `d`. */
static void build_frame_bytes(uint8_t *d, const struct opts *o, int p,
			      const struct rte_ether_addr *src_mac)
{
	int q = 1 - p;
	unsigned len = o->frame_size;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d;

	memset(d, 0, len);
	rte_ether_addr_copy(&o->gw_mac, &eth->dst_addr);
	rte_ether_addr_copy(src_mac, &eth->src_addr);
	size_t l3 = sizeof(*eth);
	size_t l4;
	if (o->family == 4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(d + l3);
		eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
		l4 = l3 + sizeof(*ip);
		ip->version_ihl = RTE_IPV4_VHL_DEF;
		ip->total_length = rte_cpu_to_be_16((uint16_t)(len - l3));
		ip->packet_id = 0;
		ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
		ip->time_to_live = (uint8_t)o->ttl;
		ip->next_proto_id = IPPROTO_UDP;
		ip->src_addr = o->ip4[p];
		ip->dst_addr = o->ip4[q];
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(d + l3);
		eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
		l4 = l3 + sizeof(*ip);
		ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
		ip->payload_len = rte_cpu_to_be_16((uint16_t)(len - l4));
		ip->proto = IPPROTO_UDP;
		ip->hop_limits = (uint8_t)o->ttl;
		memcpy(ip->src_addr, o->ip6[p], 16);
		memcpy(ip->dst_addr, o->ip6[q], 16);
	}
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(d + l4);
	udp->src_port = rte_cpu_to_be_16(UDP_SRC_PORT);
	udp->dst_port = rte_cpu_to_be_16(UDP_DST_PORT);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(len - l4));
	uint8_t *payload = d + l4 + sizeof(*udp);
	for (size_t i = 0; i < len - l4 - sizeof(*udp); i++)
		payload[i] = (uint8_t)i;
	udp->dgram_cksum = 0;
	/* Swapping the addresses keeps the pseudo-header sum, so this stays valid. */
	if (o->family == 4)
		udp->dgram_cksum = rte_ipv4_udptcp_cksum((struct rte_ipv4_hdr *)(d + l3), udp);
	else
		udp->dgram_cksum = rte_ipv6_udptcp_cksum((struct rte_ipv6_hdr *)(d + l3), udp);
}

static void build_frame(struct rte_mbuf *m, const struct opts *o, int p,
			const struct rte_ether_addr *src_mac)
{
	build_frame_bytes(rte_pktmbuf_mtod(m, uint8_t *), o, p, src_mac);
	m->data_len = (uint16_t)o->frame_size;
	m->pkt_len = o->frame_size;
}

/* Sets the IPv4 TTL and fixes the header checksum incrementally (RFC 1624 eqn. 3). */
static inline void ip4_set_ttl(struct rte_ipv4_hdr *ip, uint8_t ttl)
{
	if (ip->time_to_live == ttl)
		return;
	/* The 16-bit word of TTL and protocol, before and after, in host order. */
	uint32_t old = ((uint32_t)ip->time_to_live << 8) | ip->next_proto_id;
	uint32_t new = ((uint32_t)ttl << 8) | ip->next_proto_id;
	uint32_t sum = (uint16_t)~rte_be_to_cpu_16(ip->hdr_checksum);
	sum += (uint16_t)~old;
	sum += new;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->hdr_checksum = rte_cpu_to_be_16((uint16_t)~sum);
	ip->time_to_live = ttl;
}

/*
 * Turns the `len` bytes of a frame received on port p (from the other guest to guest p)
 * around: back out of port p towards the other guest. Returns false for a frame that is
 * not ours.
 */
static inline bool turn_around_bytes(const struct opts *o, int p,
				     const struct rte_ether_addr *src_mac,
				     struct port_stats *st, uint8_t *d, unsigned len)
{
	if (unlikely(len < MIN_FRAME - 4))
		return false;
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)d;
	if (o->family == 4) {
		if (unlikely(eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)))
			return false;
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
		if (unlikely(ip->dst_addr != o->ip4[p] || ip->src_addr != o->ip4[1 - p] ||
			     ip->version_ihl != RTE_IPV4_VHL_DEF))
			return false;
		if (o->verify) {
			if (ip4_hdr_sum(ip) != 0xffff)
				st->bad_csum++;
			if (ip->time_to_live != o->ttl && ip->time_to_live + 1u != o->ttl)
				st->bad_ttl++;
		}
		ip4_set_ttl(ip, (uint8_t)o->ttl);
		/* Swapping the addresses leaves both checksums as they are. */
		ip->dst_addr = o->ip4[1 - p];
		ip->src_addr = o->ip4[p];
	} else {
		if (unlikely(eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6)))
			return false;
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
		if (unlikely(memcmp(ip->dst_addr, o->ip6[p], 16) != 0 ||
			     memcmp(ip->src_addr, o->ip6[1 - p], 16) != 0))
			return false;
		if (o->verify && ip->hop_limits != o->ttl && ip->hop_limits + 1u != o->ttl)
			st->bad_ttl++;
		ip->hop_limits = (uint8_t)o->ttl;
		memcpy(ip->dst_addr, o->ip6[1 - p], 16);
		memcpy(ip->src_addr, o->ip6[p], 16);
	}
	rte_ether_addr_copy(&o->gw_mac, &eth->dst_addr);
	rte_ether_addr_copy(src_mac, &eth->src_addr);
	return true;
}

struct gen {
	struct opts o;
	uint16_t port[NPORTS];
	struct rte_ether_addr src_mac[NPORTS];
	struct fifo held[NPORTS];
	struct port_stats st[NPORTS];
};

static inline bool turn_around(struct gen *g, int p, struct rte_mbuf *m)
{
	if (unlikely(m->nb_segs != 1))
		return false;
	return turn_around_bytes(&g->o, p, &g->src_mac[p], &g->st[p],
				 rte_pktmbuf_mtod(m, uint8_t *), m->data_len);
}

/*
 * --oneway: a frame that turn_around() prepared to go back out of the port it arrived on
 * is sent from port `out` instead, on to the same guest as before: the addresses are
 * swapped back (which keeps both checksums valid) and the source MAC is port `out`'s.
 */
static inline void redirect(struct gen *g, int out, struct rte_mbuf *m)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	if (g->o.family == 4) {
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
		uint32_t a = ip->src_addr;
		ip->src_addr = ip->dst_addr;
		ip->dst_addr = a;
	} else {
		struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
		uint8_t a[16];
		memcpy(a, ip->src_addr, 16);
		memcpy(ip->src_addr, ip->dst_addr, 16);
		memcpy(ip->dst_addr, a, 16);
	}
	rte_ether_addr_copy(&g->src_mac[out], &eth->src_addr);
}

/* Recomputes the UDP checksum after the IP header at `l3` and compares. */
static bool udp_cksum_ok(unsigned family, void *l3)
{
	size_t hl = family == 4 ? sizeof(struct rte_ipv4_hdr) : sizeof(struct rte_ipv6_hdr);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)((uint8_t *)l3 + hl);
	uint16_t seen = udp->dgram_cksum;
	udp->dgram_cksum = 0;
	uint16_t want = family == 4 ? rte_ipv4_udptcp_cksum(l3, udp) : rte_ipv6_udptcp_cksum(l3, udp);
	udp->dgram_cksum = seen;
	return seen == want;
}

/*
 * --selftest: checks the frame builder and the turn-around against what a router does
 * (TTL - 1 with a full checksum recomputation, MAC rewrite), without DPDK ports.
 */
static int selftest(void)
{
	static uint8_t buf[MAX_FRAME];
	unsigned failures = 0, cases = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (unsigned family = 4; family <= 6; family += 2) {
		for (unsigned iter = 0; iter < 20000; iter++) {
			struct opts o;
			memset(&o, 0, sizeof(o));
			o.family = family;
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			o.ttl = 2 + (unsigned)(seed >> 33) % 254;
			o.frame_size = (iter & 1) ? 1500 : 64;
			o.verify = true;
			for (int p = 0; p < NPORTS; p++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				o.ip4[p] = (uint32_t)(seed >> 32);
				memcpy(o.ip6[p], &seed, sizeof(seed));
				memcpy(o.ip6[p] + 8, &o.ip4[p], sizeof(o.ip4[p]));
				o.ip6[p][0] = 0xfd;
				o.mac[p].addr_bytes[0] = 0x02;
				o.mac[p].addr_bytes[5] = (uint8_t)(p + 1);
			}
			o.ip6[1][15] ^= 1; /* the two guests differ */
			o.ip4[1] ^= 1u << 24;
			o.gw_mac.addr_bytes[0] = 0x02;
			o.gw_mac.addr_bytes[5] = 0xfe;
			int p = (int)(iter >> 1) & 1, q = 1 - p;
			build_frame_bytes(buf, &o, p, &o.mac[p]);
			/* What the router does on the way from p to q. */
			struct rte_ether_hdr *eth = (struct rte_ether_hdr *)buf;
			rte_ether_addr_copy(&o.mac[q], &eth->dst_addr);
			rte_ether_addr_copy(&o.gw_mac, &eth->src_addr);
			if (family == 4) {
				struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
				ip->time_to_live--;
				ip->hdr_checksum = 0;
				ip->hdr_checksum = rte_ipv4_cksum(ip);
			} else {
				((struct rte_ipv6_hdr *)(eth + 1))->hop_limits--;
			}
			struct port_stats st;
			memset(&st, 0, sizeof(st));
			bool ok = turn_around_bytes(&o, q, &o.mac[q], &st, buf, o.frame_size);
			ok = ok && st.bad_csum == 0 && st.bad_ttl == 0;
			ok = ok && rte_is_same_ether_addr(&eth->dst_addr, &o.gw_mac) &&
			     rte_is_same_ether_addr(&eth->src_addr, &o.mac[q]);
			if (family == 4) {
				struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
				ok = ok && ip4_hdr_sum(ip) == 0xffff && ip->time_to_live == o.ttl &&
				     ip->src_addr == o.ip4[q] && ip->dst_addr == o.ip4[p] &&
				     udp_cksum_ok(4, ip);
			} else {
				struct rte_ipv6_hdr *ip = (struct rte_ipv6_hdr *)(eth + 1);
				ok = ok && ip->hop_limits == o.ttl &&
				     memcmp(ip->src_addr, o.ip6[q], 16) == 0 &&
				     memcmp(ip->dst_addr, o.ip6[p], 16) == 0 &&
				     udp_cksum_ok(6, ip);
			}
			/* A frame addressed elsewhere is not ours. */
			ok = ok && !turn_around_bytes(&o, q, &o.mac[q], &st, buf, o.frame_size);
			cases++;
			if (!ok && failures++ < 5)
				fprintf(stderr, "selftest: IPv%u case %u failed\n", family, iter);
		}
	}
	printf("{\"tool\":\"mvirt-bench-gen\",\"selftest\":%s,\"cases\":%u,\"failures\":%u}\n",
	       failures ? "false" : "true", cases, failures);
	return failures ? 1 : 0;
}

/* One pass over both ports: receive, turn around, send. Returns frames received. */
static inline unsigned poll_once(struct gen *g, bool forward)
{
	struct rte_mbuf *bufs[MAX_BURST];
	unsigned got = 0;
	for (int p = 0; p < NPORTS; p++) {
		uint16_t n = rte_eth_rx_burst(g->port[p], 0, bufs, (uint16_t)g->o.burst);
		for (uint16_t i = 0; i < n; i++) {
			if (i + 1 < n)
				rte_prefetch0(rte_pktmbuf_mtod(bufs[i + 1], void *));
			if (likely(turn_around(g, p, bufs[i]))) {
				g->st[p].rx++;
				if (forward) {
					int out = p;
					if (g->o.oneway) {
						out = 1 - p;
						redirect(g, out, bufs[i]);
					}
					fifo_push(&g->held[out], bufs[i]);
					continue;
				}
			} else {
				g->st[p].foreign++;
			}
			rte_pktmbuf_free(bufs[i]);
		}
		got += n;
		if (forward)
			fifo_flush(&g->held[p], g->port[p], g->o.burst, &g->st[p]);
	}
	return got;
}

/* Sends one frame from port p and polls both ports for it; true if it reached the other. */
static bool probe_once(struct gen *g, struct rte_mempool *pool, int p, uint64_t wait)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	if (m == NULL)
		return false;
	build_frame(m, &g->o, p, &g->src_mac[p]);
	if (rte_eth_tx_burst(g->port[p], 0, &m, 1) != 1) {
		rte_pktmbuf_free(m);
		return false;
	}
	bool arrived = false;
	uint64_t end = rte_get_tsc_cycles() + wait;
	while (!arrived && !stop_requested && rte_get_tsc_cycles() < end) {
		uint64_t rx_before = g->st[1 - p].rx;
		poll_once(g, false);
		arrived = g->st[1 - p].rx > rx_before;
	}
	return arrived;
}

static int probe_paths(struct gen *g, struct rte_mempool *pool, uint64_t deadline)
{
	uint64_t hz = rte_get_tsc_hz();
	bool ok[NPORTS] = {false, false};
	unsigned tries = 0;
	while (!(ok[0] && ok[1])) {
		if (stop_requested || rte_get_tsc_cycles() > deadline) {
			fprintf(stderr, "gen: no frame got through the backend (port 0->1: %s, "
				"1->0: %s) after %u tries\n", ok[0] ? "ok" : "no",
				ok[1] ? "ok" : "no", tries);
			return -1;
		}
		for (int p = 0; p < NPORTS; p++)
			if (!ok[p])
				ok[p] = probe_once(g, pool, p, hz / 10);
		tries++;
	}
	/* Let stragglers of failed tries arrive, then forget the probes. */
	uint64_t end = rte_get_tsc_cycles() + hz / 50;
	while (rte_get_tsc_cycles() < end)
		poll_once(g, false);
	memset(g->st, 0, sizeof(g->st));
	return 0;
}

static int port_setup(uint16_t port, struct rte_mempool *pool, unsigned desc)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	memset(&conf, 0, sizeof(conf));
	int rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_configure(port, 1, 1, &conf);
	if (rc != 0)
		return rc;
	/* Not 0: ethdev would round 0 up to the driver's minimum (32 for virtio). */
	uint16_t nrx = (uint16_t)desc, ntx = (uint16_t)desc;
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
	if (rc != 0)
		return rc;
	int socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = (int)rte_socket_id();
	rc = rte_eth_rx_queue_setup(port, 0, nrx, (unsigned)socket, NULL, pool);
	if (rc != 0)
		return rc;
	rc = rte_eth_tx_queue_setup(port, 0, ntx, (unsigned)socket, NULL);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_start(port);
	if (rc != 0)
		return rc;
	return 0;
}

static bool links_up(const struct gen *g)
{
	for (int p = 0; p < NPORTS; p++) {
		struct rte_eth_link link;
		memset(&link, 0, sizeof(link));
		if (rte_eth_link_get_nowait(g->port[p], &link) != 0 ||
		    link.link_status != RTE_ETH_LINK_UP)
			return false;
	}
	return true;
}

static void print_mac(char *buf, size_t n, const struct rte_ether_addr *a)
{
	rte_ether_format_addr(buf, (uint16_t)n, a);
}

int main(int argc, char **argv)
{
	static struct gen g;
	if (argc == 2 && strcmp(argv[1], "--selftest") == 0)
		return selftest();
	int rc = rte_eal_init(argc, argv);
	if (rc < 0) {
		fprintf(stderr, "gen: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
		return 2;
	}
	argc -= rc;
	argv += rc;
	argv[0] = (char *)"mvirt-bench-gen";
	int status = 2;
	if (parse_opts(argc, argv, &g.o) != 0)
		goto out_eal;
	const struct opts *o = &g.o;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	if (rte_eth_dev_count_avail() < NPORTS) {
		fprintf(stderr, "gen: need 2 ports, have %u (is the backend listening?)\n",
			rte_eth_dev_count_avail());
		goto out_eal;
	}
	uint16_t pid;
	int np = 0;
	RTE_ETH_FOREACH_DEV(pid) {
		if (np < NPORTS)
			g.port[np++] = pid;
	}
	int socket = (int)rte_socket_id();
	struct rte_mempool *pool = rte_pktmbuf_pool_create(
		"gen_pool", o->nb_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
	if (pool == NULL) {
		fprintf(stderr, "gen: mempool of %u mbufs: %s (raise -m)\n", o->nb_mbufs,
			rte_strerror(rte_errno));
		goto out_eal;
	}
	for (int p = 0; p < NPORTS; p++) {
		rc = port_setup(g.port[p], pool, o->desc);
		if (rc != 0) {
			fprintf(stderr, "gen: port %u setup: %s\n", g.port[p], rte_strerror(-rc));
			goto out_ports;
		}
		if (o->have_mac[p])
			g.src_mac[p] = o->mac[p];
		else if (rte_eth_macaddr_get(g.port[p], &g.src_mac[p]) != 0)
			goto out_ports;
		if (fifo_init(&g.held[p], o->nb_mbufs + 1, socket) != 0) {
			fprintf(stderr, "gen: no memory for the fifo\n");
			goto out_ports;
		}
	}

	uint64_t hz = rte_get_tsc_hz();
	uint64_t deadline = rte_get_tsc_cycles() + (uint64_t)(o->link_timeout_s * (double)hz);
	while (!links_up(&g)) {
		if (stop_requested || rte_get_tsc_cycles() > deadline) {
			fprintf(stderr, "gen: links not up after %.1f s\n", o->link_timeout_s);
			goto out_ports;
		}
		rte_delay_ms(10);
	}

	/*
	 * "Link up" on a virtio-user port does not mean the backend forwards yet: a backend
	 * drops what arrives before both of its vNICs are ready. Send one probe frame each way
	 * until it comes back on the other port.
	 */
	if (probe_paths(&g, pool, deadline) != 0)
		goto out_ports;

	/* Inject the population: half on each port (port 0 gets the odd one); all on port 1
	 * with --oneway. */
	unsigned injected = 0;
	for (int p = 0; p < NPORTS; p++) {
		unsigned n = p == 0 ? (o->population + 1) / 2 : o->population / 2;
		if (o->oneway)
			n = p == 0 ? 0 : o->population;
		for (unsigned i = 0; i < n; i++) {
			struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
			if (m == NULL) {
				fprintf(stderr, "gen: mempool exhausted while injecting\n");
				goto out_ports;
			}
			build_frame(m, o, p, &g.src_mac[p]);
			fifo_push(&g.held[p], m);
			injected++;
		}
	}

	/* Warm-up: circulate, then reset the counters. */
	uint64_t t0 = rte_get_tsc_cycles();
	uint64_t end = t0 + (uint64_t)(o->warmup_s * (double)hz);
	while (!stop_requested && rte_get_tsc_cycles() < end)
		poll_once(&g, true);
	memset(g.st, 0, sizeof(g.st));

	/* Measurement. The clock is read once per pass (a pass is at most 2 bursts). */
	struct rusage ru0, ru1;
	getrusage(RUSAGE_THREAD, &ru0);
	uint64_t start = rte_get_tsc_cycles();
	end = start + (uint64_t)(o->duration_s * (double)hz);
	uint64_t now = start;
	while (!stop_requested && now < end) {
		poll_once(&g, true);
		now = rte_get_tsc_cycles();
	}
	double elapsed = (double)(now - start) / (double)hz;
	getrusage(RUSAGE_THREAD, &ru1);
	/* Preemptions of the forwarding loop: a figure of the machine's noise. */
	long preempted = ru1.ru_nivcsw - ru0.ru_nivcsw;
	struct port_stats measured[NPORTS];
	memcpy(measured, g.st, sizeof(measured));

	/*
	 * Drain: stop sending and collect what comes back, until every frame is accounted
	 * for, or nothing arrived for 250 ms (a busy shared machine can stall the backend for
	 * tens of ms), or 2 s passed.
	 */
	unsigned held = g.held[0].count + g.held[1].count;
	uint64_t drained_rx = 0;
	uint64_t drain_end = rte_get_tsc_cycles() + 2 * hz;
	uint64_t quiet_since = rte_get_tsc_cycles();
	uint64_t rx_before = g.st[0].rx + g.st[1].rx;
	while (held + g.st[0].rx + g.st[1].rx - rx_before < injected &&
	       rte_get_tsc_cycles() < drain_end) {
		if (poll_once(&g, false) > 0)
			quiet_since = rte_get_tsc_cycles();
		else if (rte_get_tsc_cycles() - quiet_since > hz / 4)
			break;
	}
	drained_rx = g.st[0].rx + g.st[1].rx - rx_before;
	uint64_t recovered = held + drained_rx;
	uint64_t lost = injected > recovered ? injected - recovered : 0;

	uint64_t frames = measured[0].rx + measured[1].rx;
	double mpps = elapsed > 0 ? (double)frames / elapsed / 1e6 : 0;
	double gbps = elapsed > 0 ? (double)frames * o->frame_size * 8 / elapsed / 1e9 : 0;
	char gw[RTE_ETHER_ADDR_FMT_SIZE], m0[RTE_ETHER_ADDR_FMT_SIZE], m1[RTE_ETHER_ADDR_FMT_SIZE];
	print_mac(gw, sizeof(gw), &o->gw_mac);
	print_mac(m0, sizeof(m0), &g.src_mac[0]);
	print_mac(m1, sizeof(m1), &g.src_mac[1]);
	char ip0[INET6_ADDRSTRLEN], ip1[INET6_ADDRSTRLEN];
	int af = o->family == 4 ? AF_INET : AF_INET6;
	inet_ntop(af, o->family == 4 ? (const void *)&o->ip4[0] : o->ip6[0], ip0, sizeof(ip0));
	inet_ntop(af, o->family == 4 ? (const void *)&o->ip4[1] : o->ip6[1], ip1, sizeof(ip1));

	printf("{\"tool\":\"mvirt-bench-gen\",\"family\":%u,\"frame_size\":%u,\"population\":%u,"
	       "\"burst\":%u,\"warmup_s\":%.3f,\"duration_s\":%.6f,\"frames\":%" PRIu64 ","
	       "\"mpps\":%.6f,\"gbps\":%.6f,\"lost\":%" PRIu64 ",\"recovered\":%" PRIu64 ","
	       "\"preempted\":%ld,\"oneway\":%s,\"stopped_early\":%s,\"gw_mac\":\"%s\",\"ips\":[\"%s\",\"%s\"],\"ports\":[",
	       o->family, o->frame_size, injected, o->burst, o->warmup_s, elapsed, frames, mpps,
	       gbps, lost, recovered, preempted, o->oneway ? "true" : "false", stop_requested ? "true" : "false", gw, ip0, ip1);
	for (int p = 0; p < NPORTS; p++) {
		printf("%s{\"port\":%u,\"mac\":\"%s\",\"rx\":%" PRIu64 ",\"tx\":%" PRIu64
		       ",\"foreign\":%" PRIu64 ",\"tx_full\":%" PRIu64,
		       p ? "," : "", g.port[p], p ? m1 : m0, measured[p].rx, measured[p].tx,
		       measured[p].foreign, measured[p].tx_full);
		if (o->verify)
			printf(",\"bad_csum\":%" PRIu64 ",\"bad_ttl\":%" PRIu64, measured[p].bad_csum,
			       measured[p].bad_ttl);
		printf("}");
	}
	printf("]}\n");
	fflush(stdout);
	status = stop_requested ? 3 : 0;

out_ports:
	for (int p = 0; p < NPORTS; p++) {
		struct fifo *f = &g.held[p];
		while (f->slot != NULL && f->count > 0) {
			rte_pktmbuf_free(f->slot[f->head]);
			f->head = (f->head + 1) & (f->cap - 1);
			f->count--;
		}
		rte_free(f->slot);
		f->slot = NULL;
	}
	RTE_ETH_FOREACH_DEV(pid) {
		rte_eth_dev_stop(pid);
		rte_eth_dev_close(pid);
	}
out_eal:
	rte_eal_cleanup();
	return status;
}
