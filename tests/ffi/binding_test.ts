/** The FFI binding and the native device table, below the vhost protocol. */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import {
  check,
  cString,
  errnoName,
  libraryPath,
  native,
  nativeTest,
  PollEvents,
  QueueFd,
  ShimError,
} from "../../ffi/binding.ts";

function withEnv(vars: Record<string, string | undefined>, fn: () => void): void {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
    }
  };
  apply(vars);
  try {
    fn();
  } finally {
    apply(old);
  }
}

Deno.test("library path: default, ASan variant, explicit override", () => {
  withEnv({ MVIRT_NET_SHIM: undefined, MVIRT_NET_SHIM_PATH: undefined }, () => {
    assert(libraryPath().endsWith("/build/libmvnet.so"), libraryPath());
  });
  withEnv({ MVIRT_NET_SHIM: "asan", MVIRT_NET_SHIM_PATH: undefined }, () => {
    assert(libraryPath().endsWith("/build/libmvnet-asan.so"), libraryPath());
  });
  withEnv({ MVIRT_NET_SHIM_PATH: "/opt/x.so" }, () => assertEquals(libraryPath(), "/opt/x.so"));
});

Deno.test("errors carry the errno name", () => {
  assertEquals(errnoName(-22), "EINVAL");
  assertEquals(check(5, "op"), 5);
  const e = assertThrows(() => check(-2, "mvn_dev_wake"), ShimError, "mvn_dev_wake failed: ENOENT");
  assertEquals((e as ShimError).errno, 2);
  assertEquals(native().mvn_dev_wake(0x7fff_ffff), -2, "unknown handle");
  assertEquals(
    native().mvn_dev_create(cString("/tmp/" + "x".repeat(200)), 0n, 1500),
    -36,
    "ENAMETOOLONG",
  );
});

Deno.test("poll: timeout, wake, inbound notification; kick fds must be eventfds", () => {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  const n = native();
  const t = nativeTest();
  const h = check(n.mvn_dev_create(cString(`${dir}/p.sock`), 0x525400000001n, 1500), "create");
  const memfd = t.mvn_test_memfd(4096n);
  try {
    const t0 = performance.now();
    assertEquals(n.mvn_dev_poll(h, 30), 0);
    assert(performance.now() - t0 >= 25, "waited for the timeout");
    check(n.mvn_dev_wake(h), "wake");
    assertEquals(n.mvn_dev_poll(h, 1000), PollEvents.WAKE);
    assertEquals(n.mvn_dev_poll(h, 0), 0, "the wake was consumed");
    check(n.mvn_dev_notify(h), "notify");
    check(n.mvn_dev_notify(h), "notify");
    assertEquals(n.mvn_dev_poll(h, 1000), PollEvents.INBOUND, "inbound, and not mail");
    assertEquals(n.mvn_dev_poll(h, 0), 0, "both notifications consumed by one poll");
    check(n.mvn_dev_wake(h), "wake");
    check(n.mvn_dev_notify(h), "notify");
    assertEquals(n.mvn_dev_poll(h, 1000), PollEvents.WAKE | PollEvents.INBOUND);
    assertEquals(n.mvn_dev_notify(0x7fff_ffff), -2, "unknown handle");
    // A memfd is not an eventfd: refused, and the fd is closed by the shim.
    assertEquals(n.mvn_queue_set_fd(h, 0, QueueFd.KICK, memfd), -9);
    assertEquals(t.mvn_test_close(memfd), -9, "already closed by the shim");
    assertEquals(n.mvn_queue_set_fd(h, 5, QueueFd.CALL, -1), -22, "queue 5 does not exist");
  } finally {
    n.mvn_dev_destroy(h);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("device table: handles are not reused for a new device", () => {
  const dir = Deno.makeTempDirSync({ prefix: "mvnet-test-" });
  const n = native();
  try {
    const a = check(n.mvn_dev_create(cString(`${dir}/a.sock`), 1n, 1500), "create");
    n.mvn_dev_destroy(a);
    const b = check(n.mvn_dev_create(cString(`${dir}/a.sock`), 1n, 1500), "create");
    assert(a !== b, "new generation");
    assertEquals(n.mvn_dev_exists(a), 0);
    assertEquals(n.mvn_dev_exists(b), 1);
    assertEquals(n.mvn_dev_destroy(a), -2);
    n.mvn_dev_destroy(b);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("mvn_symbol: addresses of the shim's own functions only", () => {
  const lib = Deno.dlopen(libraryPath(), {
    mvn_symbol: { parameters: ["buffer"], result: "pointer" },
  });
  try {
    const at = (name: string) => lib.symbols.mvn_symbol(cString(name));
    assert(at("mvn_dev_create") !== null, "a function of the shim");
    assert(at("mvn_test_close") !== null, "a test function of the shim");
    assertEquals(at("mvn_no_such_function"), null);
    assertEquals(at("malloc"), null, "libc is a dependency, and not the shim");
    assertEquals(at(""), null);
  } finally {
    lib.close();
  }
});

Deno.test("binding: a vNIC Worker binds only its loop's fast calls; the rest on first use", async () => {
  const w = new Worker(new URL("./binding_worker.ts", import.meta.url), { type: "module" });
  try {
    const r = await new Promise<{
      before: string[];
      afterBind: string[];
      afterCall: string[];
      exists: number;
    }>((resolve, reject) => {
      w.onmessage = (e) => resolve(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
    });
    assertEquals(r.before, [], "opening the library binds nothing");
    assertEquals(r.afterBind, [
      "mvn_dev_get",
      "mvn_dev_notify",
      "mvn_dev_poll",
      "mvn_dev_poll_ring",
      "mvn_dev_rx_burst",
      "mvn_dev_tx_burst",
      "mvn_dev_wake",
      "mvn_eventfd_signal",
      "mvn_fwd_rx",
      "mvn_fwd_tx",
    ]);
    assertEquals(r.exists, 0, "a function bound through its address works");
    assertEquals(r.afterCall, [...r.afterBind, "mvn_dev_exists"].sort());
  } finally {
    w.terminate();
  }
});
