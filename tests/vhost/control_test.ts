/** The vhost-user control path over a real socket: negotiation, refusals, malformed
 * messages, memory table changes, ring stop/restart, resets and reconnects. */
import { assert, assertEquals, assertThrows } from "../assert.ts";
import { DevField, native, nativeTest, ShimError, u64 } from "../../ffi/binding.ts";
import { FrameBatch, VhostNetDevice } from "../../vhost/device.ts";
import { OFFERED_FEATURES, OFFERED_PROTOCOL_FEATURES } from "../../vhost/backend.ts";
import {
  bit,
  configPayload,
  encodeMessage,
  Feature,
  memTablePayload,
  ProtocolFeature,
  Request,
  u64Payload,
  vringFilePayload,
} from "../../vhost/protocol.ts";
import { testFrame, TXQ } from "../harness/frontend.ts";
import { exists } from "../../bench/lib/proc.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES, rig, running, TEST_MAC } from "../harness/setup.ts";

const ACK = bit(ProtocolFeature.REPLY_ACK);
const FRAME = testFrame(120, 3);

function roundTrip(r: ReturnType<typeof rig>, fe: ReturnType<ReturnType<typeof rig>["connect"]>) {
  fe.sendFrame(FRAME);
  const batch = new FrameBatch(8);
  assertEquals(r.dev.receiveBurst(batch), 1, "frame from the guest");
  assertEquals(batch.frame(0), FRAME);
  assert(fe.rings[TXQ].takeUsed().length >= 1, "TX chain returned");
  fe.postRx(1, 2048);
  assertEquals(r.dev.sendBurst([FRAME]), 1, "frame to the guest");
  assertEquals(fe.readRx().map((x) => x.frame), [FRAME]);
}

Deno.test("features offered and accepted as negotiated", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    assertEquals(fe.requestU64(Request.GET_FEATURES), OFFERED_FEATURES);
    assertEquals(fe.requestU64(Request.GET_PROTOCOL_FEATURES), OFFERED_PROTOCOL_FEATURES);
    assertEquals(u64(native().mvn_dev_get(r.dev.handle, DevField.FEATURES)), ALL_FEATURES);
    assertEquals(fe.requestU64(Request.GET_MAX_MEM_SLOTS), 32n);
    assertEquals(fe.requestU64(Request.GET_QUEUE_NUM), 1n);
    assertEquals(fe.requestU64(Request.GET_STATUS), 0xfn);
    assertEquals(r.transitions.map((t) => t.kind), ["connected", "driver_ok"]);
  } finally {
    r.close();
  }
});

Deno.test("a refused request is acked with failure under REPLY_ACK and the device goes on", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ACK });
  try {
    assertEquals(fe.requestAck(Request.SET_FEATURES, u64Payload(bit(40))), 1n);
    assertEquals(fe.requestAck(Request.SET_FEATURES, u64Payload(ALL_FEATURES)), 0n);
    roundTrip(r, fe);
  } finally {
    r.close();
  }
});

