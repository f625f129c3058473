import { assertEquals } from "../assert.ts";
import { DropCounters, GATEWAY_IPV4, handleGuestFrame } from "../../services/mod.ts";
import {
  ARP_OP_REPLY,
  emitIcmpv4,
  emitUdp,
  ETHERTYPE_ARP,
  formatIpv4,
  formatMac,
  IP_PROTO_ICMP,
  IP_PROTO_UDP,
  parseArp,
  parseEthernet,
  parseIcmpv4,
  parseIpv4Packet,
} from "../../wire/mod.ts";
import {
  assertDrop,
  decodeIcmpv6,
  GUEST_LL,
  guestArp,
  guestIcmpv6,
  guestIpv4,
  guestIpv6,
  mac,
  ok,
  onlyReply,
  testCtx,
  v4,
  v6,
} from "./helpers.ts";

Deno.test("ARP request for 169.254.0.1 is answered with the gateway MAC, to the guest", () => {
  const counters = new DropCounters();
  const frame = onlyReply(
    handleGuestFrame(testCtx(), guestArp({ targetIp: GATEWAY_IPV4 }), counters),
  );
  const e = ok(parseEthernet(frame));
  assertEquals([formatMac(e.dst), formatMac(e.src), e.ethertype], [
    "52:54:00:12:34:56",
    "02:00:00:00:00:01",
    ETHERTYPE_ARP,
  ]);
  const arp = ok(parseArp(e.payload));
  assertEquals(arp.operation, ARP_OP_REPLY);
  assertEquals([formatMac(arp.senderMac), formatIpv4(arp.senderIp)], [
    "02:00:00:00:00:01",
    "169.254.0.1",
  ]);
  assertEquals([formatMac(arp.targetMac), formatIpv4(arp.targetIp)], [
    "52:54:00:12:34:56",
    "10.77.0.20",
  ]);
  assertEquals(counters.total(), 0);
});

Deno.test("ARP for any other address, ARP replies and spoofed sources are dropped and counted", () => {
  const counters = new DropCounters();
  const ctx = testCtx();
  assertDrop(
    handleGuestFrame(ctx, guestArp({ targetIp: v4("10.77.0.7") }), counters),
    "arp_target_not_gateway",
  );
  assertDrop(
    handleGuestFrame(ctx, guestArp({ targetIp: GATEWAY_IPV4, operation: 2 }), counters),
    "arp_not_request",
  );
  const spoofed = guestArp({ targetIp: GATEWAY_IPV4 });
  spoofed.set(mac("52:54:00:99:99:99"), 6);
  assertDrop(handleGuestFrame(ctx, spoofed, counters), "eth_src_not_vnic");
  assertDrop(
    handleGuestFrame(ctx, guestArp({ targetIp: GATEWAY_IPV4 }).subarray(0, 30), counters),
    "arp_malformed",
  );
  assertDrop(handleGuestFrame(ctx, new Uint8Array(10), counters), "eth_malformed");
  assertEquals(counters.counts.arp_target_not_gateway, 1);
  assertEquals(counters.counts.eth_src_not_vnic, 1);
  assertEquals(counters.total(), 5);
});

Deno.test("ping 169.254.0.1: echo reply with the same id, sequence and data", () => {
  const data = new Uint8Array(56).map((_, i) => i);
  const req = guestIpv4({
    dst: GATEWAY_IPV4,
    protocol: IP_PROTO_ICMP,
    payload: emitIcmpv4({ kind: "echo_request", ident: 0x4242, seq: 9, data }),
  });
  const frame = onlyReply(handleGuestFrame(testCtx(), req, new DropCounters()));
  const e = ok(parseEthernet(frame));
  assertEquals([formatMac(e.dst), formatMac(e.src)], ["52:54:00:12:34:56", "02:00:00:00:00:01"]);
  const ip = ok(parseIpv4Packet(e.payload));
  assertEquals([formatIpv4(ip.src), formatIpv4(ip.dst), ip.ttl], ["169.254.0.1", "10.77.0.20", 64]);
  assertEquals(ok(parseIcmpv4(ip.payload)), { kind: "echo_reply", ident: 0x4242, seq: 9, data });
});

