/**
 * The parsers against real frames captured from busybox, ISC dhclient, dnsmasq, iputils,
 * ndisc6 and the Linux kernel (see tests/fixtures/README.md).
 */
import { assert, assertEquals } from "../assert.ts";
import { fixtureNames, loadFixture } from "../fixtures/fixtures.ts";
import {
  ARP_OP_REQUEST,
  DhcpMessageType,
  Dhcpv6MessageType,
  type Dhcpv6Repr,
  emitArp,
  emitDhcpv4,
  emitDhcpv6,
  emitEthernet,
  emitIcmpv4,
  emitIcmpv6,
  emitIpv4Packet,
  emitIpv6Packet,
  emitUdp,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  formatIpv4,
  formatIpv6,
  formatMac,
  IP_PROTO_ICMP,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  parseArp,
  parseDhcpv4,
  parseDhcpv6,
  parseEthernet,
  parseIcmpv4,
  parseIcmpv6,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
} from "../../wire/mod.ts";
import { ok } from "./helpers.ts";

function ipv4Of(name: string) {
  return ok(parseIpv4Packet(ok(parseEthernet(loadFixture(name))).payload));
}
function ipv6Of(name: string) {
  return ok(parseIpv6Packet(ok(parseEthernet(loadFixture(name))).payload));
}
function dhcpv4Of(name: string) {
  const ip = ipv4Of(name);
  return ok(parseDhcpv4(ok(parseUdp(ip.payload, ip.src, ip.dst)).payload));
}
function dhcpv6Of(name: string): Dhcpv6Repr {
  const ip = ipv6Of(name);
  return ok(parseDhcpv6(ok(parseUdp(ip.payload, ip.src, ip.dst)).payload));
}

Deno.test("fixtures: ARP request from the kernel", () => {
  const eth = ok(parseEthernet(loadFixture("arp_request_guest")));
  assertEquals(eth.ethertype, ETHERTYPE_ARP);
  const arp = ok(parseArp(eth.payload));
  assertEquals(arp.operation, ARP_OP_REQUEST);
  assertEquals(formatMac(arp.senderMac), "52:54:00:12:34:56");
  assertEquals(formatIpv4(arp.senderIp), "10.77.0.20");
  assertEquals(formatIpv4(arp.targetIp), "10.77.0.1");
});

Deno.test("fixtures: ping request/reply and its ICMP fields", () => {
  const req = ipv4Of("icmpv4_echo_request");
  assertEquals(req.protocol, IP_PROTO_ICMP);
  assertEquals(formatIpv4(req.dst), "10.77.0.1");
  const echo = ok(parseIcmpv4(req.payload));
  assertEquals(echo.kind, "echo_request");
  const rep = ok(parseIcmpv4(ipv4Of("icmpv4_echo_reply").payload));
  assert(echo.kind === "echo_request" && rep.kind === "echo_reply");
  assertEquals([rep.ident, rep.seq, rep.data], [echo.ident, echo.seq, echo.data]);
  assertEquals(echo.data.length, 56);
});