Deno.test("a refused request without REPLY_ACK disconnects with an error; the next VMM starts fresh", () => {
  const r = rig();
  try {
    const fe = r.connect();
    fe.request(Request.SET_FEATURES, u64Payload(bit(40)));
    const err = r.transitions.find((t) => t.kind === "error");
    assert(
      err && err.kind === "error" && err.reason.includes("not offered"),
      JSON.stringify(r.transitions),
    );
    assertEquals(r.dev.connected, false);
    const fe2 = r.connect();
    assertEquals(u64(native().mvn_dev_get(r.dev.handle, DevField.FEATURES)), 0n);
    fe2.negotiate({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
    roundTrip(r, fe2);
  } finally {
    r.close();
  }
});

for (
  const [title, bytes, fds, reason] of [
    ["unknown request", encodeMessage(99, 0, new Uint8Array(0)), 0, "not supported"],
    [
      "wrong payload size",
      encodeMessage(Request.SET_FEATURES, 0, new Uint8Array(4)),
      0,
      "expected 8",
    ],
    [
      "kick without fd",
      encodeMessage(Request.SET_VRING_KICK, 0, vringFilePayload(0, false)),
      0,
      "expected 1 fds",
    ],
    [
      "fd where none belongs",
      encodeMessage(Request.SET_OWNER, 0, new Uint8Array(0)),
      1,
      "expected 0 fds",
    ],
    [
      "bad version",
      (() => {
        const m = encodeMessage(Request.SET_OWNER, 0, new Uint8Array(0));
        m[4] = 2;
        return m;
      })(),
      0,
      "unsupported version",
    ],
    [
      "nine regions",
      encodeMessage(
        Request.SET_MEM_TABLE,
        0,
        memTablePayload(
          Array(9).fill({
            guestPhysAddr: 0n,
            memorySize: 4096n,
            userspaceAddr: 0n,
            mmapOffset: 0n,
          }),
        ),
      ),
      0,
      "at most 8",
    ],
    [
      "oversized message",
      (() => {
        const m = encodeMessage(Request.SET_OWNER, 0, new Uint8Array(0));
        new DataView(m.buffer).setUint32(8, 1 << 20, true);
        return m;
      })(),
      0,
      "EMSGSIZE",
    ],
    [
      "vring index out of range",
      encodeMessage(Request.SET_VRING_NUM, 0, new Uint8Array([7, 0, 0, 0, 0, 1, 0, 0])),
      0,
      "queue 7",
    ],
  ] as const
) {
  Deno.test(`malformed message (${title}): error, clean disconnect, fresh next connection`, () => {
    const r = rig();
    try {
      const fe = r.connect();
      fe.negotiate({ features: ALL_FEATURES });
      const efd = nativeTest().mvn_test_eventfd();
      fe.sendRaw(bytes, fds ? [efd] : []);
      nativeTest().mvn_test_close(efd);
      const last = r.transitions[r.transitions.length - 1];
      assert(last.kind === "error" && last.reason.includes(reason), JSON.stringify(last));
      assertEquals(r.dev.connected, false);
      assertEquals(r.dev.driverReady, false);
      // The old connection is closed: reading from it ends.
      assert(nativeTest().mvn_test_recv(fe.fd, new Uint8Array(1), 1, 1000) < 0, "socket closed");
      const fe2 = r.connect();
      assertEquals(
        u64(native().mvn_dev_get(r.dev.handle, DevField.MEM_REGIONS)),
        0n,
        "fresh state",
      );
      fe2.negotiate({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
      roundTrip(r, fe2);
    } finally {
      r.close();
    }
  });
}

Deno.test("a message arriving in two pieces is read whole", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const m = encodeMessage(Request.GET_CONFIG, 0, configPayload(0, new Uint8Array(12)));
    const t = nativeTest();
    t.mvn_test_send(fe.fd, m.subarray(0, 5) as Uint8Array<ArrayBuffer>, 5, new Int32Array(1), 0);
    setTimeout(
      () =>
        t.mvn_test_send(
          fe.fd,
          m.subarray(5) as Uint8Array<ArrayBuffer>,
          m.length - 5,
          new Int32Array(1),
          0,
        ),
      0,
    );
    // The backend waits (bounded) for the rest; send it from a timer after pumping starts.
    return new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        try {
          r.pump();
          const reply = fe.readReply(Request.GET_CONFIG);
          assertEquals(Array.from(reply.subarray(12, 18)), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
          resolve();
        } catch (e) {
          reject(e);
        } finally {
          r.close();
        }
      }, 20);
    });
  } catch (e) {
    r.close();
    throw e;
  }
});

