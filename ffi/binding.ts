/**
 * Typed binding of the C shim `libmvnet.so`: the only module of the project that calls
 * `Deno.dlopen`. Everything the data plane does natively (vhost-user sockets with fd passing,
 * guest memory, vrings, epoll) goes through the functions here.
 *
 * The library is looked up in `build/` next to this file: `libmvnet.so`, or
 * `libmvnet-asan.so` when `MVIRT_NET_SHIM=asan` (that variant needs libasan preloaded, see
 * `ffi/README.md`); `MVIRT_NET_SHIM_PATH` names a file explicitly.
 *
 * Functions return what the C side returns; negative numbers are `-errno`. {@link check}
 * turns those into a {@link ShimError} where a caller wants an exception. Nothing here
 * allocates per packet: bursts take caller-owned `Uint8Array`s.
 *
 * @example
 * ```ts
 * import { check, cString, native } from "./binding.ts";
 * const h = check(native().mvn_dev_create(cString("/tmp/nic.sock"), 0x525400123456n, 1500), "create");
 * ```
 * @module
 */

/** Bits of `mvn_dev_poll`'s result. */
export const PollEvents = {
  /** A frontend connects, sends a message or hangs up. */
  CONTROL: 1,
  /** The guest sent frames (a kick, or frames left from the last burst). */
  TX: 2,
  /** The guest made receive buffers available. */
  RX: 4,
  /** `mvn_dev_wake` was called: mail (or stop) for the owner's event loop. */
  WAKE: 8,
  /** `mvn_dev_notify` was called: frames in the device's inbound ring. */
  INBOUND: 16,
} as const;

/** Fields of `mvn_dev_get` / `mvn_dev_set` (enum mvn_dev_field). */
export const DevField = {
  FEATURES: 0,
  PROTOCOL_FEATURES: 1,
  STATUS: 2,
  OWNER: 3,
  MAC: 4,
  MTU: 5,
  LINK_UP: 6,
  CONNECTED: 7,
  MEM_REGIONS: 8,
  ACTIVE: 9,
  DIRECT_RX: 10,
} as const;

/** Fields of `mvn_queue_get` (enum mvn_vring_field). */
export const QueueField = {
  NUM: 0,
  LAST_AVAIL: 1,
  STARTED: 2,
  ENABLED: 3,
  RESOLVED: 4,
  READY: 5,
} as const;

/** Which eventfd `mvn_queue_set_fd` sets. */
export const QueueFd = { KICK: 0, CALL: 1, ERR: 2 } as const;

/** Counter names in the order of the native u64 array (enum mvn_counter). rx is towards the
 * guest, tx from the guest; `chain_*` count descriptor chains given back unused, by reason. */
export const COUNTER_NAMES = [
  "rx_packets",
  "rx_bytes",
  "tx_packets",
  "tx_bytes",
  "rx_drop_no_buffer",
  "rx_drop_not_ready",
  "chain_too_small",
  "rx_drop_bad_frame",
  "chain_bad_addr",
  "chain_bad_index",
  "chain_loop",
  "chain_too_long",
  "chain_frame_too_long",
  "chain_bad_indirect",
  "chain_nested_indirect",
  "chain_wrong_direction",
  "chain_empty",
  "avail_jump",
  "calls",
  "kicks",
  "rx_drop_offload",
  "rx_wait_buffer",
] as const;

/** One counter's name. */
export type CounterName = typeof COUNTER_NAMES[number];

/** Largest frame (virtio-net header excluded) either direction carries: a 65535-byte IP packet
 * (what a GSO frame may reach) behind an Ethernet header with a VLAN tag. */
export const MAX_FRAME = 65553;
/** Bytes of offload metadata before each frame of a burst: the virtio-net header without
 * num_buffers (see {@link NetHeader} in `vhost/frame_batch.ts`). */
export const META_SIZE = 10;
/** Most fds one vhost-user message carries; `mvn_dev_recv`'s fd array has one more slot. */
export const MAX_MSG_FDS = 8;

