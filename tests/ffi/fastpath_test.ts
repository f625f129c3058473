/**
 * The shim's forwarding fast path (ffi/fastpath.c, ffi/fring.c) against real devices with
 * in-thread frontends: what it takes from a guest is exactly what the TypeScript services and
 * router would deliver to that peer, byte for byte, and everything else is left in order and
 * untouched; the C and TypeScript ends of a frame ring interoperate; the inbound ring reaches the
 * guest and stops at frames with offloads.
 */
import { assert, assertEquals } from "../assert.ts";
import { FrameBatch, VhostNetDevice } from "../../vhost/device.ts";
import { PollEvents } from "../../ffi/binding.ts";
import { bit, Feature } from "../../vhost/protocol.ts";
import { RXQ, TXQ } from "../harness/frontend.ts";
import { ALL_FEATURES, ALL_PROTOCOL_FEATURES, rig, running, TEST_MAC } from "../harness/setup.ts";
import { FrameRing } from "../../routing/ring.ts";
import { FastTable } from "../../routing/fast_table.ts";
import { forward, type ForwardContext, type NicRoute, RateLimiter } from "../../routing/forward.ts";
import { RouteTable } from "../../routing/table.ts";
import { prepareFromGuest } from "../../routing/offload.ts";
import { DropCounters, handleGuestFrame, type VnicContext } from "../../services/mod.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6, GATEWAY_MAC } from "../../services/context.ts";
import { ipv4Frame, ipv4UdpFrame, ipv6Frame } from "../../services/frames.ts";
import { type Cidr, parseCidr, parseIpv4, parseIpv6, parseMac } from "../../wire/addr.ts";
import { WireError } from "../../wire/error.ts";
import { internetChecksum } from "../../wire/checksum.ts";
import { write16 } from "../../wire/bytes.ts";

const mac = (s: string) => parseMac(s) as Uint8Array;
const ip4 = (s: string) => parseIpv4(s) as Uint8Array;
const ip6 = (s: string) => parseIpv6(s) as Uint8Array;
const OWN_MAC = mac(TEST_MAC);
const PEER_MAC = mac("02:bb:00:00:00:02");
const OWN4 = ip4("10.0.0.2");
const PEER4 = ip4("10.0.0.3");
const OWN6 = ip6("fd00::2");
const PEER6 = ip6("fd00::3");
const MTU = 1500;
const IP_PROTO_UDP = 17;
const IP_PROTO_TCP = 6;
const IP_PROTO_ICMPV6 = 58;
const ICMPV6_NEIGHBOR_SOLICIT = 135;
const NEEDS_CSUM = 1;
const DATA_VALID = 2;
const GSO_TCPV4 = 1;

function frameOf(v: Uint8Array | WireError): Uint8Array {
  if (v instanceof WireError) throw new Error(`test frame: ${v}`);
  return v;
}

function ptrOf(sab: SharedArrayBuffer): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(sab))));
}

/** A small ring, so that bursts wrap it and make skip records. */
function smallRing(slots = 16): SharedArrayBuffer {
  return FrameRing.allocate(slots, MTU + 14, 0);
}

function tableFor(peerHandle: number, ring: SharedArrayBuffer): FastTable {
  const t = new FastTable();
  const peer = {
    mac: PEER_MAC,
    handle: peerHandle,
    ringAddr: ptrOf(ring),
    ringLen: ring.byteLength,
  };
  t.update(
    { mac: OWN_MAC, gatewayMac: GATEWAY_MAC, ipv4: OWN4, ipv6: OWN6, mtu: MTU },
    [{ ...peer, addr: PEER4 }, { ...peer, addr: PEER6 }],
  );
  return t;
}

/** The TypeScript path's decision for one frame, as actors/vnic.ts takes it (no security
 * groups): the peer's id and the rewritten frame when it is delivered to a peer. */