Deno.test("config space: MAC, link status, MTU; link change notifies the frontend", () => {
  const { r, fe } = running(
    { features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES },
    9000,
  );
  try {
    const get = () =>
      fe.request(Request.GET_CONFIG, configPayload(0, new Uint8Array(12)), { reply: true })!
        .subarray(12);
    const c = get();
    assertEquals(Array.from(c.subarray(0, 6)), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const v = new DataView(c.buffer, c.byteOffset);
    assertEquals([v.getUint16(6, true), v.getUint16(8, true), v.getUint16(10, true)], [1, 1, 9000]);
    fe.openBackendChannel();
    assertEquals(r.dev.setLinkUp(false), true, "notification sent");
    assertEquals(fe.readBackendRequest(), 2, "CONFIG_CHANGE_MSG");
    const down = get();
    assertEquals(new DataView(down.buffer, down.byteOffset).getUint16(6, true), 0, "link down");
    assertEquals(
      fe.requestAck(Request.SET_CONFIG, configPayload(6, new Uint8Array(2))),
      1n,
      "status is read-only",
    );
    assertEquals(
      fe.requestAck(Request.SET_CONFIG, configPayload(0, new Uint8Array([2, 0, 0, 0, 0, 9]))),
      0n,
    );
    assertEquals(Array.from(get().subarray(0, 6)), [2, 0, 0, 0, 0, 9]);
  } finally {
    r.close();
  }
});

Deno.test("SET_MEM_TABLE while running: remapped memory, traffic continues", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    roundTrip(r, fe);
    fe.setMemTable();
    roundTrip(r, fe);
    // A table without the region of the rings: the rings stop moving, nothing crashes.
    fe.request(Request.SET_MEM_TABLE, memTablePayload([fe.mem.regions[1].describe()]), {
      fds: [fe.mem.regions[1].fd],
      needReply: true,
    });
    fe.sendFrame(FRAME);
    assertEquals(r.dev.receiveBurst(new FrameBatch(4)), 0);
    fe.setMemTable();
    assertEquals(r.dev.receiveBurst(new FrameBatch(4)), 1, "the frame waiting in the ring");
    roundTrip(r, fe);
  } finally {
    r.close();
  }
});

Deno.test("ADD_MEM_REG / REM_MEM_REG", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const extra = fe.mem.grow(0x10000);
    assertEquals(fe.addRegion(extra), 0n);
    assertEquals(u64(native().mvn_dev_get(r.dev.handle, DevField.MEM_REGIONS)), 3n);
    assertEquals(fe.addRegion(extra), 1n, "overlapping region refused");
    fe.sendFrame(FRAME, { at: extra.gpa + 64 });
    const batch = new FrameBatch(4);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(batch.frame(0), FRAME);
    assertEquals(fe.removeRegion(extra), 0n);
    assertEquals(fe.removeRegion(extra), 1n, "already removed");
    fe.sendFrame(FRAME, { at: extra.gpa + 64 });
    assertEquals(r.dev.receiveBurst(batch), 0);
    assertEquals(r.dev.counters().chain_bad_addr, 1);
    roundTrip(r, fe);
  } finally {
    r.close();
  }
});

Deno.test("GET_VRING_BASE stops a ring; restarting at that base continues", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    for (let i = 0; i < 3; i++) roundTrip(r, fe);
    assertEquals(fe.stopRing(TXQ), 3);
    assertEquals(r.dev.driverReady, false);
    assertEquals(r.transitions[r.transitions.length - 1].kind, "reset");
    fe.sendFrame(FRAME);
    assertEquals(r.dev.receiveBurst(new FrameBatch(4)), 0, "stopped ring moves nothing");
    fe.startRing(TXQ, 3);
    assertEquals(r.dev.driverReady, true);
    const batch = new FrameBatch(4);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(batch.frame(0), FRAME);
  } finally {
    r.close();
  }
});

