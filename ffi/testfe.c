/* Test-only helpers (prefix mvn_test_): what a vhost-user frontend written in TypeScript needs
 * and Deno cannot do, i.e. memfd guest memory, a connecting Unix socket with SCM_RIGHTS, and
 * eventfds. The data plane never calls these. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mvnet_test.h"

int32_t mvn_test_memfd(uint64_t size)
{
	int fd = memfd_create("mvn-test-guest", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

void *mvn_test_mmap(int32_t fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

int32_t mvn_test_munmap(void *p, uint64_t size)
{
	return munmap(p, size) == 0 ? 0 : -errno;
}

int32_t mvn_test_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int32_t mvn_test_socketpair(int32_t *out)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	out[0] = sv[0];
	out[1] = sv[1];
	return 0;
}

int32_t mvn_test_send(int32_t fd, const uint8_t *buf, uint32_t len, const int32_t *fds,
		      uint32_t nfds)
{
	union {
		char buf[CMSG_SPACE(16 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	if (nfds > 16)
		return -EINVAL;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return n == (ssize_t)len ? 0 : -EIO;
}

int32_t mvn_test_recv(int32_t fd, uint8_t *buf, uint32_t len, int32_t timeout_ms)
{
	uint32_t got = 0;
	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, timeout_ms);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0)
			return -errno;
		ssize_t n = recv(fd, buf + got, len - got, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0)
			return -errno;
		got += (uint32_t)n;
	}
	return 0;
}

int32_t mvn_test_eventfd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

int64_t mvn_test_eventfd_read(int32_t fd, int32_t timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int pr = poll(&p, 1, timeout_ms);
	if (pr <= 0)
		return pr == 0 ? 0 : -errno;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return errno == EAGAIN ? 0 : -errno;
	return (int64_t)v;
}

int32_t mvn_test_eventfd_write(int32_t fd)
{
	uint64_t one = 1;
	return write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

int32_t mvn_test_close(int32_t fd)
{
	return close(fd) == 0 ? 0 : -errno;
}