function slowPath(frame: Uint8Array, meta: Uint8Array): Uint8Array | null {
  const f = frame.slice();
  const m = meta.slice();
  const services: VnicContext = {
    mac: OWN_MAC,
    ipv4: OWN4,
    ipv6: OWN6,
    ipv4Subnet: parseCidr("10.0.0.0/24", 4) as Cidr,
    ipv6Prefix: parseCidr("fd00::/64", 6) as Cidr,
    dnsServers4: [],
    dnsServers6: [],
    ntpServers4: [],
    ntpServers6: [],
    isPublic: false,
    mtu: MTU,
    dhcpv4LeaseSecs: 3600,
    dhcpv6PreferredSecs: 3600,
    dhcpv6ValidSecs: 7200,
    peerIpv6: new Set(["fd00::3"]),
    gatewayMac: GATEWAY_MAC,
  };
  if (prepareFromGuest(m, f)) return null;
  if (handleGuestFrame(services, f, new DropCounters()).kind !== "route") return null;
  const routes = new RouteTable<NicRoute>();
  const peer = { id: "peer", mac: PEER_MAC };
  routes.insert({ addr: OWN4, prefixLen: 32 }, { id: "self", mac: OWN_MAC });
  routes.insert({ addr: PEER4, prefixLen: 32 }, peer);
  routes.insert({ addr: OWN6, prefixLen: 128 }, { id: "self", mac: OWN_MAC });
  routes.insert({ addr: PEER6, prefixLen: 128 }, peer);
  const ctx: ForwardContext = {
    nic: { id: "self", mac: OWN_MAC, ipv4: OWN4, ipv6: OWN6, routed: [] },
    gatewayMac: GATEWAY_MAC,
    isPublic: false,
    mtu: MTU,
    routes,
    icmpErrors: new RateLimiter(0, 0),
    nowMs: 0,
  };
  const v = forward(ctx, f, m);
  return v.kind === "deliver" && v.to.id === "peer" ? f : null;
}

/** A deterministic generator (xorshift32), so that a failure replays. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function base4(rand: () => number): Uint8Array {
  const size = 8 + Math.floor(rand() * 1400);
  return frameOf(ipv4UdpFrame(OWN_MAC, GATEWAY_MAC, OWN4, PEER4, 5000, 6000, new Uint8Array(size)));
}

function base6(rand: () => number): Uint8Array {
  const size = 8 + Math.floor(rand() * 1400);
  return frameOf(
    ipv6Frame(OWN_MAC, GATEWAY_MAC, OWN6, PEER6, IP_PROTO_TCP, 64, new Uint8Array(size)),
  );
}

const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const TCP_HEADER = 20;

/** A TCP segment (header with data offset 5, then zeros) to the peer, with the offload metadata
 * a guest with checksum offload writes: a partial checksum, and for a GSO frame its segment
 * size. */
function tcpOffloaded(v6: boolean, gso: boolean, rand: () => number) {
  const size = gso ? 1500 + Math.floor(rand() * 3000) : 8 + Math.floor(rand() * 1400);
  const payload = new Uint8Array(TCP_HEADER + size);
  payload[12] = 0x50;
  const frame = frameOf(
    v6
      ? ipv6Frame(OWN_MAC, GATEWAY_MAC, OWN6, PEER6, IP_PROTO_TCP, 64, payload)
      : ipv4Frame(OWN_MAC, GATEWAY_MAC, OWN4, PEER4, IP_PROTO_TCP, payload),
  );
  const l4 = v6 ? 54 : 34;
  const meta = new Uint8Array(10);
  const v = new DataView(meta.buffer);
  meta[0] = NEEDS_CSUM;
  v.setUint16(6, l4, true); // csum_start
  v.setUint16(8, 16, true); // csum_offset: TCP's checksum
  if (gso) {
    meta[1] = v6 ? GSO_TCPV6 : GSO_TCPV4;
    v.setUint16(2, l4 + TCP_HEADER, true); // hdr_len
    v.setUint16(4, v6 ? 1440 : 1460, true); // gso_size: segments of exactly the MTU
  }
  return { frame, meta };
}

/** Recomputes an IPv4 header checksum after a mutation that should not be caught by it. */
function fixChecksum(f: Uint8Array): void {
  const ihl = (f[14] & 0x0f) * 4;
  write16(f, 24, 0);
  write16(f, 24, internetChecksum(f.subarray(14, 14 + ihl)));
}

/** One frame: a valid one to the peer, or one with a single thing changed that may or may not
 * keep it deliverable. Returns the frame, its metadata, and whether it is unchanged. */
