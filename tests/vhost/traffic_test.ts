import { assert, assertEquals } from "../assert.ts";
import { FrameBatch } from "../../vhost/device.ts";
import { bit, Feature, ProtocolFeature } from "../../vhost/protocol.ts";
import { RXQ, testFrame, TXQ } from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES, running } from "../harness/setup.ts";

const MRG = bit(Feature.NET_MRG_RXBUF);
const EVENT_IDX = bit(Feature.RING_EVENT_IDX);
const INDIRECT = bit(Feature.RING_INDIRECT_DESC);
const BASE = bit(Feature.VERSION_1) | bit(Feature.NET_MAC) | bit(Feature.NET_STATUS) |
  bit(Feature.NET_MTU);

function name(f: bigint): string {
  return [[MRG, "MRG_RXBUF"], [EVENT_IDX, "EVENT_IDX"], [INDIRECT, "INDIRECT_DESC"]]
    .filter(([b]) => (f & (b as bigint)) !== 0n).map(([, n]) => n).join("+") || "none";
}

/** Every subset of the three ring features, with and without VERSION_1 and protocol
 * features, moves frames both ways. */
for (
  const subset of [
    0n,
    MRG,
    EVENT_IDX,
    INDIRECT,
    MRG | EVENT_IDX,
    MRG | INDIRECT,
    EVENT_IDX | INDIRECT,
    MRG | EVENT_IDX | INDIRECT,
  ]
) {
  for (const variant of ["legacy-header", "version1", "protocol"] as const) {
    const features = subset | (variant === "legacy-header" ? bit(Feature.NET_MAC) : BASE) |
      (variant === "protocol" ? bit(Feature.PROTOCOL_FEATURES) : 0n);
    Deno.test(`traffic with ${name(subset)} (${variant})`, () => {
      const { r, fe } = running({ features, protocolFeatures: ALL_PROTOCOL_FEATURES });
      try {
        assertEquals(r.dev.driverReady, true, "ACTIVE after setup");
        assert(r.transitions.some((t) => t.kind === "driver_ok"), "driver_ok reported");
        // Guest -> device: 10 frames of different sizes, some in pieces or indirect.
        const sent = Array.from({ length: 10 }, (_, i) => testFrame(60 + i * 97, i));
        sent.forEach((f, i) =>
          fe.sendFrame(f, {
            pieces: 1 + (i % 3),
            indirect: (subset & INDIRECT) !== 0n && i % 2 === 1,
          })
        );
        const batch = new FrameBatch(64);
        assertEquals(r.dev.receiveBurst(batch), 10);
        for (let i = 0; i < 10; i++) assertEquals(batch.frame(i), sent[i], `tx frame ${i}`);
        assertEquals(fe.rings[TXQ].takeUsed().length, 10, "TX chains returned");
        // Device -> guest: with MRG_RXBUF small buffers that a frame spans.
        const bufSize = (subset & MRG) !== 0n ? 256 : 2048;
        fe.postRx(40, bufSize);
        const out = Array.from({ length: 5 }, (_, i) => testFrame(100 + i * 300, 50 + i));
        assertEquals(r.dev.sendBurst(out), 5);
        const got = fe.readRx();
        assertEquals(got.map((g) => g.frame), out);
        if ((subset & MRG) !== 0n) assert(got[4].numBuffers > 1, "large frame merged");
        assert(fe.takeCalls(RXQ) > 0, "guest interrupted for RX");
        const c = r.dev.counters();
        assertEquals([c.tx_packets, c.rx_packets], [10, 5]);
        assertEquals(c.tx_bytes, sent.reduce((a, f) => a + f.length, 0));
      } finally {
        r.close();
      }
    });
  }
}

Deno.test("no RX buffer: frames are dropped and counted, later ones pass", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    assertEquals(r.dev.sendBurst([testFrame(100, 1), testFrame(100, 2)]), 0);
    assertEquals(r.dev.counters().rx_drop_no_buffer, 2);
    fe.postRx(1, 2048);
    assertEquals(r.dev.sendBurst([testFrame(100, 3)]), 1);
    assertEquals(fe.readRx().map((g) => g.frame), [testFrame(100, 3)]);
  } finally {
    r.close();
  }
});

