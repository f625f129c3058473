/* The device table and everything of a device that is not ring processing: the listening and
 * connected sockets, message transport with fd passing, memory table updates, vring setup,
 * the blocking poll. See mvnet.h for the contract. */
#define _GNU_SOURCE
#include "mvnet.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "direct.h"
#include "fring.h"
#include "mem.h"
#include "vring.h"

#define MAX_DEVICES 1024u
#define SLOT_BITS 10
#define NUM_QUEUES 2u
#define RXQ 0u
#define TXQ 1u
#define MSG_HDR_SIZE 12u
/* vhost-user messages carry at most 8 fds (SET_MEM_TABLE's regions). */
#define MAX_MSG_FDS 8
/* A frontend that starts a message and stalls must not hang the data plane. */
#define IO_TIMEOUT_MS 1000
/* A loop that found frames within SPIN_WINDOW_NS looks for more for up to SPIN_NS, yielding
 * the CPU between looks, before it sleeps: with frames flowing, the next burst is usually that
 * close, and a sleep costs an eventfd write by the sender and a wake-up (in a VM, an IPI) each
 * way. An idle device never spins. */
#define SPIN_WINDOW_NS 2000000ll
#define SPIN_NS 50000ll
/* VHOST_USER_F_PROTOCOL_FEATURES: without it rings start enabled. */
#define F_PROTOCOL_FEATURES 30

enum tag { TAG_LISTEN = 1, TAG_CONN, TAG_WAKE, TAG_INBOUND, TAG_KICK0 };