const SYMBOLS = {
  mvn_dev_create: { parameters: ["buffer", "u64", "u32"], result: "i32" },
  mvn_dev_destroy: { parameters: ["i32"], result: "i32" },
  mvn_dev_exists: { parameters: ["i32"], result: "i32" },
  mvn_dev_wake: { parameters: ["i32"], result: "i32" },
  mvn_dev_notify: { parameters: ["i32"], result: "i32" },
  mvn_dev_poll: { parameters: ["i32", "i32"], result: "i32" },
  mvn_dev_poll_ring: { parameters: ["i32", "i32", "buffer", "u32"], result: "i32" },
  mvn_dev_accept: { parameters: ["i32"], result: "i32" },
  mvn_dev_disconnect: { parameters: ["i32"], result: "i32" },
  mvn_dev_recv: { parameters: ["i32", "buffer", "u32", "buffer"], result: "i32" },
  mvn_dev_send: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  mvn_dev_backend_send: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  mvn_dev_set_backend_fd: { parameters: ["i32", "i32"], result: "i32" },
  mvn_dev_get: { parameters: ["i32", "i32"], result: "u64" },
  mvn_dev_set: { parameters: ["i32", "i32", "u64"], result: "i32" },
  mvn_dev_reset: { parameters: ["i32"], result: "i32" },
  mvn_dev_mem_set: { parameters: ["i32", "buffer", "u32", "buffer"], result: "i32" },
  mvn_dev_mem_add: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mvn_dev_mem_remove: { parameters: ["i32", "buffer"], result: "i32" },
  mvn_mem_max_regions: { parameters: [], result: "u32" },
  mvn_queue_set_num: { parameters: ["i32", "u32", "u32"], result: "i32" },
  mvn_queue_set_addr: { parameters: ["i32", "u32", "u64", "u64", "u64"], result: "i32" },
  mvn_queue_set_base: { parameters: ["i32", "u32", "u32"], result: "i32" },
  mvn_queue_stop: { parameters: ["i32", "u32"], result: "i32" },
  mvn_queue_set_fd: { parameters: ["i32", "u32", "i32", "i32"], result: "i32" },
  mvn_queue_set_enable: { parameters: ["i32", "u32", "u32"], result: "i32" },
  mvn_queue_get: { parameters: ["i32", "u32", "i32"], result: "u64" },
  mvn_dev_tx_burst: { parameters: ["i32", "buffer", "u32", "u32"], result: "i32" },
  mvn_dev_rx_burst: { parameters: ["i32", "buffer", "u32", "u32"], result: "i32" },
  mvn_dev_counters: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  mvn_fwd_tx: {
    parameters: ["i32", "buffer", "u32", "u32", "buffer", "u32", "buffer"],
    result: "i32",
  },
  mvn_fwd_rx: { parameters: ["i32", "buffer", "u32", "u32"], result: "i32" },
  mvn_fd_close: { parameters: ["i32"], result: "i32" },
  mvn_tun_open: { parameters: ["buffer"], result: "i32" },
  mvn_tun_wait: { parameters: ["i32", "i32", "i32"], result: "i32" },
  mvn_tun_read_burst: { parameters: ["i32", "buffer", "u32", "u32"], result: "i32" },
  mvn_tun_write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  mvn_eventfd_new: { parameters: [], result: "i32" },
  mvn_eventfd_signal: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const TEST_SYMBOLS = {
  mvn_test_memfd: { parameters: ["u64"], result: "i32" },
  mvn_test_mmap: { parameters: ["i32", "u64"], result: "pointer" },
  mvn_test_munmap: { parameters: ["pointer", "u64"], result: "i32" },
  mvn_test_connect: { parameters: ["buffer"], result: "i32" },
  mvn_test_socketpair: { parameters: ["buffer"], result: "i32" },
  mvn_test_send: { parameters: ["i32", "buffer", "u32", "buffer", "u32"], result: "i32" },
  mvn_test_recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  mvn_test_eventfd: { parameters: [], result: "i32" },
  mvn_test_eventfd_read: { parameters: ["i32", "i32"], result: "i64" },
  mvn_test_eventfd_write: { parameters: ["i32"], result: "i32" },
  mvn_test_close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const ALL_SYMBOLS = { ...SYMBOLS, ...TEST_SYMBOLS } as const;

/** The shim's data-plane functions, as declared in `ffi/mvnet.h`. */
export type Native = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
/** The shim's test-only functions (`mvn_test_*`, `ffi/mvnet_test.h`). */
export type NativeTest = Deno.DynamicLibrary<typeof TEST_SYMBOLS>["symbols"];

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env the defaults apply.
    return undefined;
  }
}

/** The path of the shim this process loads (see the module documentation). */
export function libraryPath(): string {
  const explicit = envVar("MVIRT_NET_SHIM_PATH");
  if (explicit) return explicit;
  const file = envVar("MVIRT_NET_SHIM") === "asan" ? "libmvnet-asan.so" : "libmvnet.so";
  return new URL(`../build/${file}`, import.meta.url).pathname;
}

/**
 * The functions a loop calls per frame or per turn, in the groups that call them: bound through
 * `Deno.dlopen` as V8 fast calls (tens of nanoseconds a call). Deno compiles a trampoline for
 * each function it binds so, in every Worker, at 0.1-0.5 ms each: with all 50 bound that way a
 * vNIC Worker took 37 ms of CPU to load, with these 31 ms, and a restore pays it once per vNIC
 * (ffi/README.md). Every other function is bound on its first use as a `Deno.UnsafeFnPointer` to
 * its address (`mvn_symbol`): about 1 microsecond a call, nothing compiled. A group is bound on
 * the first use of one of its functions, or by {@link bindFastCalls}.
 */
const FAST_CALLS = {
  /** A vNIC's loop (vhost/device.ts, actors/vnic.ts). */
  vnic: [
    "mvn_dev_poll",
    "mvn_dev_poll_ring",
    "mvn_dev_tx_burst",
    "mvn_dev_rx_burst",
    "mvn_fwd_tx",
    "mvn_fwd_rx",
    "mvn_dev_notify",
    "mvn_dev_wake",
    "mvn_dev_get",
    "mvn_eventfd_signal",
  ],
  /** The TUN actor's loop (actors/tun.ts). */
  tun: ["mvn_tun_wait", "mvn_tun_read_burst", "mvn_tun_write"],
} as const satisfies Record<string, readonly (keyof typeof SYMBOLS)[]>;

