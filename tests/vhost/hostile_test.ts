/**
 * A hostile guest: every malformed descriptor chain is given back with used length 0,
 * counted under its reason, and the next good frame passes.
 */
import { assertEquals } from "../assert.ts";
import { FrameBatch } from "../../vhost/device.ts";
import {
  DESC_F_INDIRECT,
  DESC_F_NEXT,
  DESC_F_WRITE,
  type Frontend,
  RXQ,
  testFrame,
  TXQ,
  writeDescAt,
} from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES, type Rig, running } from "../harness/setup.ts";

const GOOD = testFrame(200, 7);
const QSIZE = 64;

/** Runs `plant` (which makes bad chains available on TX), then a good frame; checks that the
 * bad chains come back with length 0, the counter moved by `bad`, and the good frame passed. */
function txCase(title: string, counter: string, plant: (fe: Frontend) => number[], bad = 1) {
  Deno.test(`hostile TX: ${title}`, () => {
    const { r, fe } = running({
      features: ALL_FEATURES,
      protocolFeatures: ALL_PROTOCOL_FEATURES,
      queueSize: QSIZE,
    });
    try {
      const heads = plant(fe);
      fe.sendFrame(GOOD);
      const batch = new FrameBatch(16);
      assertEquals(r.dev.receiveBurst(batch), 1, "only the good frame comes out");
      assertEquals(batch.frame(0), GOOD);
      const used = fe.rings[TXQ].takeUsed();
      for (const h of heads) {
        const e = used.find((u) => u.id === h);
        assertEquals(e?.len, 0, `bad chain ${h} returned with length 0`);
      }
      const c = r.dev.counters();
      assertEquals(c[counter], bad, counter);
      assertEquals(c.tx_packets, 1);
      assertEquals(r.dev.driverReady, true, "device still active");
    } finally {
      r.close();
    }
  });
}

/** A chain of raw descriptors at fresh indices; returns the head. */
function raw(
  fe: Frontend,
  descs: { addr: number; len: number; flags: number; next?: number }[],
): number {
  const ring = fe.rings[TXQ];
  const ids = ring.alloc(descs.length);
  descs.forEach((d, k) => ring.writeDesc(ids[k], { ...d, next: d.next ?? ids[k + 1] ?? 0 }));
  ring.publish(ids[0]);
  return ids[0];
}