function sample(rand: () => number): { frame: Uint8Array; meta: Uint8Array; base: boolean } {
  const v6 = rand() < 0.5;
  let f = v6 ? base6(rand) : base4(rand);
  const meta = new Uint8Array(10);
  const kind = Math.floor(rand() * 30);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  switch (kind) {
    case 0:
      f[v6 ? 21 : 22] = pick([0, 1, 2, 255]); // TTL / hop limit
      if (!v6) fixChecksum(f);
      break;
    case 1:
      if (!v6) f[24] ^= 1 + Math.floor(rand() * 255); // bad header checksum
      else f[14] = 0x50 | (f[14] & 0x0f); // version 5
      break;
    case 2:
      f[6 + Math.floor(rand() * 6)] ^= 0x10; // source MAC not the vNIC's
      break;
    case 3: // source address not the vNIC's (or link-local)
      if (v6) f.set(pick([ip6("fd00::9"), ip6("fe80::2"), PEER6]), 22);
      else {
        f.set(pick([ip4("10.0.0.9"), PEER4, ip4("0.0.0.0")]), 26);
        fixChecksum(f);
      }
      break;
    case 4: // destination: gateway, broadcast, multicast, own, unknown
      if (v6) {
        f.set(pick([GATEWAY_IPV6, ip6("ff02::1"), ip6("fe80::3"), OWN6, ip6("fd00::77")]), 38);
      } else {
        f.set(
          pick([GATEWAY_IPV4, ip4("255.255.255.255"), ip4("224.0.0.1"), OWN4, ip4("10.0.0.77")]),
          30,
        );
        fixChecksum(f);
      }
      break;
    case 5: // length fields against the frame
      if (v6) {
        const pl = (f[18] << 8) | f[19];
        const n = pick([pl + 1, pl - 1, 0, 0xffff]);
        f[18] = (n >> 8) & 0xff;
        f[19] = n & 0xff;
      } else {
        const tl = (f[16] << 8) | f[17];
        const n = pick([tl + 1, tl - 1, 19, 0, 0xffff]);
        f[16] = (n >> 8) & 0xff;
        f[17] = n & 0xff;
        fixChecksum(f);
      }
      break;
    case 6:
      f = f.subarray(0, Math.floor(rand() * f.length)); // truncated
      break;
    case 7: {
      const padded = new Uint8Array(f.length + 1 + Math.floor(rand() * 40)); // Ethernet padding
      padded.set(f);
      f = padded;
      break;
    }
    case 8:
      meta[0] = pick([NEEDS_CSUM, DATA_VALID, 4, 0x80]);
      if (meta[0] === NEEDS_CSUM) {
        meta[6] = 34; // csum_start, csum_offset: UDP's checksum
        meta[8] = 6;
      }
      break;
    case 9:
      meta[1] = pick([GSO_TCPV4, 0x80, 3]);
      meta[4] = 0xdc; // gso_size 1500
      meta[5] = 0x05;
      break;
    case 10: // ethertype: ARP, VLAN, an 802.3 length
      f[12] = pick([0x08, 0x81, 0x05]);
      f[13] = pick([0x06, 0x00, 0xdc]);
      break;
    case 11:
      if (v6) {
        // An ICMPv6 neighbor solicitation to the peer: the gateway answers it.
        f[20] = IP_PROTO_ICMPV6;
        f[54] = pick([ICMPV6_NEIGHBOR_SOLICIT, 128, 1]);
      } else {
        f[23] = pick([1, 6, 17, 47]); // protocol
        fixChecksum(f);
      }
      break;
    case 12:
      if (!v6) {
        f[14] = pick([0x46, 0x44, 0x4f]); // header length: options, too short
        fixChecksum(f);
      } else f[21] = 1;
      break;
    case 13:
      if (!v6) {
        f[20] |= pick([0x80, 0x40, 0x20]); // reserved flag, DF, MF
        fixChecksum(f);
      }
      break;
    case 14: { // over the MTU
      const big = frameOf(
        v6
          ? ipv6Frame(OWN_MAC, GATEWAY_MAC, OWN6, PEER6, IP_PROTO_UDP, 64, new Uint8Array(MTU))
          : ipv4Frame(OWN_MAC, GATEWAY_MAC, OWN4, PEER4, IP_PROTO_UDP, new Uint8Array(MTU - 20)),
      );
      f = pick([big, big.subarray(0, 14 + MTU), big.subarray(0, 15 + MTU)]);
      break;
    }
    case 15:
    case 16:
    case 17: { // TCP with a partial checksum, or TCP GSO: valid, or with one thing changed
      const t = tcpOffloaded(v6, kind !== 15, rand);
      const v = new DataView(t.meta.buffer);
      switch (Math.floor(rand() * 12)) {
        case 0:
          v.setUint16(6, v.getUint16(6, true) + pick([-1, 1, 20]), true); // csum_start
          break;
        case 1:
          v.setUint16(8, pick([6, 0, 18]), true); // csum_offset
          break;
        case 2:
          t.meta[0] = pick([NEEDS_CSUM | DATA_VALID, 0, 4]);
          break;
        case 3:
          t.meta[1] = pick([v6 ? GSO_TCPV4 : GSO_TCPV6, (t.meta[1] || GSO_TCPV4) | GSO_ECN, 3]);
          break;
        case 4:
          v.setUint16(4, pick([0, 1461, 1441, 9000]), true); // gso_size: none, over the MTU
          break;
        case 5:
          t.frame[(v6 ? 54 : 34) + 12] = pick([0x40, 0xf0, 0x00]); // TCP data offset
          break;
        case 6:
          t.frame[v6 ? 20 : 23] = IP_PROTO_UDP;
          if (!v6) fixChecksum(t.frame);
          break;
        default:
          return { ...t, base: true };
      }
      return { ...t, base: false };
    }
    default:
      return { frame: f, meta, base: true };
  }
  return { frame: f, meta, base: false };
}