struct mvn_dev {
	int32_t handle;
	/* wake_fd: mail for the owner (it must run its event loop); inbound_fd: frames in its
	 * inbound ring (it need not). Both are the device's own, signalled by handle, so that a
	 * sender holding a stale handle hits -ENOENT instead of a reused fd number. */
	int listen_fd, conn_fd, epoll_fd, wake_fd, inbound_fd, backend_fd;
	ino_t sock_ino; /* the socket file we created, so destroy never removes another's */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* 1 while the owner runs between two mvn_dev_poll_ring calls: it drains its inbound ring
	 * before it sleeps again, so mvn_dev_notify need not write inbound_fd. */
	int32_t running;
	/* When mvn_dev_poll_ring last found frames (CLOCK_MONOTONIC, ns; 0: never). */
	int64_t last_work_ns;
	/* Held by whoever delivers into the guest's receive ring: the owner, or a peer's thread
	 * delivering directly (mvn_direct_begin). The owner also holds it while it changes what
	 * such a delivery reads: the memory table, the rings, the negotiated features. */
	pthread_mutex_t rx_lock;
	uint64_t field[MVN_DEV_FIELD_COUNT];
	struct mvn_mem mem;
	struct mvn_vring vq[NUM_QUEUES];
	/* Counters of the owner's side (transmit ring, kicks) and, apart, of the receive side,
	 * written only under rx_lock: no counter word is written by two threads. */
	uint64_t ctr[MVN_CTR_COUNT];
	uint64_t rx_ctr[MVN_CTR_COUNT];
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mvn_dev *table[MAX_DEVICES];
static uint32_t next_gen = 1;

static struct mvn_dev *lookup(int32_t h)
{
	if (h <= 0)
		return NULL;
	struct mvn_dev *d = __atomic_load_n(&table[(uint32_t)h & (MAX_DEVICES - 1)], __ATOMIC_ACQUIRE);
	return d != NULL && d->handle == h ? d : NULL;
}

/* Allocations from this size up get their own mmap. glibc raises this threshold to the size of
 * any mmapped block that is freed (up to 32 MiB): after the first vNIC's 1.5 MiB inbound ring
 * (a SharedArrayBuffer) was freed, every later ring came from the brk heap instead, where calloc
 * zeroes reused memory page by page (resident although no frame touched it) and freed rings
 * leave holes that small long-lived allocations pin, so the heap never shrinks. Under vNIC
 * churn it grew by a ring per create/delete (tests/resilience/churn_memory_test.ts). Pinned
 * (mallopt turns the adjustment off), rings and frame buffers are separate mappings, resident
 * only where written and returned to the kernel when freed. */
#define MMAP_THRESHOLD_BYTES (128 * 1024)

/* Runs when the dataplane first loads the shim, before its rings are allocated (actors/fleet.ts). */
__attribute__((constructor)) static void pin_mmap_threshold(void)
{
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int ep_add(struct mvn_dev *d, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	return epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static void ep_del(struct mvn_dev *d, int fd)
{
	if (fd >= 0)
		epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

/* Frontends hand us eventfds for kick/call/err; anything else could block a read or write. */
static bool is_eventfd(int fd)
{
	char link[64], target[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static void drain(int fd)
{
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
}

/* A stale socket file (nobody accepts on it) is removed; a live one is refused. */
static int clear_stale_socket(const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(sa->sun_path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return -errno;
	int rc = connect(probe, (const struct sockaddr *)sa, sizeof(*sa));
	int err = errno;
	close(probe);
	if (rc == 0 || err == EAGAIN)
		return -EADDRINUSE;
	return unlink(sa->sun_path) == 0 ? 0 : -errno;
}

static int open_listener(struct mvn_dev *d, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int rc = clear_stale_socket(&sa);
	if (rc != 0)
		return rc;
	d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (d->listen_fd < 0)
		return -errno;
	struct stat st;
	if (bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -errno;
	if (lstat(path, &st) != 0 || listen(d->listen_fd, 1) != 0)
		return -errno;
	d->sock_ino = st.st_ino;
	strcpy(d->path, path);
	return 0;
}

static void dev_free(struct mvn_dev *d)
{
	/* A peer that found d before it left the table holds rx_lock: wait for it. */
	pthread_mutex_lock(&d->rx_lock);
	pthread_mutex_unlock(&d->rx_lock);
	pthread_mutex_destroy(&d->rx_lock);
	for (uint32_t q = 0; q < NUM_QUEUES; q++) {
		close_fd(&d->vq[q].kick_fd);
		close_fd(&d->vq[q].call_fd);
		close_fd(&d->vq[q].err_fd);
		mvn_vring_forget(&d->vq[q]);
	}
	mvn_mem_clear(&d->mem);
	close_fd(&d->conn_fd);
	close_fd(&d->backend_fd);
	close_fd(&d->listen_fd);
	close_fd(&d->epoll_fd);
	close_fd(&d->wake_fd);
	close_fd(&d->inbound_fd);
	struct stat st;
	if (d->path[0] != '\0' && lstat(d->path, &st) == 0 && st.st_ino == d->sock_ino)
		unlink(d->path);
	free(d);
}

int32_t mvn_dev_create(const char *path, uint64_t mac, uint32_t mtu)
{
	struct mvn_dev *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->listen_fd = d->conn_fd = d->backend_fd = -1;
	pthread_mutex_init(&d->rx_lock, NULL);
	for (uint32_t q = 0; q < NUM_QUEUES; q++)
		mvn_vring_init(&d->vq[q]);
	d->field[MVN_DEV_MAC] = mac & 0xffffffffffffull;
	d->field[MVN_DEV_MTU] = mtu;
	d->field[MVN_DEV_LINK_UP] = 1;
	d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	d->inbound_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	bool fds_ok = d->epoll_fd >= 0 && d->wake_fd >= 0 && d->inbound_fd >= 0;
	int rc = fds_ok ? open_listener(d, path) : -errno;
	if (rc == 0)
		rc = ep_add(d, d->listen_fd, TAG_LISTEN);
	if (rc == 0)
		rc = ep_add(d, d->wake_fd, TAG_WAKE);
	if (rc == 0)
		rc = ep_add(d, d->inbound_fd, TAG_INBOUND);
	if (rc != 0) {
		dev_free(d);
		return rc;
	}
	pthread_mutex_lock(&table_lock);
	for (uint32_t slot = 0; slot < MAX_DEVICES; slot++) {
		if (table[slot] == NULL) {
			d->handle = (int32_t)((next_gen << SLOT_BITS) | slot);
			next_gen = next_gen % (1u << (31 - SLOT_BITS)) + 1;
			__atomic_store_n(&table[slot], d, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&table_lock);
	if (d->handle == 0) {
		dev_free(d);
		return -ENFILE;
	}
	return d->handle;
}

int32_t mvn_dev_destroy(int32_t h)
{
	pthread_mutex_lock(&table_lock);
	struct mvn_dev *d = lookup(h);
	if (d != NULL)
		__atomic_store_n(&table[(uint32_t)h & (MAX_DEVICES - 1)], NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&table_lock);
	if (d == NULL)
		return -ENOENT;
	dev_free(d);
	return 0;
}

int32_t mvn_dev_exists(int32_t h)
{
	pthread_mutex_lock(&table_lock);
	int32_t r = lookup(h) != NULL;
	pthread_mutex_unlock(&table_lock);
	return r;
}

/* Writes one of a live device's own eventfds; the table lock keeps the device from being
 * freed between the lookup and the write. */
static int32_t signal_fd(int32_t h, bool inbound)
{
	pthread_mutex_lock(&table_lock);
	struct mvn_dev *d = lookup(h);
	int32_t rc = -ENOENT;
	if (d != NULL) {
		uint64_t one = 1;
		int fd = inbound ? d->inbound_fd : d->wake_fd;
		/* The frames pushed before this call are ordered before the read of `running`; the
		 * owner clears it before it looks at its ring (mvn_dev_poll_ring): one of us sees
		 * the other. A running owner needs no event (and the write and the wake-up it
		 * causes cost a system call each per burst). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (inbound && __atomic_load_n(&d->running, __ATOMIC_RELAXED))
			rc = 0;
		else
			rc = write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
	}
	pthread_mutex_unlock(&table_lock);
	return rc;
}

int32_t mvn_dev_wake(int32_t h)
{
	return signal_fd(h, false);
}

int32_t mvn_dev_notify(int32_t h)
{
	return signal_fd(h, true);
}

static bool protocol_features(const struct mvn_dev *d)
{
	return (d->field[MVN_DEV_FEATURES] >> F_PROTOCOL_FEATURES) & 1u;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Frames in the inbound ring the owner can deliver: none while they wait for the guest's
 * buffers (mvn_fwd_rx), until it adds some, which also kicks. */
static bool inbound_ready(const struct mvn_dev *d, const struct mvn_fring *r)
{
	return mvn_fring_ready(r) && mvn_vring_rx_refilled(&d->vq[RXQ]);
}

/* Frames in the guest's transmit ring or the inbound ring: what a loop that just moved frames
 * looks for before it sleeps (SPIN_NS). Returns the MVN_EV_* bits of what it found. */
static int32_t spin_for_frames(struct mvn_dev *d, const struct mvn_fring *r)
{
	int64_t now = now_ns();
	if (d->last_work_ns == 0 || now - d->last_work_ns > SPIN_WINDOW_NS)
		return 0;
	bool tx_ready = mvn_vring_ready(&d->vq[TXQ], protocol_features(d));
	for (int64_t end = now + SPIN_NS; now < end; now = now_ns()) {
		int32_t found = inbound_ready(d, r) ? (int32_t)MVN_EV_INBOUND : 0;
		if (tx_ready && mvn_vring_pending(&d->vq[TXQ]))
			found |= (int32_t)MVN_EV_TX;
		if (found != 0)
			return found;
		sched_yield();
	}
	return 0;
}

int32_t mvn_dev_poll(int32_t h, int32_t timeout_ms)
{
	return mvn_dev_poll_ring(h, timeout_ms, NULL, 0);
}

int32_t mvn_dev_poll_ring(int32_t h, int32_t timeout_ms, uint8_t *ring, uint32_t ring_len)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	struct mvn_fring r;
	bool with_ring = ring != NULL && mvn_fring_open(&r, ring, ring_len);
	int32_t mask = 0;
	__atomic_store_n(&d->running, 0, __ATOMIC_SEQ_CST);
	if (with_ring) {
		/* Pairs with the fence in signal_fd: the ring is read after `running` is clear. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (inbound_ready(d, &r)) {
			mask |= MVN_EV_INBOUND;
			timeout_ms = 0;
		}
	}
	/* Frames left in the ring after a burst produce no new kick (EVENT_IDX): report them. */
	if (mvn_vring_ready(&d->vq[TXQ], protocol_features(d)) && mvn_vring_pending(&d->vq[TXQ])) {
		mask |= MVN_EV_TX;
		timeout_ms = 0;
	}
	if (with_ring && timeout_ms != 0) {
		int32_t found = spin_for_frames(d, &r);
		if (found != 0) {
			mask |= found;
			timeout_ms = 0;
		}
	}
	struct mvn_vring *tq = &d->vq[TXQ];
	if (timeout_ms != 0 && tq->kicks_off) {
		/* About to sleep: the guest must kick again, and what it added before it could
		 * know is seen here. */
		mvn_vring_set_kicks(tq, d->field[MVN_DEV_FEATURES], true);
		if (mvn_vring_pending(tq)) {
			mask |= MVN_EV_TX;
			timeout_ms = 0;
		}
	}
	/* The guest's receive-queue kicks (it added buffers) matter only while frames in the
	 * inbound ring wait for buffers (mvn_fwd_rx turns them on then); else they would wake
	 * this loop for nothing. Off whenever nothing waits, which spares the guest a system
	 * call per refill, and this core a wake-up and two context switches per kick (15 % of
	 * the forwarding core in the guest RX benchmark). Under the receive lock: peers deliver
	 * into this ring meanwhile. */
	struct mvn_vring *rq = &d->vq[RXQ];
	if (!rq->kicks_off && !rq->waiting && mvn_vring_ready(rq, protocol_features(d))) {
		pthread_mutex_lock(&d->rx_lock);
		mvn_vring_set_kicks(rq, d->field[MVN_DEV_FEATURES], false);
		pthread_mutex_unlock(&d->rx_lock);
	}
	struct epoll_event ev[8];
	int n = epoll_wait(d->epoll_fd, ev, 8, timeout_ms);
	if (with_ring)
		__atomic_store_n(&d->running, 1, __ATOMIC_SEQ_CST);
	if (n < 0)
		return errno == EINTR ? mask : -errno;
	for (int i = 0; i < n; i++) {
		uint64_t tag = ev[i].data.u64;
		if (tag == TAG_LISTEN || tag == TAG_CONN) {
			mask |= MVN_EV_CONTROL;
		} else if (tag == TAG_WAKE) {
			drain(d->wake_fd);
			mask |= MVN_EV_WAKE;
		} else if (tag == TAG_INBOUND) {
			drain(d->inbound_fd);
			mask |= MVN_EV_INBOUND;
		} else {
			struct mvn_vring *vr = &d->vq[tag - TAG_KICK0];
			if ((ev[i].events & (EPOLLHUP | EPOLLERR)) != 0) {
				/* A dead kick fd would wake us forever; the ring stays polled. */
				ep_del(d, vr->kick_fd);
				continue;
			}
			drain(vr->kick_fd);
			d->ctr[MVN_CTR_KICKS]++;
			mask |= tag - TAG_KICK0 == TXQ ? MVN_EV_TX : MVN_EV_RX;
		}
	}
	if (with_ring && (mask & (int32_t)(MVN_EV_TX | MVN_EV_INBOUND)) != 0) {
		d->last_work_ns = now_ns();
		/* Frames flow: the loop polls the ring until it sleeps again, kicks would only cost
		 * the guest a system call per burst. */
		if (!tq->kicks_off && mvn_vring_ready(tq, protocol_features(d)))
			mvn_vring_set_kicks(tq, d->field[MVN_DEV_FEATURES], false);
	}
	return mask;
}

int32_t mvn_dev_accept(int32_t h)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (d->conn_fd >= 0)
		return 0;
	int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = TAG_CONN };
	if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	/* One frontend at a time: the next waits in the backlog until this one leaves. */
	ep_del(d, d->listen_fd);
	d->conn_fd = fd;
	return 1;
}

/* Rings back to unconfigured; with all=true also the frontend's eventfds. */
static void rings_reset(struct mvn_dev *d, bool all)
{
	for (uint32_t q = 0; q < NUM_QUEUES; q++) {
		struct mvn_vring *vr = &d->vq[q];
		ep_del(d, vr->kick_fd);
		close_fd(&vr->kick_fd);
		if (all) {
			close_fd(&vr->call_fd);
			close_fd(&vr->err_fd);
		}
		mvn_vring_forget(vr);
	}
}

static int32_t dev_disconnect_locked(int32_t h)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (d->conn_fd >= 0) {
		ep_del(d, d->conn_fd);
		close_fd(&d->conn_fd);
		ep_add(d, d->listen_fd, TAG_LISTEN);
	}
	close_fd(&d->backend_fd);
	rings_reset(d, true);
	mvn_mem_clear(&d->mem);
	d->field[MVN_DEV_FEATURES] = 0;
	d->field[MVN_DEV_PROTOCOL_FEATURES] = 0;
	d->field[MVN_DEV_STATUS] = 0;
	d->field[MVN_DEV_OWNER] = 0;
	d->field[MVN_DEV_ACTIVE] = 0;
	return 0;
}

static int32_t dev_reset_locked(int32_t h)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	rings_reset(d, false);
	d->field[MVN_DEV_STATUS] = 0;
	return 0;
}

/* Reads exactly n bytes, waiting at most IO_TIMEOUT_MS for each piece. */
static int read_full(int fd, uint8_t *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
		if (r > 0) {
			buf += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, IO_TIMEOUT_MS);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t n)
{
	while (n > 0) {
		/* MSG_NOSIGNAL: a frontend that went away must not SIGPIPE the data plane. */
		ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int pr = poll(&p, 1, IO_TIMEOUT_MS);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

static void close_received(int32_t *fds)
{
	for (int32_t i = 1; i <= fds[0]; i++)
		close(fds[i]);
	fds[0] = 0;
}

int32_t mvn_dev_recv(int32_t h, uint8_t *buf, uint32_t cap, int32_t *fds)
{
	struct mvn_dev *d = lookup(h);
	fds[0] = 0;
	if (d == NULL)
		return -ENOENT;
	if (d->conn_fd < 0)
		return -ENOTCONN;
	if (cap < MSG_HDR_SIZE)
		return -EINVAL;
	union {
		char buf[CMSG_SPACE(MAX_MSG_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = MSG_HDR_SIZE };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	ssize_t n = recvmsg(d->conn_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fds[0] < MAX_MSG_FDS)
				fds[++fds[0]] = fd;
			else
				close(fd);
		}
	}
	int rc = 0;
	if ((msg.msg_flags & MSG_CTRUNC) != 0)
		rc = -EMSGSIZE;
	if (rc == 0 && (size_t)n < MSG_HDR_SIZE)
		rc = read_full(d->conn_fd, buf + n, MSG_HDR_SIZE - (size_t)n);
	uint32_t size = 0;
	if (rc == 0) {
		memcpy(&size, buf + 8, sizeof(size));
		if (size > cap - MSG_HDR_SIZE)
			rc = -EMSGSIZE;
	}
	if (rc == 0)
		rc = read_full(d->conn_fd, buf + MSG_HDR_SIZE, size);
	if (rc != 0) {
		close_received(fds);
		return rc;
	}
	return (int32_t)(MSG_HDR_SIZE + size);
}

int32_t mvn_dev_send(int32_t h, const uint8_t *buf, uint32_t len)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (d->conn_fd < 0)
		return -ENOTCONN;
	return write_full(d->conn_fd, buf, len);
}

int32_t mvn_dev_backend_send(int32_t h, const uint8_t *buf, uint32_t len)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (d->backend_fd < 0)
		return -ENOTCONN;
	return write_full(d->backend_fd, buf, len);
}

int32_t mvn_dev_set_backend_fd(int32_t h, int32_t fd)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -ENOENT;
	}
	close_fd(&d->backend_fd);
	d->backend_fd = fd;
	return 0;
}

uint64_t mvn_dev_get(int32_t h, int32_t field)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL || field < 0 || field >= MVN_DEV_FIELD_COUNT)
		return 0;
	if (field == MVN_DEV_CONNECTED)
		return d->conn_fd >= 0;
	if (field == MVN_DEV_MEM_REGIONS)
		return d->mem.n;
	return d->field[field];
}

static int32_t dev_set_locked(int32_t h, int32_t field, uint64_t value)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (field < 0 || field >= MVN_DEV_FIELD_COUNT || field == MVN_DEV_CONNECTED ||
	    field == MVN_DEV_MEM_REGIONS)
		return -EINVAL;
	d->field[field] = value;
	return 0;
}

static void resolve_rings(struct mvn_dev *d)
{
	for (uint32_t q = 0; q < NUM_QUEUES; q++)
		mvn_vring_resolve(&d->vq[q], &d->mem);
}

static void region_decode(struct mvn_region *r, const uint8_t *p)
{
	memset(r, 0, sizeof(*r));
	memcpy(&r->gpa, p, 8);
	memcpy(&r->size, p + 8, 8);
	memcpy(&r->uva, p + 16, 8);
	memcpy(&r->mmap_offset, p + 24, 8);
}

static int32_t dev_mem_set_locked(int32_t h, const uint8_t *regions, uint32_t n, const int32_t *fds)
{
	struct mvn_dev *d = lookup(h);
	int32_t rc = d == NULL ? -ENOENT : n > MVN_MAX_REGIONS ? -E2BIG : 0;
	struct mvn_mem next = { .n = 0 };
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		struct mvn_region r;
		region_decode(&r, regions + 32 * (size_t)i);
		rc = mvn_region_check(&r);
		if (rc == 0 && mvn_mem_overlaps(&next, &r))
			rc = -EINVAL;
		if (rc == 0)
			rc = mvn_region_map(&r, fds[i]);
		if (rc == 0)
			next.r[next.n++] = r;
	}
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
	if (rc != 0) {
		mvn_mem_clear(&next);
		return rc;
	}
	/* Safe while running: ring pointers are re-resolved below before any further use, and
	 * no other thread touches guest memory. */
	mvn_mem_clear(&d->mem);
	d->mem = next;
	resolve_rings(d);
	return 0;
}

static int32_t dev_mem_add_locked(int32_t h, const uint8_t *region, int32_t fd)
{
	struct mvn_dev *d = lookup(h);
	struct mvn_region r;
	region_decode(&r, region);
	int32_t rc = d == NULL ? -ENOENT : mvn_region_check(&r);
	if (rc == 0 && d->mem.n >= MVN_MAX_REGIONS)
		rc = -ENOSPC;
	if (rc == 0 && mvn_mem_overlaps(&d->mem, &r))
		rc = -EEXIST;
	if (rc == 0)
		rc = mvn_region_map(&r, fd);
	close(fd);
	if (rc != 0)
		return rc;
	d->mem.r[d->mem.n++] = r;
	resolve_rings(d);
	return 0;
}

static int32_t dev_mem_remove_locked(int32_t h, const uint8_t *region)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	struct mvn_region r;
	region_decode(&r, region);
	for (uint32_t i = 0; i < d->mem.n; i++) {
		if (d->mem.r[i].gpa != r.gpa || d->mem.r[i].size != r.size)
			continue;
		mvn_region_unmap(&d->mem.r[i]);
		d->mem.r[i] = d->mem.r[--d->mem.n];
		resolve_rings(d);
		return 0;
	}
	return -ENOENT;
}

uint32_t mvn_mem_max_regions(void)
{
	return MVN_MAX_REGIONS;
}

static struct mvn_vring *vring_of(int32_t h, uint32_t q, struct mvn_dev **dp)
{
	struct mvn_dev *d = lookup(h);
	if (dp != NULL)
		*dp = d;
	return d != NULL && q < NUM_QUEUES ? &d->vq[q] : NULL;
}

static int32_t queue_set_num_locked(int32_t h, uint32_t q, uint32_t num)
{
	struct mvn_dev *d;
	struct mvn_vring *vr = vring_of(h, q, &d);
	if (vr == NULL)
		return -EINVAL;
	if (vr->started)
		return -EBUSY;
	int rc = mvn_vring_set_num(vr, num);
	mvn_vring_resolve(vr, &d->mem);
	return rc;
}

static int32_t queue_set_addr_locked(int32_t h, uint32_t q, uint64_t desc, uint64_t used, uint64_t avail)
{
	struct mvn_dev *d;
	struct mvn_vring *vr = vring_of(h, q, &d);
	if (vr == NULL)
		return -EINVAL;
	if (desc % 16 != 0 || avail % 2 != 0 || used % 4 != 0)
		return -EINVAL;
	vr->desc_uva = desc;
	vr->used_uva = used;
	vr->avail_uva = avail;
	vr->addr_set = true;
	mvn_vring_resolve(vr, &d->mem);
	return 0;
}

static int32_t queue_set_base_locked(int32_t h, uint32_t q, uint32_t base)
{
	struct mvn_vring *vr = vring_of(h, q, NULL);
	if (vr == NULL || base > 0xffff)
		return -EINVAL;
	if (vr->started)
		return -EBUSY;
	/* Everything before base was completed by whoever ran the ring before us. */
	vr->last_avail = (uint16_t)base;
	vr->used_idx = (uint16_t)base;
	vr->broken = false;
	return 0;
}

static int32_t queue_stop_locked(int32_t h, uint32_t q)
{
	struct mvn_dev *d;
	struct mvn_vring *vr = vring_of(h, q, &d);
	if (vr == NULL)
		return -EINVAL;
	vr->started = false;
	ep_del(d, vr->kick_fd);
	close_fd(&vr->kick_fd);
	return vr->last_avail;
}

static int32_t queue_set_fd_locked(int32_t h, uint32_t q, int32_t which, int32_t fd)
{
	struct mvn_dev *d;
	struct mvn_vring *vr = vring_of(h, q, &d);
	int32_t rc = vr == NULL ? -EINVAL : 0;
	if (rc == 0 && fd >= 0 && !is_eventfd(fd))
		rc = -EBADF;
	if (rc == 0 && which == MVN_FD_KICK) {
		ep_del(d, vr->kick_fd);
		close_fd(&vr->kick_fd);
		if (fd >= 0)
			rc = ep_add(d, fd, TAG_KICK0 + q);
		if (rc == 0) {
			vr->kick_fd = fd;
			vr->started = true;
			mvn_vring_resolve(vr, &d->mem);
		}
	} else if (rc == 0 && which == MVN_FD_CALL) {
		close_fd(&vr->call_fd);
		vr->call_fd = fd;
	} else if (rc == 0 && which == MVN_FD_ERR) {
		close_fd(&vr->err_fd);
		vr->err_fd = fd;
	} else if (rc == 0) {
		rc = -EINVAL;
	}
	if (rc != 0 && fd >= 0)
		close(fd);
	return rc;
}

static int32_t queue_set_enable_locked(int32_t h, uint32_t q, uint32_t enable)
{
	struct mvn_vring *vr = vring_of(h, q, NULL);
	if (vr == NULL)
		return -EINVAL;
	vr->enabled = enable != 0;
	return 0;
}

uint64_t mvn_queue_get(int32_t h, uint32_t q, int32_t field)
{
	struct mvn_dev *d;
	struct mvn_vring *vr = vring_of(h, q, &d);
	if (vr == NULL)
		return 0;
	switch (field) {
	case MVN_VRING_NUM:
		return vr->num;
	case MVN_VRING_LAST_AVAIL:
		return vr->last_avail;
	case MVN_VRING_STARTED:
		return vr->started;
	case MVN_VRING_ENABLED:
		return vr->enabled;
	case MVN_VRING_RESOLVED:
		return vr->desc != NULL;
	case MVN_VRING_READY:
		return mvn_vring_ready(vr, protocol_features(d));
	default:
		return 0;
	}
}

int32_t mvn_dev_tx_gather(int32_t h, uint8_t *out, uint32_t cap, uint32_t max,
			  struct mvn_frame_src *src, int32_t *held)
{
	*held = -1;
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (!mvn_vring_ready(&d->vq[TXQ], protocol_features(d)))
		return 0;
	struct mvn_vring_env env = { .mem = &d->mem, .features = d->field[MVN_DEV_FEATURES],
				     .ctr = d->ctr };
	uint16_t old_used;
	uint32_t n = mvn_vring_tx_gather(&d->vq[TXQ], &env, out, cap, max, src, &old_used);
	*held = old_used;
	return (int32_t)n;
}

void mvn_dev_tx_release(int32_t h, int32_t held)
{
	struct mvn_dev *d = held < 0 ? NULL : lookup(h);
	if (d == NULL)
		return;
	struct mvn_vring_env env = { .mem = &d->mem, .features = d->field[MVN_DEV_FEATURES],
				     .ctr = d->ctr };
	mvn_vring_tx_release(&d->vq[TXQ], &env, (uint16_t)held);
}

int32_t mvn_dev_tx_burst(int32_t h, uint8_t *out, uint32_t cap, uint32_t max)
{
	int32_t held;
	int32_t n = mvn_dev_tx_gather(h, out, cap, max, NULL, &held);
	mvn_dev_tx_release(h, held);
	return n;
}

static int32_t dev_rx_burst_locked(int32_t h, const uint8_t *in, uint32_t len, uint32_t count)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	if (!mvn_vring_ready(&d->vq[RXQ], protocol_features(d))) {
		d->rx_ctr[MVN_CTR_RX_DROP_NOT_READY] += count;
		return 0;
	}
	struct mvn_vring_env env = { .mem = &d->mem, .features = d->field[MVN_DEV_FEATURES],
				     .ctr = d->rx_ctr };
	return (int32_t)mvn_vring_rx_burst(&d->vq[RXQ], &env, in, len, count);
}