txCase(
  "address outside every region",
  "chain_bad_addr",
  (fe) => [raw(fe, [{ addr: 0x4000_0000, len: 100, flags: 0 }])],
);
txCase(
  "address near 2^64 (wrap-around)",
  "chain_bad_addr",
  (fe) => [raw(fe, [{ addr: 2 ** 53, len: 100, flags: 0 }])],
);
txCase(
  "length crossing the end of guest RAM",
  "chain_bad_addr",
  (fe) => [raw(fe, [{ addr: fe.mem.size - 50, len: 100, flags: 0 }])],
);
txCase("descriptor loop", "chain_loop", (fe) => {
  const ring = fe.rings[TXQ];
  const [a, b] = ring.alloc(2);
  const buf = fe.allocGuest(64);
  ring.writeDesc(a, { addr: buf, len: 32, flags: DESC_F_NEXT, next: b });
  ring.writeDesc(b, { addr: buf, len: 32, flags: DESC_F_NEXT, next: a });
  ring.publish(a);
  return [a];
});
txCase(
  "next index beyond the queue",
  "chain_bad_index",
  (fe) => [raw(fe, [{ addr: fe.allocGuest(64), len: 64, flags: DESC_F_NEXT, next: QSIZE + 5 }])],
);
txCase("head index beyond the queue", "chain_bad_index", (fe) => {
  fe.rings[TXQ].publish(QSIZE + 1);
  return [];
});
txCase("chain longer than the queue (direct + full indirect table)", "chain_too_long", (fe) => {
  const table = fe.allocGuest(16 * QSIZE);
  const buf = fe.allocGuest(64);
  for (let k = 0; k < QSIZE; k++) {
    writeDescAt(fe.mem, table + 16 * k, {
      addr: buf,
      len: 1,
      flags: k + 1 < QSIZE ? DESC_F_NEXT : 0,
      next: k + 1,
    });
  }
  return [
    raw(fe, [{ addr: buf, len: 20, flags: DESC_F_NEXT }, {
      addr: table,
      len: 16 * QSIZE,
      flags: DESC_F_INDIRECT,
    }]),
  ];
});
// The largest frame is a 65535-byte IP packet behind 18 bytes of Ethernet and VLAN header:
// with the 12-byte virtio-net header that is 65565 bytes of chain; this one has 65568.
txCase("frame larger than the largest GSO frame", "chain_frame_too_long", (fe) => {
  const buf = fe.allocGuest(32);
  return [
    raw(fe, [{ addr: 0, len: 0x10000, flags: DESC_F_NEXT }, { addr: buf, len: 32, flags: 0 }]),
  ];
});
txCase(
  "indirect table size not a multiple of 16",
  "chain_bad_indirect",
  (fe) => [raw(fe, [{ addr: fe.allocGuest(64), len: 40, flags: DESC_F_INDIRECT }])],
);
txCase(
  "indirect table longer than the queue",
  "chain_bad_indirect",
  (
    fe,
  ) => [
    raw(fe, [{
      addr: fe.allocGuest(16 * (QSIZE + 1)),
      len: 16 * (QSIZE + 1),
      flags: DESC_F_INDIRECT,
    }]),
  ],
);
txCase("INDIRECT together with NEXT", "chain_bad_indirect", (fe) => {
  const table = fe.allocGuest(16);
  writeDescAt(fe.mem, table, { addr: fe.allocGuest(64), len: 64, flags: 0, next: 0 });
  return [raw(fe, [{ addr: table, len: 16, flags: DESC_F_INDIRECT | DESC_F_NEXT, next: 0 }])];
});
txCase("nested indirect table", "chain_nested_indirect", (fe) => {
  const inner = fe.allocGuest(16);
  writeDescAt(fe.mem, inner, { addr: fe.allocGuest(64), len: 64, flags: 0, next: 0 });
  const outer = fe.allocGuest(16);
  writeDescAt(fe.mem, outer, { addr: inner, len: 16, flags: DESC_F_INDIRECT, next: 0 });
  return [raw(fe, [{ addr: outer, len: 16, flags: DESC_F_INDIRECT }])];
});
txCase("loop inside an indirect table", "chain_loop", (fe) => {
  const table = fe.allocGuest(32);
  const buf = fe.allocGuest(64);
  writeDescAt(fe.mem, table, { addr: buf, len: 30, flags: DESC_F_NEXT, next: 1 });
  writeDescAt(fe.mem, table + 16, { addr: buf, len: 30, flags: DESC_F_NEXT, next: 0 });
  return [raw(fe, [{ addr: table, len: 32, flags: DESC_F_INDIRECT }])];
});
txCase(
  "indirect table outside guest RAM",
  "chain_bad_addr",
  (fe) => [raw(fe, [{ addr: fe.mem.size - 16, len: 32, flags: DESC_F_INDIRECT }])],
);
txCase(
  "write-only descriptor on TX",
  "chain_wrong_direction",
  (fe) => [raw(fe, [{ addr: fe.allocGuest(64), len: 64, flags: DESC_F_WRITE }])],
);
txCase(
  "zero-length chain",
  "chain_empty",
  (fe) => [raw(fe, [{ addr: fe.allocGuest(16), len: 0, flags: 0 }])],
);
txCase(
  "chain holding only the virtio-net header",
  "chain_empty",
  (fe) => [raw(fe, [{ addr: fe.allocGuest(16), len: 12, flags: 0 }])],
);
txCase("several bad chains in one burst", "chain_bad_addr", (fe) => [
  raw(fe, [{ addr: 0x7000_0000, len: 10, flags: 0 }]),
  raw(fe, [{ addr: 0x7100_0000, len: 10, flags: 0 }]),
  raw(fe, [{ addr: 0x7200_0000, len: 10, flags: 0 }]),
], 3);

Deno.test("hostile TX: length crossing a region's end into a hole of the memory map", () => {
  const { r, fe } = running({
    features: ALL_FEATURES,
    protocolFeatures: ALL_PROTOCOL_FEATURES,
    queueSize: QSIZE,
  });
  try {
    const island = fe.mem.grow(0x10000, 0x10000);
    assertEquals(fe.addRegion(island), 0n);
    const head = raw(fe, [{ addr: island.gpa - 32, len: 64, flags: 0 }]);
    const head2 = raw(fe, [{ addr: island.gpa + island.size - 32, len: 64, flags: 0 }]);
    fe.sendFrame(GOOD, { at: island.gpa + 100 });
    const batch = new FrameBatch(4);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(batch.frame(0), GOOD);
    const used = fe.rings[TXQ].takeUsed();
    assertEquals([head, head2].map((h) => used.find((u) => u.id === h)?.len), [0, 0]);
    assertEquals(r.dev.counters().chain_bad_addr, 2);
  } finally {
    r.close();
  }
});

