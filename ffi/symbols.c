/* Addresses of the shim's own functions, for ffi/binding.ts. Deno.dlopen compiles a fast-call
 * trampoline for every function it binds, in every Worker, when it binds it (0.1-0.5 ms each
 * here); a function that is off the hot path is bound instead as a Deno.UnsafeFnPointer to the
 * address this returns, which compiles nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "mvnet.h"

void *mvn_symbol(const char *name)
{
	/* Only the shim's functions: dlsym on a library handle also searches its dependencies. */
	if (name == NULL || strncmp(name, "mvn_", 4) != 0)
		return NULL;
	Dl_info info;
	if (dladdr((void *)mvn_symbol, &info) == 0 || info.dli_fname == NULL)
		return NULL;
	/* The library is loaded (this code runs in it): RTLD_NOLOAD only takes a reference. */
	void *self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
	if (self == NULL)
		return NULL;
	void *p = dlsym(self, name);
	dlclose(self);
	return p;
}
