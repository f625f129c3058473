/* The fuzz targets' reader of their input: little-endian integers taken from the front, zeros
 * once the input is used up (so every input is a complete, if dull, test case). */
#ifndef MVN_FUZZ_INPUT_H
#define MVN_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct input {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t take(struct input *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		uint8_t b = 0;
		if (in->n > 0) {
			b = *in->p++;
			in->n--;
		}
		v |= (uint64_t)b << (8 * i);
	}
	return v;
}

#endif