Deno.test("fixtures: udhcpc DISCOVER and REQUEST", () => {
  const d = dhcpv4Of("dhcpv4_udhcpc_discover");
  assertEquals(d.options.messageType, DhcpMessageType.DISCOVER);
  assertEquals(formatMac(d.chaddr), "52:54:00:12:34:56");
  assertEquals(d.options.hostName, "guest1");
  assertEquals(d.options.paramRequestList, [1, 3, 6, 12, 15, 28, 42, 121]);
  assertEquals(d.options.maxMessageSize, 576);
  assertEquals(Array.from(d.options.clientId ?? []), [1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
  const r = dhcpv4Of("dhcpv4_udhcpc_request");
  assertEquals(r.options.messageType, DhcpMessageType.REQUEST);
  assertEquals(r.xid, d.xid);
  assertEquals(formatIpv4(r.options.requestedIp!), "10.77.0.20");
  assertEquals(formatIpv4(r.options.serverId!), "10.77.0.1");
  const renew = dhcpv4Of("dhcpv4_udhcpc_renew");
  assertEquals(formatIpv4(renew.ciaddr), "10.77.0.20");
  assertEquals(renew.options.requestedIp, undefined);
  assertEquals(dhcpv4Of("dhcpv4_udhcpc_release").options.messageType, DhcpMessageType.RELEASE);
});

Deno.test("fixtures: udhcpd OFFER and ACK", () => {
  const o = dhcpv4Of("dhcpv4_udhcpd_offer");
  assertEquals(o.options.messageType, DhcpMessageType.OFFER);
  assertEquals(formatIpv4(o.yiaddr), "10.77.0.20");
  assertEquals(o.options.leaseTime, 600);
  assertEquals(formatIpv4(o.options.subnetMask!), "255.255.255.0");
  assertEquals(o.options.routers!.map(formatIpv4), ["10.77.0.1"]);
  assertEquals(o.options.dnsServers!.map(formatIpv4), ["10.77.0.53"]);
  assertEquals(dhcpv4Of("dhcpv4_udhcpd_ack").options.messageType, DhcpMessageType.ACK);
});

Deno.test("fixtures: dhclient SELECTING and INIT-REBOOT requests", () => {
  const s = dhcpv4Of("dhcpv4_dhclient_request");
  assertEquals(formatIpv4(s.options.serverId!), "10.77.0.1");
  assertEquals(s.options.paramRequestList?.includes(121), true);
  const ir = dhcpv4Of("dhcpv4_dhclient_init_reboot");
  assertEquals(ir.options.messageType, DhcpMessageType.REQUEST);
  assertEquals(ir.options.serverId, undefined);
  assertEquals(formatIpv4(ir.options.requestedIp!), "10.77.0.20");
});

Deno.test("fixtures: NS, NA, RS and dnsmasq's RA", () => {
  const ns = ipv6Of("ndp_ns_ndisc6");
  assertEquals(ns.hopLimit, 255);
  assertEquals(formatIpv6(ns.dst), "ff02::1:ff00:1");
  const nsMsg = ok(parseIcmpv6(ns.payload, ns.src, ns.dst));
  assert(nsMsg.kind === "neighbor_solicit");
  assertEquals(formatIpv6(nsMsg.target), "fe80::1");
  assertEquals(formatMac(nsMsg.options.sourceLinkAddr!), "52:54:00:12:34:56");
  const na = ipv6Of("ndp_na_server");
  const naMsg = ok(parseIcmpv6(na.payload, na.src, na.dst));
  assert(naMsg.kind === "neighbor_advert");
  assertEquals([naMsg.solicited, naMsg.override], [true, true]);
  assertEquals(formatMac(naMsg.options.targetLinkAddr!), "02:00:00:00:00:01");
  const rs = ipv6Of("ndp_rs_rdisc6");
  assertEquals(ok(parseIcmpv6(rs.payload, rs.src, rs.dst)), {
    kind: "router_solicit",
    options: {},
  });
  for (const name of ["ndp_ra_dnsmasq_solicited", "ndp_ra_dnsmasq_periodic"]) {
    const ra = ipv6Of(name);
    const m = ok(parseIcmpv6(ra.payload, ra.src, ra.dst));
    assert(m.kind === "router_advert");
    assertEquals([m.managed, m.other, m.routerLifetime], [true, true, 1800]);
    assertEquals(m.options.mtu, 1500);
    const p = m.options.prefixes![0];
    assertEquals([formatIpv6(p.prefix), p.prefixLen, p.onLink, p.autonomous], [
      "fd00:77::",
      64,
      true,
      false,
    ]);
    assertEquals(m.options.rdnss![0].servers.map(formatIpv6), ["fd00:77::53"]);
  }
  const unreach = ipv6Of("icmpv6_dest_unreachable_guest");
  const u = ok(parseIcmpv6(unreach.payload, unreach.src, unreach.dst));
  assert(u.kind === "dest_unreachable");
  assertEquals(u.code, 4);
});

Deno.test("fixtures: dhclient -6 and dnsmasq DHCPv6 exchanges", () => {
  const sol = dhcpv6Of("dhcpv6_dhclient_solicit");
  assertEquals(sol.msgType, Dhcpv6MessageType.SOLICIT);
  assertEquals(sol.options.oro, [23, 24, 39, 31]);
  assertEquals(sol.options.iaNa?.[0].iaid, 0x123456);
  const adv = dhcpv6Of("dhcpv6_dnsmasq_advertise");
  assertEquals(adv.msgType, Dhcpv6MessageType.ADVERTISE);
  assertEquals(adv.transactionId, sol.transactionId);
  assertEquals(adv.options.clientId, sol.options.clientId);
  assertEquals(formatIpv6(adv.options.iaNa![0].addresses[0].addr), "fd00:77::18");
  assertEquals(adv.options.dnsServers!.map(formatIpv6), ["fd00:77::53"]);
  const req = dhcpv6Of("dhcpv6_dhclient_request");
  assertEquals(req.options.serverId, adv.options.serverId);
  const conf = dhcpv6Of("dhcpv6_dhclient_confirm");
  assertEquals(conf.msgType, Dhcpv6MessageType.CONFIRM);
  assertEquals(conf.options.serverId, undefined);
  assertEquals(dhcpv6Of("dhcpv6_dnsmasq_confirm_reply").options.status?.code, 0);
  assertEquals(dhcpv6Of("dhcpv6_dhclient_release").msgType, Dhcpv6MessageType.RELEASE);
  const info = dhcpv6Of("dhcpv6_dhclient_inforeq");
  assertEquals(info.msgType, Dhcpv6MessageType.INFORMATION_REQUEST);
  assertEquals(info.options.iaNa, undefined);
});

/** Parses a frame through every layer this module knows and emits it back. */
function reEmit(frame: Uint8Array): Uint8Array {
  const eth = ok(parseEthernet(frame));
  let payload: Uint8Array;
  if (eth.ethertype === ETHERTYPE_ARP) payload = emitArp(ok(parseArp(eth.payload)));
  else if (eth.ethertype === ETHERTYPE_IPV4) {
    const ip = ok(parseIpv4Packet(eth.payload));
    if (ip.protocol === IP_PROTO_ICMP) ip.payload = emitIcmpv4(ok(parseIcmpv4(ip.payload)));
    else if (ip.protocol === IP_PROTO_UDP) {
      const udp = ok(parseUdp(ip.payload, ip.src, ip.dst));
      udp.payload = emitDhcpv4(ok(parseDhcpv4(udp.payload)));
      ip.payload = ok(emitUdp(udp, ip.src, ip.dst));
    }
    payload = ok(emitIpv4Packet(ip));
  } else {
    assertEquals(eth.ethertype, ETHERTYPE_IPV6);
    const ip = ok(parseIpv6Packet(eth.payload));
    if (ip.nextHeader === IP_PROTO_ICMPV6) {
      ip.payload = emitIcmpv6(ok(parseIcmpv6(ip.payload, ip.src, ip.dst)), ip.src, ip.dst);
    } else if (ip.nextHeader === IP_PROTO_UDP) {
      const udp = ok(parseUdp(ip.payload, ip.src, ip.dst));
      udp.payload = ok(emitDhcpv6(ok(parseDhcpv6(udp.payload))));
      ip.payload = ok(emitUdp(udp, ip.src, ip.dst));
    }
    payload = ok(emitIpv6Packet(ip));
  }
  return emitEthernet({ ...eth, payload });
}

Deno.test("fixtures: every captured frame survives parse -> emit -> parse unchanged", () => {
  const names = fixtureNames();
  assert(names.length >= 30, `only ${names.length} fixtures`);
  for (const name of names) {
    const once = reEmit(loadFixture(name));
    assertEquals(reEmit(once), once, name);
  }
});

Deno.test("fixtures: ARP, ping and ND frames re-emit byte for byte (their field order is fixed)", () => {
  for (
    const name of [
      "arp_request_guest",
      "arp_reply_server",
      "icmpv4_echo_request",
      "icmpv4_echo_reply",
      "icmpv6_echo_request",
      "icmpv6_echo_reply",
      "ndp_ns_ndisc6",
      "ndp_na_server",
      "ndp_rs_rdisc6",
    ]
  ) {
    assertEquals(reEmit(loadFixture(name)), loadFixture(name), name);
  }
});
