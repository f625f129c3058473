/**
 * Offloads through the data path with two devices and two in-thread frontends: guest A (CSUM,
 * HOST_TSO4/6, HOST_ECN) sends GSO frames with partial checksums; they go through the shim's
 * TX burst, the router, the inbound ring and the receive adapter exactly as the vNIC actor
 * moves them, and guest B gets them as one large frame with its header when it negotiated
 * GUEST_TSO*, or as complete MSS-sized segments when it did not.
 */

import { assert, assertEquals } from "../assert.ts";
import { FrameBatch } from "../../vhost/device.ts";
import { GuestReceiver } from "../../vhost/receive.ts";
import { OFFERED_FEATURES } from "../../vhost/backend.ts";
import { bit, Feature } from "../../vhost/protocol.ts";
import {
  GSO_ECN,
  GSO_NONE,
  GSO_TCPV4,
  GSO_TCPV6,
  HDR_F_NEEDS_CSUM,
  prepareFromGuest,
  readNetHeader,
  writeNetHeader,
} from "../../routing/offload.ts";
import { forward, type ForwardContext, type NicRoute, RateLimiter } from "../../routing/forward.ts";
import { FrameRing } from "../../routing/ring.ts";
import { RouteTable } from "../../routing/table.ts";
import { type Cidr, parseCidr, parseIpv4, parseIpv6, parseMac } from "../../wire/addr.ts";
import { write16, write32 } from "../../wire/bytes.ts";
import { checksumFinish, pseudoHeaderSum } from "../../wire/checksum.ts";
import { EthernetFrame, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../../wire/ethernet.ts";
import { IP_PROTO_TCP, IP_PROTO_UDP, Ipv4Packet } from "../../wire/ipv4.ts";
import { Ipv6Packet } from "../../wire/ipv6.ts";
import { TcpFlag, TcpSegment } from "../../wire/tcp.ts";
import { UdpPacket } from "../../wire/udp.ts";
import { WireError } from "../../wire/error.ts";
import type { Frontend } from "../harness/frontend.ts";
import { ALL_PROTOCOL_FEATURES, type Rig, rig } from "../harness/setup.ts";

function ok<T>(v: T | WireError): T {
  if (v instanceof WireError) throw new Error(`unexpected ${v}`);
  return v;
}

const BASE = bit(Feature.VERSION_1) | bit(Feature.NET_MAC) | bit(Feature.NET_STATUS) |
  bit(Feature.NET_MTU) | bit(Feature.RING_EVENT_IDX) | bit(Feature.PROTOCOL_FEATURES);
const MRG = bit(Feature.NET_MRG_RXBUF);
const HOST_OFFLOADS = bit(Feature.NET_CSUM) | bit(Feature.NET_HOST_TSO4) |
  bit(Feature.NET_HOST_TSO6) | bit(Feature.NET_HOST_ECN);
const GUEST_OFFLOADS = bit(Feature.NET_GUEST_CSUM) | bit(Feature.NET_GUEST_TSO4) |
  bit(Feature.NET_GUEST_TSO6) | bit(Feature.NET_GUEST_ECN);

const A_MAC = "02:aa:00:00:00:01";
const B_MAC = "02:bb:00:00:00:02";
const GW_MAC = parseMac("02:00:00:00:00:01") as Uint8Array;
const A4 = parseIpv4("10.0.0.2") as Uint8Array;
const B4 = parseIpv4("10.0.0.3") as Uint8Array;
const A6 = parseIpv6("fd00::2") as Uint8Array;
const B6 = parseIpv6("fd00::3") as Uint8Array;
const MSS4 = 1448;
const MSS6 = 1428;
/** TCP header with timestamps, as Linux sends it. */
const TCP_LEN = 32;

/** A guest: its device, its frontend (8 MiB of RAM for 64 KiB frames) with `features`. */
function guest(features: bigint): { r: Rig; fe: Frontend } {
  const r = rig();
  const fe = r.connect({ regions: 1, regionSize: 0x800000 });
  fe.negotiate({ features, protocolFeatures: ALL_PROTOCOL_FEATURES });
  return { r, fe };
}

/** A TCP frame as Linux's TSO hands it to virtio: full IP lengths, a partial TCP checksum (the
 * pseudo-header sum), and the header that asks the device to segment it. */
function gsoFrame(v6: boolean, data: Uint8Array, flags: number): {
  frame: Uint8Array;
  header: Uint8Array;
} {
  const l4 = 14 + (v6 ? 40 : 20);
  const f = new Uint8Array(l4 + TCP_LEN + data.length);
  f.set(GW_MAC, 0);
  f.set(parseMac(A_MAC) as Uint8Array, 6);
  write16(f, 12, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
  if (v6) {
    f[14] = 0x60;
    write16(f, 18, TCP_LEN + data.length);
    f[20] = IP_PROTO_TCP;
    f[21] = 64;
    f.set(A6, 22);
    f.set(B6, 38);
  } else {
    f[14] = 0x45;
    write16(f, 16, 20 + TCP_LEN + data.length);
    write16(f, 18, 0x4242);
    write16(f, 20, 0x4000);
    f[22] = 64;
    f[23] = IP_PROTO_TCP;
    f.set(A4, 26);
    f.set(B4, 30);
    let sum = 0;
    for (let i = 14; i < 34; i += 2) sum += (f[i] << 8) | f[i + 1];
    write16(f, 24, checksumFinish(sum));
  }
  write16(f, l4, 33000);
  write16(f, l4 + 2, 5201);
  write32(f, l4 + 4, 0x10000000);
  write32(f, l4 + 8, 77);
  f[l4 + 12] = (TCP_LEN / 4) << 4;
  f[l4 + 13] = flags;
  write16(f, l4 + 14, 512);
  f.set([1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6], l4 + 20);
  f.set(data, l4 + TCP_LEN);
  const [src, dst] = v6 ? [A6, B6] : [A4, B4];
  const pseudo = pseudoHeaderSum(src, dst, IP_PROTO_TCP, TCP_LEN + data.length);
  write16(f, l4 + 16, ~checksumFinish(pseudo) & 0xffff);
  const header = new Uint8Array(10);
  writeNetHeader(header, {
    flags: HDR_F_NEEDS_CSUM,
    gsoType: (v6 ? GSO_TCPV6 : GSO_TCPV4) | GSO_ECN,
    hdrLen: l4 + TCP_LEN,
    gsoSize: v6 ? MSS6 : MSS4,
    csumStart: l4,
    csumOffset: 16,
  });
  return { frame: f, header };
}

function routes(ring: FrameRing): ForwardContext {
  const table = new RouteTable<NicRoute & { ring: FrameRing }>();
  const b = { id: "b", mac: parseMac(B_MAC) as Uint8Array, ring };
  table.insert(parseCidr("10.0.0.3/32", 4) as Cidr, b);
  table.insert(parseCidr("fd00::3/128", 6) as Cidr, b);
  return {
    nic: { id: "a", mac: parseMac(A_MAC) as Uint8Array, ipv4: A4, ipv6: A6, routed: [] },
    gatewayMac: GW_MAC,
    isPublic: false,
    mtu: 1500,
    routes: table,
    icmpErrors: new RateLimiter(100, 10),
    nowMs: 0,
  };
}

/** Moves what guest A sent to guest B the way the vNIC actors do; returns drop reasons. */
function route(a: Rig, b: Rig, ring: FrameRing): string[] {
  const drops: string[] = [];
  const tx = new FrameBatch(64);
  a.dev.receiveBurst(tx);
  const ctx = routes(ring);
  for (let i = 0; i < tx.count; i++) {
    const bad = prepareFromGuest(tx.meta(i), tx.frame(i));
    if (bad) {
      drops.push(bad);
      continue;
    }
    const v = forward(ctx, tx.frame(i), tx.meta(i));
    if (v.kind !== "deliver") drops.push(v.kind === "drop" ? v.reason : v.kind);
    else assert(ring.push(tx.frame(i), tx.meta(i)), "ring took the frame");
  }
  const rx = new GuestReceiver(b.dev, b.dev.frameBuffer(128), (why) => drops.push(why));
  rx.begin();
  ring.drain(64, (f, m) => rx.push(f, m));
  rx.flush();
  return drops;
}

function payload(n: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 13 + 5) & 0xff);
}

