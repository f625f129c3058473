import { assert, assertEquals } from "../assert.ts";
import {
  decrementTtl,
  forward,
  type ForwardContext,
  type NicRoute,
  RateLimiter,
} from "../../routing/forward.ts";
import { RouteTable } from "../../routing/table.ts";
import { GATEWAY_IPV4, GATEWAY_IPV6 } from "../../services/context.ts";
import {
  type Cidr,
  formatMac,
  parseCidr,
  parseIpv4,
  parseIpv6,
  parseMac,
} from "../../wire/addr.ts";
import {
  emitEthernet,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  parseEthernet,
} from "../../wire/ethernet.ts";
import { emitIpv4Packet, Ipv4Packet, parseIpv4Packet } from "../../wire/ipv4.ts";
import { emitIpv6Packet, parseIpv6Packet } from "../../wire/ipv6.ts";
import { parseIcmpv4 } from "../../wire/icmpv4.ts";
import { parseIcmpv6 } from "../../wire/icmpv6.ts";
import { internetChecksum } from "../../wire/checksum.ts";
import { WireError } from "../../wire/error.ts";

/** Unwraps a parse result, failing the test on a wire error. */
function ok<T>(v: T | WireError): T {
  if (v instanceof WireError) throw new Error(`unexpected ${v}`);
  return v;
}

const mac = (s: string) => parseMac(s) as Uint8Array;
const ip4 = (s: string) => parseIpv4(s) as Uint8Array;
const ip6 = (s: string) => parseIpv6(s) as Uint8Array;
const GW = mac("02:00:00:00:00:01");
const A = { id: "a", mac: mac("02:aa:00:00:00:01") };
const B = { id: "b", mac: mac("02:bb:00:00:00:02") };

function ctx(over: Partial<ForwardContext> = {}): ForwardContext {
  const routes = new RouteTable<NicRoute>();
  routes.insert(parseCidr("10.0.0.2/32", 4) as Cidr, A);
  routes.insert(parseCidr("10.0.0.3/32", 4) as Cidr, B);
  routes.insert(parseCidr("192.168.50.0/24", 4) as Cidr, B);
  routes.insert(parseCidr("fd00::2/128", 6) as Cidr, A);
  routes.insert(parseCidr("fd00::3/128", 6) as Cidr, B);
  return {
    nic: {
      id: "a",
      mac: A.mac,
      ipv4: ip4("10.0.0.2"),
      ipv6: ip6("fd00::2"),
      routed: [parseCidr("172.16.0.0/16", 4) as Cidr],
    },
    gatewayMac: GW,
    isPublic: false,
    mtu: 1500,
    routes,
    icmpErrors: new RateLimiter(100, 10),
    nowMs: 1000,
    ...over,
  };
}

function v4frame(
  src: string,
  dst: string,
  opts: { ttl?: number; size?: number; df?: boolean; proto?: number } = {},
) {
  const payload = new Uint8Array(opts.size ?? 32).map((_, i) => i);
  const ip = emitIpv4Packet({
    tos: 0,
    identification: 7,
    dontFragment: opts.df ?? true,
    moreFragments: false,
    fragmentOffset: 0,
    ttl: opts.ttl ?? 64,
    protocol: opts.proto ?? 17,
    src: ip4(src),
    dst: ip4(dst),
    payload,
  }) as Uint8Array;
  return emitEthernet({ dst: GW, src: A.mac, ethertype: ETHERTYPE_IPV4, payload: ip });
}

function v6frame(
  src: string,
  dst: string,
  opts: { hop?: number; size?: number; next?: number } = {},
) {
  const ip = emitIpv6Packet({
    trafficClass: 0,
    flowLabel: 0,
    nextHeader: opts.next ?? 17,
    hopLimit: opts.hop ?? 64,
    src: ip6(src),
    dst: ip6(dst),
    payload: new Uint8Array(opts.size ?? 32),
  }) as Uint8Array;
  return emitEthernet({ dst: GW, src: A.mac, ethertype: ETHERTYPE_IPV6, payload: ip });
}

