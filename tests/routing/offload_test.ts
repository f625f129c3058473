import { assert, assertEquals } from "../assert.ts";
import {
  adaptForReceiver,
  capsFromFeatures,
  checkOffload,
  completeChecksum,
  GSO_ECN,
  GSO_NONE,
  GSO_TCPV4,
  GSO_TCPV6,
  GSO_UDP,
  gsoSegmentIpLen,
  HDR_F_DATA_VALID,
  HDR_F_NEEDS_CSUM,
  MAX_SEGMENT,
  type NetHeader,
  NO_CAPS,
  type OffloadCaps,
  OffloadFeature,
  prepareFromGuest,
  pushToTun,
  readNetHeader,
  writeNetHeader,
} from "../../routing/offload.ts";
import { FrameRing } from "../../routing/ring.ts";
import { forward, type ForwardContext, type NicRoute, RateLimiter } from "../../routing/forward.ts";
import { RouteTable } from "../../routing/table.ts";
import { type Cidr, parseCidr, parseIpv4, parseIpv6, parseMac } from "../../wire/addr.ts";
import { read16, write16, write32 } from "../../wire/bytes.ts";
import { checksumAdd, checksumFinish, pseudoHeaderSum } from "../../wire/checksum.ts";
import { EthernetFrame, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../../wire/ethernet.ts";
import { IP_PROTO_TCP, IP_PROTO_UDP, Ipv4Packet } from "../../wire/ipv4.ts";
import { Ipv6Packet } from "../../wire/ipv6.ts";
import { TcpFlag, TcpSegment } from "../../wire/tcp.ts";
import { UdpPacket } from "../../wire/udp.ts";
import { parseIcmpv4 } from "../../wire/icmpv4.ts";
import { WireError } from "../../wire/error.ts";

function ok<T>(v: T | WireError): T {
  if (v instanceof WireError) throw new Error(`unexpected ${v}`);
  return v;
}

const SRC_MAC = parseMac("02:aa:00:00:00:01") as Uint8Array;
const DST_MAC = parseMac("02:00:00:00:00:01") as Uint8Array;
const V4_SRC = parseIpv4("10.0.0.2") as Uint8Array;
const V4_DST = parseIpv4("10.0.0.3") as Uint8Array;
const V6_SRC = parseIpv6("fd00::2") as Uint8Array;
const V6_DST = parseIpv6("fd00::3") as Uint8Array;
/** TCP timestamps option (kind 8, length 10) and two NOPs: a 32-byte header. */
const TS_OPTION = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

interface TcpSpec {
  v6: boolean;
  id?: number;
  seq: number;
  flags: number;
  payload: Uint8Array;
  options?: number[];
  /** Leave the pseudo-header sum in the checksum field (NEEDS_CSUM), not the full checksum. */
  partial?: boolean;
}

/**
 * A TCP frame written byte by byte, independent of the code under test: Ethernet, IPv4 (DF,
 * TTL 64) or IPv6 (hop limit 64), TCP with ACK number 0x01020304 and window 0x7000.
 */
function tcpFrame(s: TcpSpec): Uint8Array {
  const opts = s.options ?? [];
  const tcpLen = 20 + opts.length;
  const ipLen = s.v6 ? 40 : 20;
  const f = new Uint8Array(14 + ipLen + tcpLen + s.payload.length);
  f.set(DST_MAC, 0);
  f.set(SRC_MAC, 6);
  write16(f, 12, s.v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
  const l4 = 14 + ipLen;
  if (s.v6) {
    f[14] = 0x60;
    write16(f, 18, tcpLen + s.payload.length);
    f[20] = IP_PROTO_TCP;
    f[21] = 64;
    f.set(V6_SRC, 22);
    f.set(V6_DST, 38);
  } else {
    f[14] = 0x45;
    write16(f, 16, ipLen + tcpLen + s.payload.length);
    write16(f, 18, s.id ?? 0);
    write16(f, 20, 0x4000);
    f[22] = 64;
    f[23] = IP_PROTO_TCP;
    f.set(V4_SRC, 26);
    f.set(V4_DST, 30);
    write16(f, 24, checksumFinish(checksumAdd(0, f.subarray(14, 34))));
  }
  write16(f, l4, 40000);
  write16(f, l4 + 2, 5201);
  write32(f, l4 + 4, s.seq >>> 0);
  write32(f, l4 + 8, 0x01020304);
  f[l4 + 12] = (tcpLen / 4) << 4;
  f[l4 + 13] = s.flags;
  write16(f, l4 + 14, 0x7000);
  f.set(opts, l4 + 20);
  f.set(s.payload, l4 + tcpLen);
  const [src, dst] = s.v6 ? [V6_SRC, V6_DST] : [V4_SRC, V4_DST];
  const pseudo = pseudoHeaderSum(src, dst, IP_PROTO_TCP, tcpLen + s.payload.length);
  const csum = s.partial
    ? ~checksumFinish(pseudo) & 0xffff
    : checksumFinish(checksumAdd(pseudo, f.subarray(l4)));
  write16(f, l4 + 16, csum);
  return f;
}

function header(h: Partial<NetHeader>): Uint8Array {
  const meta = new Uint8Array(10);
  writeNetHeader(meta, {
    flags: 0,
    gsoType: GSO_NONE,
    hdrLen: 0,
    gsoSize: 0,
    csumStart: 0,
    csumOffset: 0,
    ...h,
  });
  return meta;
}

function gsoMeta(v6: boolean, gsoSize: number, tcpLen = 20, ecn = false): Uint8Array {
  const l4 = 14 + (v6 ? 40 : 20);
  return header({
    flags: HDR_F_NEEDS_CSUM,
    gsoType: (v6 ? GSO_TCPV6 : GSO_TCPV4) | (ecn ? GSO_ECN : 0),
    hdrLen: l4 + tcpLen,
    gsoSize,
    csumStart: l4,
    csumOffset: 16,
  });
}

function payload(n: number, seed = 0): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 7 + seed) & 0xff);
}