function sizes(total: number, mss: number): number[] {
  const out = [];
  for (let left = total; left > 0; left -= mss) out.push(Math.min(mss, left));
  return out;
}

Deno.test("the device offers the checksum, TSO and ECN offloads", () => {
  for (
    const f of [
      Feature.NET_CSUM,
      Feature.NET_GUEST_CSUM,
      Feature.NET_HOST_TSO4,
      Feature.NET_HOST_TSO6,
      Feature.NET_HOST_ECN,
      Feature.NET_GUEST_TSO4,
      Feature.NET_GUEST_TSO6,
      Feature.NET_GUEST_ECN,
    ]
  ) {
    assert((OFFERED_FEATURES & bit(f)) !== 0n, `feature bit ${f} offered`);
  }
  const { r, fe } = guest(BASE | MRG | HOST_OFFLOADS | GUEST_OFFLOADS);
  try {
    assertEquals(r.dev.features, fe.features, "the device keeps what the driver accepted");
    assert((r.dev.features & bit(Feature.NET_HOST_TSO4)) !== 0n);
  } finally {
    r.close();
  }
});

for (const v6 of [false, true]) {
  const family = v6 ? "IPv6" : "IPv4";
  const mss = v6 ? MSS6 : MSS4;
  const l4 = 14 + (v6 ? 40 : 20);

  Deno.test(`${family} GSO frame to a guest with GUEST_TSO: one frame, header carried`, () => {
    const a = guest(BASE | MRG | HOST_OFFLOADS);
    const b = guest(BASE | MRG | GUEST_OFFLOADS);
    try {
      const data = payload(60000);
      const { frame, header } = gsoFrame(v6, data, TcpFlag.ACK | TcpFlag.PSH | TcpFlag.CWR);
      a.fe.sendFrame(frame, { header, pieces: 3 });
      b.fe.postRx(64, 4096);
      assertEquals(route(a.r, b.r, new FrameRing(FrameRing.allocate(256, 1518))), []);
      const got = b.fe.readRxWithHeaders();
      assertEquals(got.length, 1, "one frame");
      assert(got[0].numBuffers > 1, "merged over several receive buffers");
      assertEquals(readNetHeader(got[0].header), readNetHeader(header), "header as sent");
      const want = frame.slice();
      want.set(parseMac(B_MAC) as Uint8Array, 0);
      want.set(GW_MAC, 6);
      if (v6) want[21] = 63; // hop limit
      const f = got[0].frame;
      assertEquals(f.subarray(0, 14), want.subarray(0, 14), "MACs rewritten");
      if (v6) {
        assertEquals(ok(Ipv6Packet.checked(f.subarray(14))).hopLimit, 63);
      } else {
        const ip = ok(Ipv4Packet.checked(f.subarray(14)));
        assertEquals(ip.ttl, 63);
        assertEquals(ip.totalLen, 20 + TCP_LEN + data.length);
      }
      assertEquals(f.subarray(l4), want.subarray(l4), "TCP header and payload untouched");
      assertEquals(b.r.dev.counters().rx_packets, 1);
    } finally {
      a.r.close();
      b.r.close();
    }
  });

  Deno.test(`${family} GSO frame to a guest without offloads: MSS segments, all complete`, () => {
    const a = guest(BASE | MRG | HOST_OFFLOADS);
    const b = guest(BASE | MRG);
    try {
      const data = payload(20000);
      const { frame, header } = gsoFrame(v6, data, TcpFlag.ACK | TcpFlag.PSH | TcpFlag.CWR);
      a.fe.sendFrame(frame, { header });
      b.fe.postRx(64, 2048);
      assertEquals(route(a.r, b.r, new FrameRing(FrameRing.allocate(256, 1518))), []);
      const got = b.fe.readRxWithHeaders();
      const want = sizes(data.length, mss);
      assertEquals(got.map((g) => g.frame.length - l4 - TCP_LEN), want, "segment sizes");
      let seq = 0x10000000;
      got.forEach((g, i) => {
        const h = readNetHeader(g.header);
        assertEquals([h.flags, h.gsoType], [0, GSO_NONE], `segment ${i}: no offload`);
        const eth = ok(EthernetFrame.checked(g.frame));
        assertEquals(eth.dst, parseMac(B_MAC));
        let tcp: TcpSegment;
        if (v6) {
          const ip = ok(Ipv6Packet.checked(eth.payload));
          assertEquals(ip.payloadLen, TCP_LEN + want[i]);
          assertEquals(ip.hopLimit, 63);
          tcp = ok(TcpSegment.checked(ip.payload, ip.src, ip.dst));
        } else {
          const ip = ok(Ipv4Packet.checked(eth.payload));
          assertEquals(ip.totalLen, 20 + TCP_LEN + want[i]);
          assertEquals(ip.identification, 0x4242 + i);
          assertEquals(ip.ttl, 63);
          tcp = ok(TcpSegment.checked(ip.payload, ip.src, ip.dst));
        }
        assertEquals(tcp.seq, seq);
        const last = i === got.length - 1;
        assertEquals(
          tcp.flags,
          TcpFlag.ACK | (last ? TcpFlag.PSH : 0) | (i === 0 ? TcpFlag.CWR : 0),
          `segment ${i} flags`,
        );
        assertEquals(tcp.payload, data.subarray(seq - 0x10000000, seq - 0x10000000 + want[i]));
        seq += want[i];
      });
      assertEquals(b.r.dev.counters().rx_packets, want.length);
    } finally {
      a.r.close();
      b.r.close();
    }
  });
}