/** Decodes an ICMPv4 error frame the gateway sent. */
function icmp4Of(frame: Uint8Array) {
  const eth = ok(parseEthernet(frame));
  const ip = ok(parseIpv4Packet(eth.payload));
  return { eth, ip, icmp: ok(parseIcmpv4(ip.payload)) };
}

/** Decodes an ICMPv6 error frame the gateway sent. */
function icmp6Of(frame: Uint8Array) {
  const eth = ok(parseEthernet(frame));
  const ip = ok(parseIpv6Packet(eth.payload));
  return { eth, ip, icmp: ok(parseIcmpv6(ip.payload, ip.src, ip.dst)) };
}

Deno.test("IPv4 to another vNIC: MACs rewritten, TTL decremented, checksum still valid", () => {
  const f = v4frame("10.0.0.2", "10.0.0.3", { ttl: 64 });
  const v = forward(ctx(), f);
  assertEquals(v.kind === "deliver" && v.to.id, "b");
  const eth = ok(parseEthernet(f));
  assertEquals(formatMac(eth.dst), formatMac(B.mac));
  assertEquals(formatMac(eth.src), formatMac(GW));
  const p = ok(Ipv4Packet.checked(f.subarray(14)));
  assertEquals(p.ttl, 63);
});

Deno.test("a routed prefix of the destination receives; the sender's routed prefix may be a source", () => {
  assertEquals(forward(ctx(), v4frame("10.0.0.2", "192.168.50.9")).kind, "deliver");
  const v = forward(ctx(), v4frame("172.16.3.4", "10.0.0.3"));
  assertEquals(v.kind === "deliver" && v.to.id, "b");
});

Deno.test("a source that is neither the vNIC's address nor in its routed prefixes is dropped", () => {
  assertEquals(forward(ctx(), v4frame("10.0.0.3", "10.0.0.2")), {
    kind: "drop",
    reason: "spoofed_source",
  });
  assertEquals(forward(ctx(), v6frame("fd00::3", "fd00::2")), {
    kind: "drop",
    reason: "spoofed_source",
  });
  assertEquals(forward(ctx(), v6frame("fe80::2", "fd00::3")), {
    kind: "drop",
    reason: "link_local_source",
  });
});

Deno.test("TTL 1 is answered with Time Exceeded from 169.254.0.1 quoting the packet", () => {
  const f = v4frame("10.0.0.2", "10.0.0.3", { ttl: 1 });
  const original = f.slice(14);
  const v = forward(ctx(), f);
  assert(v.kind === "drop" && v.reason === "ttl_exceeded" && v.reply);
  const { eth, ip, icmp } = icmp4Of(v.reply);
  assertEquals(formatMac(eth.dst), formatMac(A.mac));
  assertEquals(formatMac(eth.src), formatMac(GW));
  assertEquals([...ip.src], [...GATEWAY_IPV4]);
  assertEquals([...ip.dst], [...ip4("10.0.0.2")]);
  assert(icmp.kind === "time_exceeded");
  assertEquals([...icmp.data], [...original]);
});

Deno.test("no vNIC holds the destination: unreachable on a private network, TUN on a public one", () => {
  const v = forward(ctx(), v4frame("10.0.0.2", "10.0.0.99"));
  assert(v.kind === "drop" && v.reason === "no_route" && v.reply);
  const { icmp } = icmp4Of(v.reply);
  assert(icmp.kind === "dest_unreachable");
  assertEquals(icmp.code, 1);
  const v6 = forward(ctx(), v6frame("fd00::2", "fd00::99"));
  assert(v6.kind === "drop" && v6.reason === "no_route" && v6.reply);
  const u6 = icmp6Of(v6.reply).icmp;
  assert(u6.kind === "dest_unreachable");
  assertEquals(u6.code, 3);
  const pub = forward(ctx({ isPublic: true }), v4frame("10.0.0.2", "198.51.100.7", { ttl: 9 }));
  assert(pub.kind === "tun");
  assertEquals(ok(Ipv4Packet.checked(pub.packet)).ttl, 8);
  const pub6 = forward(ctx({ isPublic: true }), v6frame("fd00::2", "2001:db8::1", { hop: 5 }));
  assertEquals(pub6.kind === "tun" && pub6.packet[7], 4);
});