for (const how of ["SET_STATUS 0", "RESET_OWNER", "RESET_DEVICE"] as const) {
  Deno.test(`guest reboot by ${how} on the same connection`, () => {
    const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
    try {
      roundTrip(r, fe);
      if (how === "SET_STATUS 0") {
        fe.request(Request.SET_STATUS, u64Payload(0n), { needReply: true });
      } else fe.request(Request[how], new Uint8Array(0), { needReply: true });
      if (how === "SET_STATUS 0") {
        assertEquals(fe.stopRing(0), 1);
        fe.stopRing(1);
      }
      assertEquals(r.dev.driverReady, false, JSON.stringify(r.transitions));
      assertEquals(r.transitions.filter((t) => t.kind === "reset").length, 1);
      for (const ring of fe.rings) ring.reset();
      fe.request(Request.SET_FEATURES, u64Payload(fe.features & ~bit(Feature.NET_MRG_RXBUF)), {
        needReply: true,
      });
      fe.features &= ~bit(Feature.NET_MRG_RXBUF);
      fe.startRing(0);
      fe.startRing(1);
      fe.request(Request.SET_STATUS, u64Payload(0xfn), { needReply: true });
      assertEquals(r.dev.driverReady, true);
      roundTrip(r, fe);
    } finally {
      r.close();
    }
  });
}

Deno.test("disconnect, then a new VMM connects and negotiates from scratch", () => {
  const r = rig();
  try {
    const fe = r.connect();
    fe.negotiate({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
    roundTrip(r, fe);
    const waiting = r.connect({ pump: () => {} }); // queued in the backlog meanwhile
    fe.close();
    assertEquals(r.transitions.slice(-1)[0].kind, "disconnected");
    assertEquals(r.dev.driverReady, false);
    r.pump(); // accepts the waiting one
    assertEquals(r.dev.connected, true);
    assertEquals(u64(native().mvn_dev_get(r.dev.handle, DevField.MEM_REGIONS)), 0n);
    const fe2 = Object.assign(waiting, { opts: { ...waiting.opts, pump: r.pump } });
    fe2.negotiate({ features: bit(Feature.NET_MAC) });
    roundTrip(r, fe2);
    assertEquals(r.transitions.map((t) => t.kind), [
      "connected",
      "driver_ok",
      "disconnected",
      "connected",
      "driver_ok",
    ]);
  } finally {
    r.close();
  }
});

Deno.test("socket file: stale one replaced, live one refused, removed on close", () => {
  const r = rig();
  try {
    assertThrows(
      () => VhostNetDevice.create({ socketPath: r.socketPath, mac: TEST_MAC }),
      ShimError,
      "EADDRINUSE",
    );
    const other = `${r.dir}/plain`;
    Deno.writeTextFileSync(other, "x");
    assertThrows(
      () => VhostNetDevice.create({ socketPath: other, mac: TEST_MAC }),
      ShimError,
      "EEXIST",
    );
    assertThrows(
      () => VhostNetDevice.create({ socketPath: `${r.dir}/x`, mac: "nope" }),
      RangeError,
    );
    const stalePath = `${r.dir}/stale.sock`;
    const first = VhostNetDevice.create({ socketPath: stalePath, mac: TEST_MAC });
    // Simulate a crash that left the file behind: a listener that is gone.
    const l = Deno.listen({ transport: "unix", path: `${r.dir}/stale2.sock` });
    l.close();
    first.close();
    assertEquals(exists(stalePath), false, "close removes the socket");
    const l2 = Deno.listen({ transport: "unix", path: stalePath });
    l2.close();
    const again = VhostNetDevice.create({ socketPath: stalePath, mac: TEST_MAC });
    assertEquals(exists(stalePath), true);
    again.close();
  } finally {
    r.close();
  }
});

Deno.test("rings of different sizes and a queue size of 1", () => {
  for (const num of [1, 3, 1024]) {
    const { r, fe } = running({
      features: ALL_FEATURES,
      protocolFeatures: ALL_PROTOCOL_FEATURES,
      queueSize: num,
    });
    try {
      assertEquals(fe.rings[0].num, num);
      for (let i = 0; i < 3; i++) roundTrip(r, fe);
    } finally {
      r.close();
    }
  }
});