Deno.test("GUEST_TSO without MRG_RXBUF (big packets): the GSO frame fits one large buffer", () => {
  const a = guest(BASE | MRG | HOST_OFFLOADS);
  const b = guest(BASE | GUEST_OFFLOADS);
  try {
    const data = payload(40000);
    const { frame, header } = gsoFrame(false, data, TcpFlag.ACK);
    a.fe.sendFrame(frame, { header });
    b.fe.postRx(2, 65562 + 12); // Linux's "big packets" mode posts 64 KiB buffers
    assertEquals(route(a.r, b.r, new FrameRing(FrameRing.allocate(256, 1518))), []);
    const got = b.fe.readRxWithHeaders();
    assertEquals(got.length, 1);
    assertEquals(got[0].frame.length, frame.length);
    assertEquals(readNetHeader(got[0].header).gsoSize, MSS4);
  } finally {
    a.r.close();
    b.r.close();
  }
});

Deno.test("a header the receiver did not negotiate is dropped and counted by the shim", () => {
  const b = guest(BASE | MRG);
  try {
    b.fe.postRx(8, 2048);
    const batch = new FrameBatch(4);
    const { frame, header } = gsoFrame(false, payload(3000), TcpFlag.ACK);
    batch.push(frame, header);
    const csumOnly = header.slice();
    csumOnly[1] = GSO_NONE;
    batch.push(frame.subarray(0, 100), csumOnly);
    batch.push(frame.subarray(0, 100));
    assertEquals(b.r.dev.sendBurst(batch), 1, "only the plain frame");
    assertEquals(b.r.dev.counters().rx_drop_offload, 2);
    assertEquals(b.fe.readRx().map((g) => g.frame.length), [100]);
  } finally {
    b.r.close();
  }
});

