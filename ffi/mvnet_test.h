/* Test-only helpers of libmvnet.so (see testfe.c). */
#ifndef MVN_MVNET_TEST_H
#define MVN_MVNET_TEST_H

#include <stdint.h>

/* A memfd of size bytes (guest RAM of a test frontend). fd or -errno. */
int32_t mvn_test_memfd(uint64_t size);
void *mvn_test_mmap(int32_t fd, uint64_t size);
int32_t mvn_test_munmap(void *p, uint64_t size);
/* A blocking Unix stream socket connected to path. fd or -errno. */
int32_t mvn_test_connect(const char *path);
/* A connected pair of Unix stream sockets into out[0], out[1]. */
int32_t mvn_test_socketpair(int32_t *out);
/* Sends buf whole in one sendmsg, with nfds fds as SCM_RIGHTS. */
int32_t mvn_test_send(int32_t fd, const uint8_t *buf, uint32_t len, const int32_t *fds,
		      uint32_t nfds);
/* Receives exactly len bytes or fails after timeout_ms without data (-ETIMEDOUT). */
int32_t mvn_test_recv(int32_t fd, uint8_t *buf, uint32_t len, int32_t timeout_ms);
int32_t mvn_test_eventfd(void);
/* The eventfd's counter (reset to 0), 0 when nothing arrived within timeout_ms. */
int64_t mvn_test_eventfd_read(int32_t fd, int32_t timeout_ms);
int32_t mvn_test_eventfd_write(int32_t fd);
int32_t mvn_test_close(int32_t fd);

#endif