Deno.test("IPv4 to other hosts is routed; odd traffic to the gateway is dropped", () => {
  const ctx = testCtx();
  const counters = new DropCounters();
  const echo = emitIcmpv4({ kind: "echo_request", ident: 1, seq: 1, data: new Uint8Array(8) });
  assertEquals(
    handleGuestFrame(
      ctx,
      guestIpv4({ dst: v4("10.77.0.30"), protocol: IP_PROTO_ICMP, payload: echo }),
      counters,
    ),
    { kind: "route" },
  );
  assertEquals(
    handleGuestFrame(
      ctx,
      guestIpv4({ dst: v4("8.8.8.8"), protocol: 6, payload: new Uint8Array(20) }),
      counters,
    ),
    { kind: "route" },
  );
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv4({ dst: GATEWAY_IPV4, protocol: 6, payload: new Uint8Array(20) }),
      counters,
    ),
    "ipv4_to_gateway_unhandled",
  );
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv4({ dst: GATEWAY_IPV4, protocol: IP_PROTO_ICMP, payload: echo, moreFragments: true }),
      counters,
    ),
    "ipv4_fragment_to_gateway",
  );
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv4({
        dst: GATEWAY_IPV4,
        protocol: IP_PROTO_ICMP,
        payload: emitIcmpv4({ kind: "echo_reply", ident: 1, seq: 1, data: new Uint8Array(0) }),
      }),
      counters,
    ),
    "icmpv4_not_echo_request",
  );
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv4({ src: v4("0.0.0.0"), dst: GATEWAY_IPV4, protocol: IP_PROTO_ICMP, payload: echo }),
      counters,
    ),
    "icmp_echo_bad_source",
  );
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv4({
        dst: v4("255.255.255.255"),
        protocol: IP_PROTO_UDP,
        payload: ok(
          emitUdp(
            { srcPort: 9, dstPort: 9, payload: new Uint8Array(1) },
            v4("10.77.0.20"),
            v4("255.255.255.255"),
          ),
        ),
      }),
      counters,
    ),
    "ipv4_broadcast_unhandled",
  );
  const bad = guestIpv4({ dst: GATEWAY_IPV4, protocol: IP_PROTO_ICMP, payload: echo });
  bad[14 + 8] ^= 1; // TTL: header checksum now wrong
  assertDrop(handleGuestFrame(ctx, bad, counters), "ipv4_malformed");
  assertEquals(counters.total(), 6);
});

Deno.test("ping fe80::1: echo reply from fe80::1 to the guest", () => {
  const data = new Uint8Array([1, 2, 3, 4, 5]);
  const frame = onlyReply(
    handleGuestFrame(
      testCtx(),
      guestIcmpv6({ kind: "echo_request", ident: 7, seq: 3, data }, v6("fe80::1"), {
        hopLimit: 64,
      }),
      new DropCounters(),
    ),
  );
  const { eth, ip, icmp } = decodeIcmpv6(frame);
  assertEquals([formatMac(eth.dst), formatMac(eth.src)], [
    "52:54:00:12:34:56",
    "02:00:00:00:00:01",
  ]);
  assertEquals([ip.src, ip.dst, ip.hopLimit], [v6("fe80::1"), GUEST_LL, 64]);
  assertEquals(icmp, { kind: "echo_reply", ident: 7, seq: 3, data });
});

Deno.test("IPv6: global unicast is routed, other link-local and multicast dropped", () => {
  const ctx = testCtx();
  const counters = new DropCounters();
  const echo = (dst: Uint8Array) =>
    guestIcmpv6({ kind: "echo_request", ident: 1, seq: 1, data: new Uint8Array(4) }, dst, {
      src: v6("fd00:77::18"),
      hopLimit: 64,
    });
  assertEquals(handleGuestFrame(ctx, echo(v6("fd00:77::5")), counters), { kind: "route" });
  assertEquals(handleGuestFrame(ctx, echo(v6("2001:db8::1")), counters), { kind: "route" });
  assertDrop(handleGuestFrame(ctx, echo(v6("fe80::2")), counters), "ipv6_link_local_not_gateway");
  assertDrop(handleGuestFrame(ctx, echo(v6("ff02::1")), counters), "ipv6_multicast_unhandled");
  assertDrop(
    handleGuestFrame(
      ctx,
      guestIpv6({ dst: v6("fe80::1"), nextHeader: 6, payload: new Uint8Array(20) }),
      counters,
    ),
    "ipv6_to_gateway_unhandled",
  );
  const bad = guestIcmpv6(
    { kind: "echo_request", ident: 1, seq: 1, data: new Uint8Array(4) },
    v6("fe80::1"),
  );
  bad[bad.length - 1] ^= 1;
  assertDrop(handleGuestFrame(ctx, bad, counters), "icmpv6_malformed");
  assertEquals(counters.total(), 4);
});