Deno.test("a guest's DHCP with a partial UDP checksum is completed before the services", () => {
  const a = guest(BASE | MRG | HOST_OFFLOADS);
  try {
    // DHCPDISCOVER-shaped: 0.0.0.0:68 -> 255.255.255.255:67 with the pseudo-header sum only.
    const body = payload(300);
    const f = new Uint8Array(14 + 20 + 8 + body.length);
    f.fill(0xff, 0, 6);
    f.set(parseMac(A_MAC) as Uint8Array, 6);
    write16(f, 12, ETHERTYPE_IPV4);
    f[14] = 0x45;
    write16(f, 16, 28 + body.length);
    f[22] = 64;
    f[23] = IP_PROTO_UDP;
    f.fill(0xff, 30, 34);
    let sum = 0;
    for (let i = 14; i < 34; i += 2) sum += (f[i] << 8) | f[i + 1];
    write16(f, 24, checksumFinish(sum));
    write16(f, 34, 68);
    write16(f, 36, 67);
    write16(f, 38, 8 + body.length);
    f.set(body, 42);
    const src = f.slice(26, 30);
    const dst = f.slice(30, 34);
    write16(
      f,
      40,
      ~checksumFinish(pseudoHeaderSum(src, dst, IP_PROTO_UDP, 8 + body.length)) & 0xffff,
    );
    const header = new Uint8Array(10);
    writeNetHeader(header, {
      flags: HDR_F_NEEDS_CSUM,
      gsoType: GSO_NONE,
      hdrLen: 0,
      gsoSize: 0,
      csumStart: 34,
      csumOffset: 6,
    });
    assert(UdpPacket.checked(f.subarray(34), src, dst) instanceof WireError, "partial fails");
    a.fe.sendFrame(f, { header });
    const tx = new FrameBatch(4);
    assertEquals(a.r.dev.receiveBurst(tx), 1);
    assertEquals(readNetHeader(tx.meta(0)).flags, HDR_F_NEEDS_CSUM, "header arrived");
    assertEquals(prepareFromGuest(tx.meta(0), tx.frame(0)), null);
    ok(UdpPacket.checked(tx.frame(0).subarray(34), src, dst));
  } finally {
    a.r.close();
  }
});