function collect(
  caps: OffloadCaps,
  meta: Uint8Array,
  frame: Uint8Array,
): { kind: string; out: { meta: Uint8Array; frame: Uint8Array }[] } {
  const out: { meta: Uint8Array; frame: Uint8Array }[] = [];
  const r = adaptForReceiver(caps, meta, frame, (m, f) => {
    out.push({ meta: m.slice(), frame: f.slice() });
    return true;
  }, new Uint8Array(MAX_SEGMENT));
  return { kind: r.kind, out };
}

/** Parses a segment with wire/ and checks every layer's checksum. */
function parseSegment(f: Uint8Array, v6: boolean) {
  const eth = ok(EthernetFrame.checked(f));
  assertEquals(eth.ethertype, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
  if (v6) {
    const ip = ok(Ipv6Packet.checked(eth.payload));
    return { ip4: null, ip6: ip, tcp: ok(TcpSegment.checked(ip.payload, ip.src, ip.dst)) };
  }
  const ip = ok(Ipv4Packet.checked(eth.payload)); // verifies the header checksum
  return { ip4: ip, ip6: null, tcp: ok(TcpSegment.checked(ip.payload, ip.src, ip.dst)) };
}

Deno.test("header fields round-trip little-endian", () => {
  const h = { flags: 1, gsoType: 0x81, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const meta = header(h);
  assertEquals([...meta], [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
  assertEquals(readNetHeader(meta), h);
});

Deno.test("TSO over IPv4: segments byte-exact, ids, lengths, sequence, flags, checksums", () => {
  const data = payload(2500);
  const flags = TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN | TcpFlag.CWR;
  const big = tcpFrame({ v6: false, id: 0x1234, seq: 1000, flags, payload: data, partial: true });
  const r = collect(NO_CAPS, gsoMeta(false, 1000, 20, true), big);
  assertEquals(r.kind, "segmented");
  assertEquals(r.out.length, 3);
  const want = [
    { id: 0x1234, seq: 1000, flags: TcpFlag.ACK | TcpFlag.CWR, data: data.subarray(0, 1000) },
    { id: 0x1235, seq: 2000, flags: TcpFlag.ACK, data: data.subarray(1000, 2000) },
    {
      id: 0x1236,
      seq: 3000,
      flags: TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN,
      data: data.subarray(2000),
    },
  ];
  r.out.forEach((seg, i) => {
    const w = want[i];
    assertEquals(seg.frame, tcpFrame({ v6: false, ...w, payload: w.data }), `segment ${i} bytes`);
    assertEquals([...seg.meta], new Array(10).fill(0), "no offload left");
    const p = parseSegment(seg.frame, false);
    assertEquals(p.ip4!.totalLen, 40 + w.data.length);
    assertEquals(p.ip4!.identification, w.id);
    assertEquals(p.ip4!.dontFragment, true);
    assertEquals(p.ip4!.ttl, 64);
    assertEquals(p.tcp.seq, w.seq);
    assertEquals(p.tcp.ack, 0x01020304);
    assertEquals(p.tcp.flags, w.flags);
    assertEquals(p.tcp.window, 0x7000);
    assertEquals(p.tcp.payload, w.data);
  });
});

Deno.test("TSO over IPv6 with TCP options: payload lengths, options copied, checksums", () => {
  const data = payload(3000, 3);
  const big = tcpFrame({
    v6: true,
    seq: 0xfffffc00, // the sequence number wraps in the second segment
    flags: TcpFlag.ACK | TcpFlag.PSH,
    payload: data,
    options: TS_OPTION,
    partial: true,
  });
  const r = collect(NO_CAPS, gsoMeta(true, 1428, 32), big);
  assertEquals(r.kind, "segmented");
  assertEquals(r.out.map((s) => s.frame.length), [
    14 + 40 + 32 + 1428,
    14 + 40 + 32 + 1428,
    14 + 40 + 32 + 144,
  ]);
  r.out.forEach((seg, i) => {
    const from = i * 1428;
    const part = data.subarray(from, Math.min(from + 1428, data.length));
    const flags = i === 2 ? TcpFlag.ACK | TcpFlag.PSH : TcpFlag.ACK;
    const seq = (0xfffffc00 + from) >>> 0;
    assertEquals(
      seg.frame,
      tcpFrame({ v6: true, seq, flags, payload: part, options: TS_OPTION }),
      `segment ${i} bytes`,
    );
    const p = parseSegment(seg.frame, true);
    assertEquals(p.ip6!.payloadLen, 32 + part.length);
    assertEquals(p.ip6!.hopLimit, 64);
    assertEquals(p.tcp.seq, seq);
    assertEquals(p.tcp.options, new Uint8Array(TS_OPTION));
    assertEquals(p.tcp.payload, part);
  });
});

Deno.test("TSO over IPv4: the IP identification wraps at 65535", () => {
  const big = tcpFrame({
    v6: false,
    id: 0xffff,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(200),
    partial: true,
  });
  const r = collect(NO_CAPS, gsoMeta(false, 100), big);
  assertEquals(r.out.map((s) => parseSegment(s.frame, false).ip4!.identification), [0xffff, 0]);
});

Deno.test("a GSO frame whose payload fits one segment becomes one complete frame", () => {
  const data = payload(500);
  const big = tcpFrame({
    v6: false,
    id: 9,
    seq: 5,
    flags: TcpFlag.ACK | TcpFlag.FIN,
    payload: data,
    partial: true,
  });
  const r = collect(NO_CAPS, gsoMeta(false, 1448), big);
  assertEquals(r.out.length, 1);
  assertEquals(
    r.out[0].frame,
    tcpFrame({ v6: false, id: 9, seq: 5, flags: TcpFlag.ACK | TcpFlag.FIN, payload: data }),
  );
});

Deno.test("checksum completion: TCP over IPv4 gives the full checksum", () => {
  const data = payload(777);
  const partial = tcpFrame({
    v6: false,
    seq: 42,
    flags: TcpFlag.ACK,
    payload: data,
    partial: true,
  });
  const meta = header({ flags: HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
  const r = collect({ ...NO_CAPS, tso4: true }, meta, partial);
  assertEquals(r.kind, "completed");
  assertEquals(r.out[0].frame, tcpFrame({ v6: false, seq: 42, flags: TcpFlag.ACK, payload: data }));
  assertEquals(r.out[0].meta[0] & HDR_F_NEEDS_CSUM, 0, "NEEDS_CSUM cleared");
  parseSegment(r.out[0].frame, false);
});

/** A UDP datagram over IPv6 with a partial checksum (the pseudo-header sum in the field). */
function udp6Partial(data: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + 40 + 8 + data.length);
  f.set(DST_MAC, 0);
  f.set(SRC_MAC, 6);
  write16(f, 12, ETHERTYPE_IPV6);
  f[14] = 0x60;
  write16(f, 18, 8 + data.length);
  f[20] = IP_PROTO_UDP;
  f[21] = 64;
  f.set(V6_SRC, 22);
  f.set(V6_DST, 38);
  write16(f, 54, 546);
  write16(f, 56, 547);
  write16(f, 58, 8 + data.length);
  f.set(data, 62);
  write16(
    f,
    60,
    ~checksumFinish(pseudoHeaderSum(V6_SRC, V6_DST, IP_PROTO_UDP, 8 + data.length)) & 0xffff,
  );
  return f;
}

Deno.test("checksum completion: UDP over IPv6 verifies, and a zero result is sent as 0xffff", () => {
  const meta = () => header({ flags: HDR_F_NEEDS_CSUM, csumStart: 54, csumOffset: 6 });
  const f = udp6Partial(payload(101));
  assert(completeChecksum(meta(), f));
  ok(UdpPacket.checked(f.subarray(54), V6_SRC, V6_DST));
  // Two payload bytes chosen so that the datagram sums to 0xffff: the computed checksum is 0.
  const z = udp6Partial(payload(100));
  write16(z, 62, 0);
  const c0 = checksumFinish(checksumAdd(0, z.subarray(54)));
  write16(z, 62, c0);
  assert(completeChecksum(meta(), z));
  assertEquals(read16(z, 60), 0xffff);
  ok(UdpPacket.checked(z.subarray(54), V6_SRC, V6_DST));
});

Deno.test("a receiver with the offloads gets the frame as it is, header included", () => {
  const big = tcpFrame({
    v6: false,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(4000),
    partial: true,
  });
  const meta = gsoMeta(false, 1448, 20, true);
  const caps = capsFromFeatures(
    (1n << BigInt(OffloadFeature.GUEST_CSUM)) | (1n << BigInt(OffloadFeature.GUEST_TSO4)) |
      (1n << BigInt(OffloadFeature.GUEST_ECN)),
  );
  const r = collect(caps, meta, big.slice());
  assertEquals(r.kind, "passed");
  assertEquals(r.out[0].frame, big);
  assertEquals(r.out[0].meta, meta);
  // Without GUEST_ECN the ECN frame is cut; without GUEST_CSUM the TSO features mean nothing.
  assertEquals(collect({ ...caps, ecn: false }, meta, big.slice()).kind, "segmented");
  assertEquals(capsFromFeatures(1n << BigInt(OffloadFeature.GUEST_TSO4)).tso4, false);
  // An IPv6 GSO frame to a receiver with TSO4 only is cut too.
  const big6 = tcpFrame({
    v6: true,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(4000),
    partial: true,
  });
  assertEquals(collect({ ...caps, tso6: false }, gsoMeta(true, 1440), big6).out.length, 3);
  // A partial checksum passes to a receiver with GUEST_CSUM.
  const small = tcpFrame({
    v6: false,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(10),
    partial: true,
  });
  const csum = header({ flags: HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
  assertEquals(collect(caps, csum, small.slice()).out[0].frame, small);
});

Deno.test("bad metadata is refused with a reason", () => {
  const f = tcpFrame({
    v6: false,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(3000),
    partial: true,
  });
  assertEquals(checkOffload(header({ flags: 4 }), f), "offload_bad_flags");
  assertEquals(checkOffload(header({ flags: HDR_F_DATA_VALID }), f), null);
  assertEquals(
    checkOffload(header({ flags: HDR_F_NEEDS_CSUM, csumStart: f.length - 1, csumOffset: 0 }), f),
    "offload_bad_csum",
  );
  assertEquals(
    checkOffload(header({ flags: HDR_F_NEEDS_CSUM, csumStart: 2 }), f),
    "offload_bad_csum",
  );
  assertEquals(
    checkOffload(header({ ...readNetHeader(gsoMeta(false, 1000)), gsoType: GSO_UDP }), f),
    "offload_gso_unsupported",
  );
  assertEquals(checkOffload(gsoMeta(true, 1000), f), "offload_gso_malformed", "IPv6 type on IPv4");
  assertEquals(checkOffload(gsoMeta(false, 0), f), "offload_gso_malformed", "gso_size 0");
  assertEquals(
    checkOffload(header({ ...readNetHeader(gsoMeta(false, 1000)), flags: 0 }), f),
    "offload_gso_malformed",
    "GSO without NEEDS_CSUM",
  );
  assertEquals(checkOffload(gsoMeta(false, 1000), f.subarray(0, 60)), "offload_gso_malformed");
  assertEquals(checkOffload(gsoMeta(false, 1000), f), null);
  const r = collect(NO_CAPS, gsoMeta(false, 0), f);
  assertEquals(r.kind, "dropped");
  assertEquals(r.out.length, 0);
});

Deno.test("prepareFromGuest completes a partial UDP checksum (DHCP) and leaves TCP partial", () => {
  const udp = udp6Partial(payload(300));
  const meta = header({ flags: HDR_F_NEEDS_CSUM, csumStart: 54, csumOffset: 6 });
  assertEquals(prepareFromGuest(meta, udp), null);
  ok(UdpPacket.checked(udp.subarray(54), V6_SRC, V6_DST));
  assertEquals(meta[0], 0, "NEEDS_CSUM cleared");
  const tcp = tcpFrame({
    v6: false,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(30),
    partial: true,
  });
  const before = tcp.slice();
  const tmeta = header({ flags: HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
  assertEquals(prepareFromGuest(tmeta, tcp), null);
  assertEquals(tcp, before, "TCP left for the receiver");
  assertEquals(tmeta[0], HDR_F_NEEDS_CSUM);
});

Deno.test("pushToTun puts complete IP packets into the ring", () => {
  const ring = new FrameRing(FrameRing.allocate(16, 1600));
  const big = tcpFrame({
    v6: false,
    id: 1,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(3000),
    partial: true,
  });
  const ip = big.subarray(14);
  assertEquals(pushToTun(ring, ip, gsoMeta(false, 1460), big), null);
  const got: Uint8Array[] = [];
  ring.drain(10, (p) => got.push(p.slice()));
  assertEquals(got.map((p) => p.length), [1500, 1500, 120]);
  for (const p of got) {
    const v4 = ok(Ipv4Packet.checked(p));
    ok(TcpSegment.checked(v4.payload, v4.src, v4.dst));
  }
});

function fwdCtx(mtu: number): ForwardContext {
  const routes = new RouteTable<NicRoute>();
  const b = { id: "b", mac: parseMac("02:bb:00:00:00:02") as Uint8Array };
  routes.insert(parseCidr("10.0.0.3/32", 4) as Cidr, b);
  routes.insert(parseCidr("fd00::3/128", 6) as Cidr, b);
  return {
    nic: { id: "a", mac: SRC_MAC, ipv4: V4_SRC, ipv6: V6_SRC, routed: [] },
    gatewayMac: DST_MAC,
    isPublic: false,
    mtu,
    routes,
    icmpErrors: new RateLimiter(100, 10),
    nowMs: 1000,
  };
}

Deno.test("the router passes GSO frames whose segments fit the MTU and refuses real oversize", () => {
  const big = tcpFrame({
    v6: false,
    id: 1,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(30000),
    partial: true,
  });
  assertEquals(gsoSegmentIpLen(gsoMeta(false, 1460), big), 1500);
  const v = forward(fwdCtx(1500), big, gsoMeta(false, 1460));
  assertEquals(v.kind, "deliver");
  const ip = ok(Ipv4Packet.checked(big.subarray(14)));
  assertEquals(ip.ttl, 63, "TTL decremented, header checksum still valid");
  // Segments of 1461 bytes would be 1501-byte packets: Fragmentation Needed with MTU 1500.
  const tooBig = tcpFrame({
    v6: false,
    id: 1,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(30000),
    partial: true,
  });
  const d = forward(fwdCtx(1500), tooBig, gsoMeta(false, 1461));
  assertEquals(d.kind, "drop");
  if (d.kind !== "drop") return;
  assertEquals(d.reason, "too_big");
  const icmp = ok(parseIcmpv4(ok(Ipv4Packet.checked(d.reply!.subarray(14))).payload));
  assertEquals(icmp.kind, "dest_unreachable");
  if (icmp.kind === "dest_unreachable") assertEquals(icmp.nextHopMtu, 1500);
  // The same 30 KB without GSO is oversize.
  const plain = tcpFrame({ v6: false, id: 1, seq: 1, flags: TcpFlag.ACK, payload: payload(30000) });
  assertEquals(forward(fwdCtx(1500), plain).kind, "drop");
  // IPv6: passes with segments of 1440 (40 + 20 + 1440 = 1500), Packet Too Big at 1441.
  const big6 = tcpFrame({
    v6: true,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(20000),
    partial: true,
  });
  assertEquals(forward(fwdCtx(1500), big6, gsoMeta(true, 1440)).kind, "deliver");
  assertEquals(ok(Ipv6Packet.checked(big6.subarray(14))).hopLimit, 63);
  const big6b = tcpFrame({
    v6: true,
    seq: 1,
    flags: TcpFlag.ACK,
    payload: payload(20000),
    partial: true,
  });
  const d6 = forward(fwdCtx(1500), big6b, gsoMeta(true, 1441));
  assertEquals(d6.kind === "drop" && d6.reason, "too_big");
});