/** A sending vNIC `a` and its peer `b`, each with an in-thread frontend, and a table that routes
 * to `b` through `ring`. */
function pair() {
  const a = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  const b = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  const sab = smallRing(64);
  return {
    a,
    b,
    ring: new FrameRing(sab),
    table: tableFor(b.r.dev.handle, sab),
    batch: new FrameBatch(64),
    res: new Uint32Array(4),
    close() {
      a.r.close();
      b.r.close();
    },
  };
}

Deno.test("fast path: takes exactly what the router would deliver, leaves the rest in order", () => {
  const p = pair();
  const { a, ring, table, batch, res } = p;
  try {
    const rand = prng(0x5eed);
    let taken = 0, baseSeen = 0, left = 0;
    const BURSTS = 40, PER_BURST = 24;
    for (let burst = 0; burst < BURSTS; burst++) {
      const sent = Array.from({ length: PER_BURST }, () => sample(rand));
      for (const s of sent) {
        // The header the guest writes: the metadata's 10 bytes, num_buffers 0.
        a.fe.sendFrame(s.frame, { header: s.meta });
      }
      const n = a.r.dev.receiveForwarding(batch, table.bytes, res);
      assertEquals(a.fe.rings[TXQ].takeUsed().length, sent.length, "TX chains returned");
      const pushed: Uint8Array[] = [];
      const pushedMeta: Uint8Array[] = [];
      ring.drain(1000, (f, m) => {
        pushed.push(f.slice());
        pushedMeta.push(m.slice());
      });
      assertEquals(res[0], pushed.length, "res[0] counts the frames pushed");
      assertEquals(res[1], 0, "no ring was full");
      assertEquals(n + pushed.length, sent.length, "every frame is either taken or left");
      let li = 0, pi = 0;
      sent.forEach((s, i) => {
        const expect = slowPath(s.frame, s.meta);
        const leftHere = li < n && equalBytes(batch.frame(li), s.frame) &&
          equalBytes(batch.meta(li), s.meta);
        if (leftHere && !(s.base && expect)) {
          li++;
          return;
        }
        assert(
          expect !== null,
          `burst ${burst} frame ${i}: fast path took what the router refuses`,
        );
        assert(pi < pushed.length, `burst ${burst} frame ${i}: deliverable frame was not taken`);
        assertEquals(pushed[pi], expect, `burst ${burst} frame ${i}: bytes as the router writes`);
        assertEquals(pushedMeta[pi++], s.meta, `burst ${burst} frame ${i}: metadata as sent`);
        taken++;
        if (s.base) baseSeen++;
      });
      assertEquals([li, pi], [n, pushed.length], `burst ${burst}: all frames accounted for`);
      left += n;
    }
    assert(baseSeen > 100 && left > 300, `enough of both kinds (${baseSeen} base, ${left} left)`);
    assert(taken >= baseSeen, "every valid frame to the peer went the fast way");
    assertEquals(a.r.dev.counters().tx_packets, BURSTS * PER_BURST);
  } finally {
    p.close();
  }
});

function equalBytes(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

Deno.test("fast path: a full peer ring refuses frames and counts them; the table's absence leaves all", () => {
  const a = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const sab = smallRing(4);
    const ring = new FrameRing(sab);
    const table = tableFor(9999, sab); // a peer handle that names no device: no wake-up
    const batch = new FrameBatch(64);
    const res = new Uint32Array(4);
    const frame = base4(prng(1));
    for (let i = 0; i < 10; i++) a.fe.sendFrame(frame);
    assertEquals(a.r.dev.receiveForwarding(batch, table.bytes, res), 0);
    assertEquals([res[0], res[1]], [4, 6], "4 slots taken, 6 refused");
    let drained = 0;
    ring.drain(100, () => drained++);
    assertEquals(drained, 4);
    // An empty table and one of an unknown version leave every frame.
    const bad = table.bytes.slice();
    bad[0] = 99;
    for (const t of [new FastTable().bytes, bad]) {
      for (let i = 0; i < 3; i++) a.fe.sendFrame(frame);
      assertEquals(a.r.dev.receiveForwarding(batch, t, res), 3);
      assertEquals(batch.frame(2), frame);
      assertEquals(res[0] + res[1], 0);
    }
  } finally {
    a.r.close();
  }
});