/** A group of {@link FAST_CALLS}. */
export type FastCallGroup = keyof typeof FAST_CALLS;

const RESOLVER = {
  mvn_symbol: { parameters: ["buffer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type AllNative = Deno.DynamicLibrary<typeof ALL_SYMBOLS>["symbols"];
type SymbolName = keyof typeof ALL_SYMBOLS;

let resolver: Deno.DynamicLibrary<typeof RESOLVER> | undefined;
let table: AllNative | undefined;

function dlopen<S extends Deno.ForeignLibraryInterface>(symbols: S): Deno.DynamicLibrary<S> {
  const path = libraryPath();
  try {
    // Every Worker opens the same file; the process maps it once, so all Workers share the
    // device table (which is what lets a new Worker adopt a device). Each dlopen is one more
    // reference; none is closed (the library is built with -z nodelete anyway).
    return Deno.dlopen(path, symbols);
  } catch (e) {
    throw new ShimError(
      `cannot load the C shim ${path}: ${
        (e as Error).message
      }; build it with scripts/build-shim.sh`,
      0,
    );
  }
}

function groupOf(name: SymbolName): FastCallGroup | null {
  for (const [group, names] of Object.entries(FAST_CALLS)) {
    if ((names as readonly string[]).includes(name)) return group as FastCallGroup;
  }
  return null;
}

/** Replaces the getter of `name` in the table by the function itself. */
function settle(t: AllNative, name: string, fn: unknown): void {
  Object.defineProperty(t, name, { value: fn, enumerable: true, configurable: false });
}

function bindGroup(t: AllNative, group: FastCallGroup): void {
  const names = FAST_CALLS[group];
  const lib = dlopen(Object.fromEntries(names.map((n) => [n, SYMBOLS[n]])));
  for (const n of names) settle(t, n, lib.symbols[n]);
}

function bindSlow(t: AllNative, name: SymbolName): void {
  const ptr = resolver!.symbols.mvn_symbol(cString(name));
  if (ptr === null) {
    throw new ShimError(
      `the C shim ${libraryPath()} has no function ${name}; rebuild it with scripts/build-shim.sh`,
      2,
    );
  }
  const def = ALL_SYMBOLS[name] as Deno.ForeignFunction;
  const fn = new Deno.UnsafeFnPointer(ptr as Deno.PointerObject<typeof def>, def);
  settle(t, name, (...args: never[]) => fn.call(...args));
}

function open(): AllNative {
  if (table) return table;
  // Opening the library here reports a missing or stale shim at once, not on first use.
  resolver = dlopen(RESOLVER);
  const t = {} as AllNative;
  for (const name of Object.keys(ALL_SYMBOLS) as SymbolName[]) {
    const group = groupOf(name);
    Object.defineProperty(t, name, {
      enumerable: true,
      configurable: true,
      get() {
        if (group) bindGroup(t, group);
        else bindSlow(t, name);
        return t[name];
      },
    });
  }
  table = t;
  return t;
}

/** The data-plane functions of the shim (the library is opened on first use, once per Worker). */
export function native(): Native {
  return open();
}

/** The test-only functions of the shim. */
export function nativeTest(): NativeTest {
  return open();
}

/**
 * Binds a group of fast calls now rather than on its first use: a pool Worker does it while it
 * waits for its actor (a few milliseconds), and the first frames do not pay for it.
 */
export function bindFastCalls(group: FastCallGroup): void {
  const t = open();
  const first = FAST_CALLS[group][0];
  // A group is bound all at once; it is bound if its first function is no longer a getter.
  if (Object.getOwnPropertyDescriptor(t, first)?.get) bindGroup(t, group);
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  5: "EIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  16: "EBUSY",
  17: "EEXIST",
  22: "EINVAL",
  23: "ENFILE",
  28: "ENOSPC",
  32: "EPIPE",
  36: "ENAMETOOLONG",
  90: "EMSGSIZE",
  98: "EADDRINUSE",
  107: "ENOTCONN",
  110: "ETIMEDOUT",
};

/** The symbolic name of an errno value (`-22` and `22` both give `EINVAL`). */
export function errnoName(rc: number): string {
  const n = Math.abs(rc);
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

/** A native call failed; `errno` is positive. */
export class ShimError extends Error {
  override name = "ShimError";
  constructor(message: string, readonly errno: number) {
    super(message);
  }
}

/** Returns `rc` when it is not negative, else throws a {@link ShimError} naming `op`. */
export function check(rc: number, op: string): number {
  if (rc < 0) throw new ShimError(`${op} failed: ${errnoName(rc)}`, -rc);
  return rc;
}

/** A NUL-terminated UTF-8 copy of `s` for `const char *` parameters. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** A u64 result as a bigint (Deno returns a number when it fits). */
export function u64(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}