Deno.test("packets over the MTU get Fragmentation Needed / Packet Too Big with the MTU", () => {
  const v = forward(ctx({ mtu: 1400 }), v4frame("10.0.0.2", "10.0.0.3", { size: 1400 }));
  assert(v.kind === "drop" && v.reason === "too_big" && v.reply);
  const { icmp } = icmp4Of(v.reply);
  assert(icmp.kind === "dest_unreachable");
  assertEquals([icmp.code, icmp.nextHopMtu], [4, 1400]);
  assert(v.reply.length - 14 <= 576, "the error fits 576 bytes");
  const v6 = forward(ctx({ mtu: 1280 }), v6frame("fd00::2", "fd00::3", { size: 1300 }));
  assert(v6.kind === "drop" && v6.reason === "too_big" && v6.reply);
  const e6 = icmp6Of(v6.reply);
  assertEquals([...e6.ip.src], [...GATEWAY_IPV6]);
  assert(e6.icmp.kind === "packet_too_big");
  assertEquals(e6.icmp.mtu, 1280);
  assert(v6.reply.length - 14 <= 1280, "the error fits the IPv6 minimum MTU");
});

Deno.test("hop limit 1 gets Time Exceeded; IPv6 to another vNIC decrements the hop limit", () => {
  const v = forward(ctx(), v6frame("fd00::2", "fd00::3", { hop: 1 }));
  assert(v.kind === "drop" && v.reason === "ttl_exceeded" && v.reply);
  const f = v6frame("fd00::2", "fd00::3", { hop: 64 });
  const d = forward(ctx(), f);
  assertEquals(d.kind === "deliver" && d.to.id, "b");
  assertEquals(f[14 + 7], 63);
  assertEquals(formatMac(f.subarray(0, 6)), formatMac(B.mac));
});

Deno.test("ICMP errors are rate-limited per vNIC and never sent about ICMP errors", () => {
  const c = ctx({ icmpErrors: new RateLimiter(1, 3) });
  const replies = Array.from({ length: 10 }, () => forward(c, v4frame("10.0.0.2", "10.0.0.99")))
    .filter((v) => v.kind === "drop" && v.reply).length;
  assertEquals(replies, 3);
  c.nowMs += 2000;
  assert(
    (forward(c, v4frame("10.0.0.2", "10.0.0.99")) as { reply?: Uint8Array }).reply,
    "tokens refill",
  );
  const icmpError = v4frame("10.0.0.2", "10.0.0.99", { proto: 1 });
  icmpError[14 + 20] = 3;
  const c2 = ctx();
  const v = forward(c2, icmpError);
  assertEquals(v, { kind: "drop", reason: "no_route" });
});

Deno.test("malformed and non-IP frames are dropped with their reason", () => {
  assertEquals(forward(ctx(), new Uint8Array(10)), { kind: "drop", reason: "not_ip" });
  const arp = v4frame("10.0.0.2", "10.0.0.3");
  arp[13] = 0x06;
  assertEquals(forward(ctx(), arp), { kind: "drop", reason: "not_ip" });
  const bad = v4frame("10.0.0.2", "10.0.0.3");
  bad[14 + 10] ^= 0xff;
  assertEquals(forward(ctx(), bad), { kind: "drop", reason: "malformed_ipv4" });
  assertEquals(forward(ctx(), v4frame("10.0.0.2", "224.0.0.5")), {
    kind: "drop",
    reason: "multicast_destination",
  });
});

Deno.test("the incremental TTL checksum update agrees with a full recomputation", () => {
  for (let i = 0; i < 5000; i++) {
    const h = new Uint8Array(20).map(() => Math.floor(Math.random() * 256));
    h[0] = 0x45;
    h[8] = 1 + Math.floor(Math.random() * 255);
    h[10] = 0;
    h[11] = 0;
    const c = internetChecksum(h);
    h[10] = c >> 8;
    h[11] = c & 0xff;
    decrementTtl(h);
    assertEquals(internetChecksum(h), 0, `header ${h}`);
  }
});
