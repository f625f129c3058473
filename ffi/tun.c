/* The TUN device of public networks: open, wait (with a wake eventfd), burst read, write.
 * The fd belongs to the process; any thread may signal the wake eventfd. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "mvnet.h"

int32_t mvn_tun_open(const char *name)
{
	if (name == NULL || strlen(name) == 0 || strlen(name) >= IFNAMSIZ)
		return -EINVAL;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	/* Bare IP packets: no packet-information prefix. */
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int32_t mvn_eventfd_new(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int32_t mvn_eventfd_signal(int32_t fd)
{
	uint64_t one = 1;
	return write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

int32_t mvn_tun_wait(int32_t tun_fd, int32_t wake_fd, int32_t timeout_ms)
{
	struct pollfd p[2] = { { .fd = tun_fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
	int n = poll(p, 2, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int32_t mask = 0;
	if (p[0].revents & POLLIN)
		mask |= 1;
	if (p[1].revents & POLLIN) {
		uint64_t v;
		/* Drained: one wake stands for every signal since the last. */
		if (read(wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
		mask |= 2;
	}
	return mask;
}

int32_t mvn_tun_read_burst(int32_t fd, uint8_t *out, uint32_t cap, uint32_t max)
{
	uint32_t n = 0, off = 0;
	while (n < max && cap - off > 4) {
		ssize_t r = read(fd, out + off + 4, cap - off - 4);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return n > 0 ? (int32_t)n : -errno;
		}
		if (r == 0)
			break;
		uint32_t len = (uint32_t)r;
		memcpy(out + off, &len, 4);
		off += 4 + len;
		n++;
	}
	return (int32_t)n;
}

int32_t mvn_tun_write(int32_t fd, const uint8_t *buf, uint32_t len)
{
	ssize_t w = write(fd, buf, len);
	return w < 0 ? -errno : (int32_t)w;
}