Deno.test("a frame straddling two memory regions is copied whole", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const boundary = fe.mem.regions[1].gpa;
    fe.sendFrame(GOOD, { at: boundary - 100 });
    const batch = new FrameBatch(4);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(batch.frame(0), GOOD);
    // And towards the guest: an RX buffer across the boundary.
    fe.rings[RXQ].addChain([{ addr: boundary - 50, len: 2048, write: true }]);
    assertEquals(r.dev.sendBurst([GOOD]), 1);
    assertEquals(fe.readRx()[0].frame, GOOD);
  } finally {
    r.close();
  }
});

function availJump(r: Rig, fe: Frontend) {
  const ring = fe.rings[TXQ];
  ring.setAvailIdx(ring.availIdx + QSIZE + 10);
  const batch = new FrameBatch(4);
  assertEquals(r.dev.receiveBurst(batch), 0, "nothing popped from a broken ring");
  assertEquals(r.dev.receiveBurst(batch), 0);
  assertEquals(r.dev.counters().avail_jump, 1, "counted once per episode");
  ring.setAvailIdx(ring.availIdx);
  fe.sendFrame(GOOD);
  assertEquals(r.dev.receiveBurst(batch), 1, "works again once the index is sane");
  assertEquals(batch.frame(0), GOOD);
}

Deno.test("hostile TX: avail index jump", () => {
  const { r, fe } = running({
    features: ALL_FEATURES,
    protocolFeatures: ALL_PROTOCOL_FEATURES,
    queueSize: QSIZE,
  });
  try {
    availJump(r, fe);
  } finally {
    r.close();
  }
});

Deno.test("hostile RX: read-only, out-of-range and too-small buffers", () => {
  for (const mrg of [true, false]) {
    const features = mrg ? ALL_FEATURES : ALL_FEATURES & ~(1n << 15n);
    const { r, fe } = running({
      features,
      protocolFeatures: ALL_PROTOCOL_FEATURES,
      queueSize: QSIZE,
    });
    try {
      const ring = fe.rings[RXQ];
      const readOnly = ring.addChain([{ addr: fe.allocGuest(2048), len: 2048, write: false }]);
      const outside = ring.addChain([{ addr: 0x5000_0000, len: 2048, write: true }]);
      const tiny = ring.addChain([{ addr: fe.allocGuest(8), len: 8, write: true }]);
      fe.postRx(2, 2048);
      assertEquals(r.dev.sendBurst([GOOD]), 1);
      const used = ring.takeUsed();
      for (const h of [readOnly, outside, tiny]) assertEquals(used.find((u) => u.id === h)?.len, 0);
      const good = used.filter((u) => u.len > 0);
      assertEquals(good.length, 1);
      const c = r.dev.counters();
      assertEquals([c.chain_wrong_direction, c.chain_bad_addr, c.chain_too_small], [1, 1, 1]);
      assertEquals(c.rx_packets, 1);
      assertEquals(good[0].len, fe.hdrLen + GOOD.length);
      assertEquals(fe.mem.read(good[0].segs[0].addr + fe.hdrLen, GOOD.length), GOOD);
    } finally {
      r.close();
    }
  }
});

Deno.test("hostile RX: malformed chains met inside a merged frame go back after it", () => {
  const { r, fe } = running({
    features: ALL_FEATURES,
    protocolFeatures: ALL_PROTOCOL_FEATURES,
    queueSize: QSIZE,
  });
  try {
    const ring = fe.rings[RXQ];
    ring.addChain([{ addr: fe.allocGuest(128), len: 128, write: true }]);
    const bad = ring.addChain([{ addr: 0x6000_0000, len: 128, write: true }]);
    ring.addChain([{ addr: fe.allocGuest(128), len: 128, write: true }]);
    ring.addChain([{ addr: fe.allocGuest(128), len: 128, write: true }]);
    const frame = testFrame(300, 9);
    assertEquals(r.dev.sendBurst([frame]), 1);
    const got = fe.readRx();
    assertEquals(got[0].frame, frame);
    assertEquals(got[0].numBuffers, 3);
    assertEquals(r.dev.counters().chain_bad_addr, 1);
    assertEquals(ring.lastUsed, 4, "the bad chain was returned too");
    assertEquals(fe.mem.u32(ring.used + 4 + 8 * 3), bad, "after the frame's three buffers");
  } finally {
    r.close();
  }
});