Deno.test("fast path: the inbound ring reaches the guest, and stops at an offload it did not negotiate", () => {
  const b = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const sab = smallRing(8);
    const ring = new FrameRing(sab);
    const bytes = new Uint8Array(sab);
    const rand = prng(7);
    const csum = new Uint8Array(10);
    csum[0] = NEEDS_CSUM;
    let delivered = 0;
    // Several rounds of mixed sizes wrap the ring (skip records) from the TypeScript producer.
    for (let round = 0; round < 12; round++) {
      const plain = Array.from({ length: 3 }, () => base4(rand));
      b.fe.postRx(plain.length, 2048);
      for (const f of plain) assert(ring.push(f), `round ${round}: push`);
      assert(ring.push(base4(rand), csum), "offloaded frame pushed");
      assertEquals(b.r.dev.deliverFromRing(bytes, 64), 3, `round ${round}: the plain frames`);
      assert(b.r.dev.rxRest && !b.r.dev.rxHeld, "the rest is the caller's to adapt");
      assertEquals(b.fe.readRx().map((g) => g.frame), plain, `round ${round}: delivered as sent`);
      let seen = 0;
      ring.drain(64, (_f, m) => {
        assertEquals(m[0], NEEDS_CSUM, "the offloaded frame is left at the head");
        seen++;
      });
      assertEquals(seen, 1);
      delivered += plain.length;
    }
    assertEquals(b.r.dev.counters().rx_packets, delivered);
    // An empty ring leaves nothing to the caller; a receive queue that is not up leaves it all.
    b.fe.postRx(1, 2048);
    assert(ring.push(base4(rand)), "push");
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 1);
    assert(!b.r.dev.rxRest && !b.r.dev.rxHeld, "all delivered");
    b.fe.stopRing(0);
    assert(ring.push(base4(rand)), "push");
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 0);
    assert(b.r.dev.rxRest, "no receive queue: the caller drops them");
    assert(ring.ready(), "left in the ring");
  } finally {
    b.r.close();
  }
});

Deno.test("inbound ring: frames wait for the guest's receive buffers, in order, and the refill wakes the loop", () => {
  const b = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const sab = smallRing(16);
    const ring = new FrameRing(sab);
    const bytes = new Uint8Array(sab);
    const rand = prng(17);
    const rxq = b.fe.rings[RXQ];
    const noNotify = () => (b.fe.mem.u16(rxq.used) & 1) === 1;
    b.r.dev.pollWithRing(0, bytes); // the receive queue's kicks go off once it is up
    assert(noNotify(), "no frame waits: refills wake nobody");
    const frames = Array.from({ length: 6 }, () => base4(rand));
    b.fe.postRx(2, 2048);
    for (const f of frames) assert(ring.push(f), "push");
    // Two buffers: two frames delivered, the other four stay at the head of the ring.
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 2);
    assert(b.r.dev.rxHeld && !b.r.dev.rxRest, "held for want of buffers, not the caller's");
    assertEquals(b.fe.readRx().map((g) => g.frame), frames.slice(0, 2));
    const c = b.r.dev.counters();
    assertEquals([c.rx_drop_no_buffer, c.rx_wait_buffer], [0, 1], "nothing dropped, one wait");
    // The guest is asked to kick for its next buffer, and the held frames do not keep the loop
    // awake: the poll waits for its timeout.
    assert(!noNotify(), "kicks wanted on the receive queue");
    assertEquals(rxq.availEvent(), rxq.availIdx, "avail_event at the next buffer");
    assertEquals(b.r.dev.pollWithRing(30, bytes) & PollEvents.INBOUND, 0, "not reported");
    // A second look without new buffers changes nothing and counts no second wait.
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 0);
    assertEquals(b.r.dev.counters().rx_wait_buffer, 1);
    // One buffer more (and its kick): reported again, one more frame out, still waiting.
    b.fe.postRx(1, 2048);
    const ev = b.r.dev.pollWithRing(1_000, bytes);
    assertEquals(ev & PollEvents.INBOUND, PollEvents.INBOUND, "reported once the guest refilled");
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 1);
    assert(b.r.dev.rxHeld);
    b.fe.postRx(8, 2048);
    assertEquals(b.r.dev.pollWithRing(1_000, bytes) & PollEvents.INBOUND, PollEvents.INBOUND);
    assertEquals(b.r.dev.deliverFromRing(bytes, 64), 3);
    assert(!b.r.dev.rxHeld, "all delivered");
    assert(!ring.ready(), "ring emptied");
    assertEquals(b.fe.readRx().map((g) => g.frame), frames.slice(2), "in the order sent");
    assertEquals(b.r.dev.counters().rx_drop_no_buffer, 0);
    b.r.dev.pollWithRing(0, bytes);
    assert(noNotify(), "nothing waits: the receive queue's kicks are off again");
  } finally {
    b.r.close();
  }
});