int32_t mvn_dev_counters(int32_t h, uint64_t *out, uint32_t n)
{
	pthread_mutex_lock(&table_lock);
	struct mvn_dev *d = lookup(h);
	/* Racy reads of words other threads increment: each is a whole aligned u64. */
	for (uint32_t i = 0; d != NULL && i < n && i < MVN_CTR_COUNT; i++)
		out[i] = d->ctr[i] + d->rx_ctr[i];
	pthread_mutex_unlock(&table_lock);
	return d == NULL ? -ENOENT : MVN_CTR_COUNT;
}

int32_t mvn_fd_close(int32_t fd)
{
	return close(fd) == 0 ? 0 : -errno;
}

static int32_t fwd_rx_locked(int32_t h, uint8_t *ring, uint32_t ring_len, uint32_t max)
{
	struct mvn_dev *d = lookup(h);
	if (d == NULL)
		return -ENOENT;
	struct mvn_fring r;
	if (!mvn_fring_open(&r, ring, ring_len))
		return -EINVAL;
	/* Frames for a receive queue that is not up are the caller's to drop and count. */
	if (!mvn_vring_ready(&d->vq[RXQ], protocol_features(d)))
		return mvn_fring_ready(&r) ? MVN_FWD_RX_REST : 0;
	struct mvn_vring_env env = { .mem = &d->mem, .features = d->field[MVN_DEV_FEATURES],
				     .ctr = d->rx_ctr };
	struct mvn_vring *rq = &d->vq[RXQ];
	int32_t taken = 0;
	for (int pass = 0;; pass++) {
		struct mvn_rx_batch b;
		mvn_vring_rx_start(rq, &env, &b);
		bool dry = false, rest = false;
		while ((uint32_t)taken < max) {
			const uint8_t *meta, *frame;
			uint32_t len;
			if (mvn_fring_peek(&r, &meta, &frame, &len) != 1)
				break;
			/* A frame with offloads this guest did not negotiate must be adapted:
			 * TypeScript does that (vhost/receive.ts), from this frame on. */
			if (!mvn_vring_rx_accepts(meta, env.features)) {
				rest = true;
				break;
			}
			if (mvn_vring_rx_offer(rq, &env, &b, meta, frame, len) == MVN_RX_NO_BUFFER) {
				dry = true;
				break;
			}
			mvn_fring_release(&r, len);
			taken++;
		}
		mvn_vring_rx_finish(rq, &env, &b);
		if (!dry) {
			rq->waiting = false;
			return taken | (rest ? MVN_FWD_RX_REST : 0);
		}
		/* The guest has no buffer for the frame at the head: it stays in the ring, as a
		 * tap's queue keeps it, until the guest adds buffers and kicks. The ring is bounded:
		 * once it is full, senders count route_drop_peer_ring_full. */
		if (!rq->waiting)
			d->rx_ctr[MVN_CTR_RX_WAIT_BUFFER]++;
		if (!mvn_vring_rx_wait(rq, env.features) || pass > 0)
			return taken | MVN_FWD_RX_HELD;
	}
}