Deno.test("EVENT_IDX: no interrupt until used_event is reached, avail_event follows", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const tx = fe.rings[TXQ];
    tx.setUsedEvent(2); // interrupt when used idx passes 2
    fe.sendFrame(testFrame(60, 1));
    const batch = new FrameBatch(8);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(fe.takeCalls(TXQ), 0, "no interrupt before used_event");
    assertEquals(tx.availEvent(), 1, "avail_event asks for a kick at the next buffer");
    fe.sendFrame(testFrame(60, 2));
    fe.sendFrame(testFrame(60, 3));
    assertEquals(r.dev.receiveBurst(batch), 2);
    assertEquals(fe.takeCalls(TXQ), 1, "interrupt once used idx passed used_event");
  } finally {
    r.close();
  }
});

Deno.test("frames left in the ring after a burst are reported by poll without a kick", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    for (let i = 0; i < 5; i++) fe.sendFrame(testFrame(60, i));
    const batch = new FrameBatch(2);
    assertEquals(r.dev.receiveBurst(batch), 2);
    r.dev.poll(0); // drains the kick
    assert((r.dev.poll(0) & 2) !== 0, "TX pending reported");
    assertEquals(r.dev.receiveBurst(batch), 2);
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals(r.dev.poll(0) & 2, 0);
  } finally {
    r.close();
  }
});

Deno.test("NO_INTERRUPT without EVENT_IDX suppresses the call", () => {
  const { r, fe } = running({
    features: ALL_FEATURES & ~EVENT_IDX,
    protocolFeatures: ALL_PROTOCOL_FEATURES & ~bit(ProtocolFeature.STATUS),
  });
  try {
    const tx = fe.rings[TXQ];
    fe.mem.setU16(tx.avail, 1); // VRING_AVAIL_F_NO_INTERRUPT
    fe.sendFrame(testFrame(60, 1));
    assertEquals(r.dev.receiveBurst(new FrameBatch(8)), 1);
    assertEquals(fe.takeCalls(TXQ), 0);
    fe.mem.setU16(tx.avail, 0);
    fe.sendFrame(testFrame(60, 2));
    assertEquals(r.dev.receiveBurst(new FrameBatch(8)), 1);
    assertEquals(fe.takeCalls(TXQ), 1);
  } finally {
    r.close();
  }
});

Deno.test("two devices side by side: each guest gets only its own frames", () => {
  const a = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  const b = running({ features: ALL_FEATURES & ~MRG, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    a.fe.postRx(4, 2048);
    b.fe.postRx(4, 2048);
    assertEquals(a.r.dev.sendBurst([testFrame(80, 1), testFrame(81, 2)]), 2);
    assertEquals(b.r.dev.sendBurst([testFrame(90, 3)]), 1);
    assertEquals(a.fe.readRx().map((x) => x.frame), [testFrame(80, 1), testFrame(81, 2)]);
    assertEquals(b.fe.readRx().map((x) => x.frame), [testFrame(90, 3)]);
    b.fe.sendFrame(testFrame(70, 4));
    const batch = new FrameBatch(4);
    assertEquals(a.r.dev.receiveBurst(batch), 0, "a's device sees nothing of b's guest");
    assertEquals(b.r.dev.receiveBurst(batch), 1);
    assertEquals(a.r.dev.counters().tx_packets, 0);
    assertEquals(b.r.dev.counters().rx_packets, 1);
  } finally {
    a.r.close();
    b.r.close();
  }
});

Deno.test("FrameBatch: a frame's metadata copied out equals its view and is independent of it", () => {
  const batch = new FrameBatch(4);
  const meta = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
  assert(batch.push(new Uint8Array(60), meta));
  assert(batch.push(new Uint8Array(70)));
  const out = new Uint8Array(10);
  assertEquals([...batch.copyMeta(0, out)], [...meta]);
  assertEquals([...batch.meta(0)], [...meta]);
  out[0] = 99;
  assertEquals(batch.meta(0)[0], 1, "the copy is not the batch's bytes");
  assertEquals([...batch.copyMeta(1, out)], new Array(10).fill(0), "a plain frame: no offload");
});