Deno.test("fast path: the inbound ring passes offloads a guest negotiated, with their headers", () => {
  const b = running({
    features: ALL_FEATURES | bit(Feature.NET_GUEST_CSUM) | bit(Feature.NET_GUEST_TSO4),
    protocolFeatures: ALL_PROTOCOL_FEATURES,
  });
  try {
    const sab = smallRing(16);
    const ring = new FrameRing(sab);
    const rand = prng(17);
    const sent = [tcpOffloaded(false, true, rand), tcpOffloaded(false, false, rand)];
    const v6gso = tcpOffloaded(true, true, rand); // GUEST_TSO6 not negotiated
    for (const t of [...sent, v6gso]) assert(ring.push(t.frame, t.meta), "push");
    b.fe.postRx(4, 65_562);
    assertEquals(b.r.dev.deliverFromRing(new Uint8Array(sab), 64), 2);
    const got = b.fe.readRxWithHeaders();
    assertEquals(got.map((g) => g.frame), sent.map((t) => t.frame));
    assertEquals(got.map((g) => [...g.header]), sent.map((t) => [...t.meta]));
    let left = 0;
    ring.drain(8, (_f, m) => {
      assertEquals(m[1], GSO_TCPV6, "the IPv6 GSO frame waits for the owner");
      left++;
    });
    assertEquals(left, 1);
  } finally {
    b.r.close();
  }
});

Deno.test("fast path: a buffer that is not a frame ring is refused", () => {
  const b = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    let err = "";
    try {
      b.r.dev.deliverFromRing(new Uint8Array(new SharedArrayBuffer(4096)), 64);
    } catch (e) {
      err = String(e);
    }
    assert(err.includes("mvn_fwd_rx"), `refused: ${err}`);
  } finally {
    b.r.close();
  }
});

Deno.test("poll with the inbound ring: a frame is reported at once, a running owner is not signalled", () => {
  const r = rig();
  try {
    const sab = smallRing();
    const ring = new FrameRing(sab);
    const bytes = new Uint8Array(sab);
    const h = r.dev.handle;
    assertEquals(r.dev.pollWithRing(20, bytes), 0, "nothing to report");
    // The owner is running now (until its next poll): a notification writes no event...
    VhostNetDevice.notify(h);
    assertEquals(r.dev.pollWithRing(20, bytes), 0, "no event was left behind");
    // ...and a frame in the ring is found by the poll itself, without waiting.
    assert(ring.push(base4(prng(3))), "push");
    const t0 = performance.now();
    assertEquals(r.dev.pollWithRing(5_000, bytes), PollEvents.INBOUND);
    assert(performance.now() - t0 < 2_000, "returned without waiting for the timeout");
    ring.drain(64, () => {});
    // An owner that polls without its ring gets every notification (once its first such poll
    // has ended the running state of the last ring poll).
    assertEquals(r.dev.poll(0), 0);
    VhostNetDevice.notify(h);
    assertEquals(r.dev.poll(1_000), PollEvents.INBOUND);
  } finally {
    r.close();
  }
});

Deno.test("fast path: straight into the peer's guest when it allows it and its ring is empty", () => {
  const p = pair();
  const { a, b, ring, table, batch, res } = p;
  try {
    const rand = prng(11);
    const send = (n: number) => {
      const frames = Array.from({ length: n }, () => base4(rand));
      for (const f of frames) a.fe.sendFrame(f);
      assertEquals(a.r.dev.receiveForwarding(batch, table.bytes, res), 0);
      a.fe.rings[TXQ].takeUsed();
      // What the peer's guest gets: the frame as the router rewrites it.
      return frames.map((f) => slowPath(f, new Uint8Array(10)));
    };
    const ringFrames = () => {
      const got: Uint8Array[] = [];
      ring.drain(1000, (f) => got.push(f.slice()));
      return got;
    };
    b.fe.postRx(32, 2048);
    // Not allowed (the default): through the ring.
    let expect = send(3);
    assertEquals([res[0], res[2]], [3, 0]);
    assertEquals(ringFrames(), expect);
    // Allowed: into the guest, rewritten as the router does, the peer counting them.
    b.r.dev.setDirectReceive(true);
    expect = send(5);
    assertEquals([res[0], res[2]], [5, 5]);
    assertEquals(b.fe.readRx().map((g) => g.frame), expect);
    assert(!ring.ready(), "nothing went through the ring");
    assertEquals(b.r.dev.counters().rx_packets, 5);
    // A frame waiting in the ring keeps the rest of the burst behind it, in the ring.
    assert(ring.push(base4(rand)), "push");
    expect = send(2);
    assertEquals([res[0], res[2]], [2, 0]);
    assertEquals(ringFrames().slice(1), expect);
    // Out of receive buffers: the frames without one wait in the peer's ring, in order, and
    // nothing is dropped.
    const drops = b.r.dev.counters().rx_drop_no_buffer;
    b.fe.readRx();
    expect = send(40);
    assertEquals([res[0], res[2]], [40, 27]);
    assertEquals(b.fe.readRx().map((g) => g.frame), expect.slice(0, 27), "the buffers left");
    assertEquals(b.r.dev.counters().rx_drop_no_buffer - drops, 0);
    assertEquals(ringFrames(), expect.slice(27));
    // A peer whose receive ring stopped: back to its ring.
    b.fe.stopRing(0);
    send(2);
    assertEquals([res[0], res[2]], [2, 0]);
    assertEquals(ringFrames().length, 2);
  } finally {
    p.close();
  }
});