/* The owner's calls that change what a delivery into the guest reads, and its own deliveries,
 * run under rx_lock (see struct mvn_dev). */
#define UNDER_RX_LOCK(h, call)                                                                   \
	do {                                                                                     \
		struct mvn_dev *d_ = lookup(h);                                                  \
		if (d_ == NULL)                                                                  \
			return -ENOENT;                                                          \
		pthread_mutex_lock(&d_->rx_lock);                                                \
		int32_t r_ = (call);                                                             \
		pthread_mutex_unlock(&d_->rx_lock);                                              \
		return r_;                                                                       \
	} while (0)

int32_t mvn_dev_disconnect(int32_t h)
{
	UNDER_RX_LOCK(h, dev_disconnect_locked(h));
}

int32_t mvn_dev_reset(int32_t h)
{
	UNDER_RX_LOCK(h, dev_reset_locked(h));
}

int32_t mvn_dev_set(int32_t h, int32_t field, uint64_t value)
{
	UNDER_RX_LOCK(h, dev_set_locked(h, field, value));
}

int32_t mvn_dev_mem_set(int32_t h, const uint8_t *regions, uint32_t n, const int32_t *fds)
{
	UNDER_RX_LOCK(h, dev_mem_set_locked(h, regions, n, fds));
}

int32_t mvn_dev_mem_add(int32_t h, const uint8_t *region, int32_t fd)
{
	UNDER_RX_LOCK(h, dev_mem_add_locked(h, region, fd));
}