Deno.test("poll with the inbound ring: a guest sending frames is asked not to kick until the loop sleeps", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const sab = smallRing();
    const bytes = new Uint8Array(sab);
    const txq = fe.rings[TXQ];
    const noNotify = () => (fe.mem.u16(txq.used) & 1) === 1;
    const batch = new FrameBatch(64);
    fe.sendFrame(base4(prng(5)));
    assertEquals(r.dev.pollWithRing(1_000, bytes) & PollEvents.TX, PollEvents.TX);
    assert(noNotify(), "frames flow: VRING_USED_F_NO_NOTIFY set");
    assertEquals(r.dev.receiveBurst(batch), 1);
    assertEquals((txq.availEvent() - txq.availIdx) & 0xffff, 0x8000, "avail_event far ahead");
    // A frame added without a kick is found by the next poll itself.
    txq.addChain([{ addr: fe.allocGuest(80), len: 80, write: false }]);
    assertEquals(r.dev.pollWithRing(1_000, bytes) & PollEvents.TX, PollEvents.TX);
    assertEquals(r.dev.receiveBurst(batch), 1);
    // Nothing more: before it sleeps the poll asks for kicks again.
    assertEquals(r.dev.pollWithRing(30, bytes), 0);
    assert(!noNotify(), "about to sleep: kicks wanted again");
    assertEquals(txq.availEvent(), txq.availIdx, "avail_event at the next buffer");
  } finally {
    r.close();
  }
});

Deno.test("poll: while no frame waits, the guest is asked not to kick its receive queue (refills wake nobody)", () => {
  const { r, fe } = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  try {
    const rxq = fe.rings[RXQ];
    const noNotify = () => (fe.mem.u16(rxq.used) & 1) === 1;
    assert(!noNotify(), "before the first poll the ring is as the guest set it up");
    fe.postRx(8, 2048);
    r.dev.pollWithRing(30, new Uint8Array(smallRing()));
    assert(noNotify(), "VRING_USED_F_NO_NOTIFY set on the receive queue");
    // Half the index space past what the device consumed (none of the 8 buffers yet).
    assertEquals((rxq.availEvent() - rxq.availIdx) & 0xffff, 0x8000 - 8, "avail_event far ahead");
    // Still so after the loop slept: unlike the transmit queue, nothing re-arms it.
    assertEquals(r.dev.pollWithRing(30, new Uint8Array(smallRing())) & PollEvents.TX, 0);
    assert(noNotify(), "still off after a sleep");
  } finally {
    r.close();
  }
});

Deno.test("fast path: TCP offloads go straight only to a guest that negotiated them", () => {
  const a = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  const offloads = bit(Feature.NET_GUEST_CSUM) | bit(Feature.NET_GUEST_TSO4) |
    bit(Feature.NET_GUEST_TSO6);
  const plain = running({ features: ALL_FEATURES, protocolFeatures: ALL_PROTOCOL_FEATURES });
  const able = running({
    features: ALL_FEATURES | offloads,
    protocolFeatures: ALL_PROTOCOL_FEATURES,
  });
  try {
    const batch = new FrameBatch(64);
    const res = new Uint32Array(4);
    const rand = prng(13);
    for (const [peer, takes] of [[plain, false], [able, true]] as const) {
      const sab = smallRing(64);
      const ring = new FrameRing(sab);
      const table = tableFor(peer.r.dev.handle, sab);
      peer.r.dev.setDirectReceive(true);
      peer.fe.postRx(16, 65_562);
      const sent = [tcpOffloaded(false, true, rand), tcpOffloaded(true, false, rand)];
      for (const t of sent) a.fe.sendFrame(t.frame, { header: t.meta });
      assertEquals(a.r.dev.receiveForwarding(batch, table.bytes, res), 0);
      a.fe.rings[TXQ].takeUsed();
      const expect = sent.map((t) => slowPath(t.frame, t.meta));
      assertEquals([res[0], res[2]], [2, takes ? 2 : 0], `direct: ${takes}`);
      if (takes) {
        const got = peer.fe.readRxWithHeaders();
        assertEquals(got.map((g) => g.frame), expect);
        assertEquals(got.map((g) => [...g.header]), sent.map((t) => [...t.meta]), "headers kept");
      } else {
        const got: Uint8Array[] = [];
        ring.drain(10, (f, m) => {
          got.push(f.slice());
          assert(m[0] === NEEDS_CSUM, "offload left for the owner to adapt");
        });
        assertEquals(got, expect);
      }
    }
  } finally {
    a.r.close();
    plain.r.close();
    able.r.close();
  }
});

/** A UDP frame to the peer of exactly `len` bytes whose payload is a pattern of `seed`. */
function sized4(len: number, seed: number): Uint8Array {
  const payload = new Uint8Array(len - 14 - 20 - 8);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + seed) & 0xff;
  const f = frameOf(ipv4UdpFrame(OWN_MAC, GATEWAY_MAC, OWN4, PEER4, 5000, 6000, payload));
  assertEquals(f.length, len);
  return f;
}

Deno.test("fast path: a large frame goes guest to guest in one copy, whatever its chain's layout", () => {
  const p = pair();
  const { a, b, ring, table, batch, res } = p;
  try {
    b.r.dev.setDirectReceive(true);
    // [frame length, descriptors of the sender's chain, indirect, copied once]: the first
    // 128 bytes are copied into the burst, the rest comes from at most 8 pieces of the chain.
    const cases: [number, number, boolean, boolean][] = [
      [1514, 1, false, true],
      [1514, 3, false, true],
      [1514, 8, false, true],
      [1514, 9, false, false], // the rest lies in 9 pieces: copied whole
      [1514, 40, false, false],
      [1514, 5, true, true],
      [512, 2, false, true],
      [511, 1, false, false], // too short to be worth it
      [60, 1, false, false],
    ];
    // Receive buffers of 256 bytes: a large frame is merged over several (MRG_RXBUF).
    b.fe.postRx(128, 256);
    const frames = cases.map(([len], i) => sized4(len, i));
    cases.forEach(([, pieces, indirect], i) => a.fe.sendFrame(frames[i], { pieces, indirect }));
    assertEquals(a.r.dev.receiveForwarding(batch, table.bytes, res), 0);
    assertEquals(a.fe.rings[TXQ].takeUsed().length, cases.length, "every chain given back");
    const once = cases.filter((c) => c[3]).length;
    assertEquals([res[0], res[2], res[3]], [cases.length, cases.length, once]);
    const got = b.fe.readRx();
    assertEquals(got.map((g) => g.frame), frames.map((f) => slowPath(f, new Uint8Array(10))));
    assert(got[0].numBuffers > 1, "merged over several receive buffers");
    assert(!ring.ready(), "nothing went through the ring");
    assertEquals(b.r.dev.counters().rx_packets, cases.length);
  } finally {
    p.close();
  }
});

Deno.test("fast path: a large frame that waits in the peer's ring is whole there before its buffers go back", () => {
  const p = pair();
  const { a, b, ring, table, batch, res } = p;
  try {
    b.r.dev.setDirectReceive(true);
    b.fe.postRx(1, 2048);
    const frames = [sized4(1514, 1), sized4(1000, 2), sized4(1514, 3)];
    const at = frames.map((f) => a.fe.allocGuest(12 + f.length));
    frames.forEach((f, i) => a.fe.sendFrame(f, { pieces: 3, at: at[i] }));
    assertEquals(a.r.dev.receiveForwarding(batch, table.bytes, res), 0);
    assertEquals([res[0], res[2], res[3]], [3, 1, 1], "one buffer: one straight, two to the ring");
    assertEquals(a.fe.rings[TXQ].takeUsed().length, 3);
    // The guest reuses its buffers as soon as it has them back: what waits in the ring must
    // not be read from them any more.
    at.forEach((addr, i) => a.fe.mem.write(addr, new Uint8Array(12 + frames[i].length).fill(0xee)));
    const expect = frames.map((f) => slowPath(f, new Uint8Array(10)));
    assertEquals(b.fe.readRx().map((g) => g.frame), expect.slice(0, 1));
    const waiting: Uint8Array[] = [];
    ring.drain(10, (f) => waiting.push(f.slice()));
    assertEquals(waiting, expect.slice(1));
  } finally {
    p.close();
  }
});