int32_t mvn_dev_mem_remove(int32_t h, const uint8_t *region)
{
	UNDER_RX_LOCK(h, dev_mem_remove_locked(h, region));
}

int32_t mvn_queue_set_num(int32_t h, uint32_t q, uint32_t num)
{
	UNDER_RX_LOCK(h, queue_set_num_locked(h, q, num));
}

int32_t mvn_queue_set_addr(int32_t h, uint32_t q, uint64_t desc, uint64_t used, uint64_t avail)
{
	UNDER_RX_LOCK(h, queue_set_addr_locked(h, q, desc, used, avail));
}

int32_t mvn_queue_set_base(int32_t h, uint32_t q, uint32_t base)
{
	UNDER_RX_LOCK(h, queue_set_base_locked(h, q, base));
}

int32_t mvn_queue_stop(int32_t h, uint32_t q)
{
	UNDER_RX_LOCK(h, queue_stop_locked(h, q));
}

int32_t mvn_queue_set_fd(int32_t h, uint32_t q, int32_t which, int32_t fd)
{
	UNDER_RX_LOCK(h, queue_set_fd_locked(h, q, which, fd));
}

int32_t mvn_queue_set_enable(int32_t h, uint32_t q, uint32_t enable)
{
	UNDER_RX_LOCK(h, queue_set_enable_locked(h, q, enable));
}

int32_t mvn_dev_rx_burst(int32_t h, const uint8_t *in, uint32_t len, uint32_t count)
{
	UNDER_RX_LOCK(h, dev_rx_burst_locked(h, in, len, count));
}

int32_t mvn_fwd_rx(int32_t h, uint8_t *ring, uint32_t ring_len, uint32_t max)
{
	UNDER_RX_LOCK(h, fwd_rx_locked(h, ring, ring_len, max));
}

bool mvn_direct_begin(struct mvn_direct *x, int32_t h)
{
	pthread_mutex_lock(&table_lock);
	struct mvn_dev *d = lookup(h);
	/* Never wait for the owner: it may be changing its memory table. The caller falls back
	 * to the device's inbound ring. */
	bool locked = d != NULL && pthread_mutex_trylock(&d->rx_lock) == 0;
	pthread_mutex_unlock(&table_lock);
	if (!locked)
		return false;
	if (d->field[MVN_DEV_DIRECT_RX] == 0 ||
	    !mvn_vring_ready(&d->vq[RXQ], protocol_features(d))) {
		pthread_mutex_unlock(&d->rx_lock);
		return false;
	}
	x->dev = d;
	x->env = (struct mvn_vring_env){ .mem = &d->mem,
					 .features = d->field[MVN_DEV_FEATURES],
					 .ctr = d->rx_ctr };
	mvn_vring_rx_start(&d->vq[RXQ], &x->env, &x->batch);
	return true;
}

bool mvn_direct_accepts(const struct mvn_direct *x, const uint8_t *meta)
{
	return mvn_vring_rx_accepts(meta, x->env.features);
}

bool mvn_direct_put(struct mvn_direct *x, const uint8_t *meta, const uint8_t *frame,
		    uint32_t len)
{
	return mvn_vring_rx_offer(&x->dev->vq[RXQ], &x->env, &x->batch, meta, frame, len) !=
	       MVN_RX_NO_BUFFER;
}

bool mvn_direct_put_src(struct mvn_direct *x, const uint8_t *meta,
			const struct mvn_frame_src *fs, uint32_t len)
{
	return mvn_vring_rx_offer_src(&x->dev->vq[RXQ], &x->env, &x->batch, meta, fs, len) !=
	       MVN_RX_NO_BUFFER;
}

void mvn_direct_end(struct mvn_direct *x)
{
	mvn_vring_rx_finish(&x->dev->vq[RXQ], &x->env, &x->batch);
	pthread_mutex_unlock(&x->dev->rx_lock);
	x->dev = NULL;
}
