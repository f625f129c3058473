/**
 * The services against requests captured from real clients (tests/fixtures/README.md). The
 * context holds the addresses the capture's servers handed out, so the answers can be
 * compared with what udhcpd and dnsmasq said, where our design agrees with them.
 */
import { assert, assertEquals } from "../assert.ts";
import { DropCounters, GATEWAY_IPV4, handleGuestFrame } from "../../services/mod.ts";
import {
  DhcpMessageType,
  Dhcpv6MessageType,
  Dhcpv6Status,
  duidLl,
  formatIpv4,
  formatIpv6,
  formatMac,
  parseCidr,
  parseIcmpv6,
} from "../../wire/mod.ts";
import { loadFixture } from "../fixtures/fixtures.ts";
import {
  assertDrop,
  decodeDhcpv4,
  decodeDhcpv6,
  decodeIcmpv6,
  decodeIpv6,
  GW_MAC,
  ok,
  onlyReply,
  readdress4,
  replies,
  testCtx,
} from "./helpers.ts";

const handle = (name: string, ctx = testCtx(), counters = new DropCounters()) =>
  handleGuestFrame(ctx, loadFixture(name), counters);

Deno.test("captured udhcpc and dhclient DISCOVERs get an OFFER of the vNIC's address", () => {
  for (const name of ["dhcpv4_udhcpc_discover", "dhcpv4_dhclient_discover"]) {
    const captured = decodeDhcpv4(loadFixture(name)).dhcp;
    const { dhcp } = decodeDhcpv4(onlyReply(handle(name)));
    assertEquals([dhcp.xid, dhcp.options.messageType, formatIpv4(dhcp.yiaddr)], [
      captured.xid,
      DhcpMessageType.OFFER,
      "10.77.0.20",
    ]);
    assertEquals(dhcp.options.clientId, captured.options.clientId);
  }
});

Deno.test("captured SELECTING REQUESTs name udhcpd (10.77.0.1), so the gateway stays silent", () => {
  const counters = new DropCounters();
  assertDrop(handle("dhcpv4_udhcpc_request", testCtx(), counters), "dhcpv4_other_server");
  assertDrop(handle("dhcpv4_dhclient_request", testCtx(), counters), "dhcpv4_other_server");
  assertEquals(counters.counts.dhcpv4_other_server, 2);
});

Deno.test("captured dhclient INIT-REBOOT: ACK for the vNIC's address, NAK for another vNIC", () => {
  assertEquals(
    decodeDhcpv4(onlyReply(handle("dhcpv4_dhclient_init_reboot"))).dhcp.options.messageType,
    DhcpMessageType.ACK,
  );
  const other = testCtx({ ipv4: new Uint8Array([10, 77, 0, 21]) });
  assertEquals(
    decodeDhcpv4(onlyReply(handle("dhcpv4_dhclient_init_reboot", other))).dhcp.options.messageType,
    DhcpMessageType.NAK,
  );
});

Deno.test("captured udhcpc renew and release, readdressed to 169.254.0.1", () => {
  // As captured they go to 10.77.0.1, another host: the router's business.
  assertEquals(handle("dhcpv4_udhcpc_renew"), { kind: "route" });
  const renew = readdress4(loadFixture("dhcpv4_udhcpc_renew"), GATEWAY_IPV4);
  const { ip, dhcp } = decodeDhcpv4(
    onlyReply(handleGuestFrame(testCtx(), renew, new DropCounters())),
  );
  assertEquals([formatIpv4(ip.dst), dhcp.options.messageType], ["10.77.0.20", DhcpMessageType.ACK]);
  const release = readdress4(loadFixture("dhcpv4_udhcpc_release"), GATEWAY_IPV4);
  assertEquals(replies(handleGuestFrame(testCtx(), release, new DropCounters())), []);
});

Deno.test("captured ARP for 10.77.0.1 is not for the gateway; captured ping to it is routed", () => {
  assertDrop(handle("arp_request_guest"), "arp_target_not_gateway");
  assertEquals(handle("icmpv4_echo_request"), { kind: "route" });
});

Deno.test("captured ndisc6 NS for fe80::1 gets the same NA as the kernel gave, plus R=1", () => {
  const ours = decodeIcmpv6(onlyReply(handle("ndp_ns_ndisc6"))).icmp;
  const kernel = decodeIcmpv6(loadFixture("ndp_na_server")).icmp;
  assert(kernel.kind === "neighbor_advert");
  assertEquals(ours, { ...kernel, router: true });
});

Deno.test("captured ping -6 fe80::1 gets the same echo reply as the kernel gave", () => {
  const ours = onlyReply(handle("icmpv6_echo_request"));
  assertEquals(decodeIcmpv6(ours).icmp, decodeIcmpv6(loadFixture("icmpv6_echo_reply")).icmp);
});

Deno.test("captured rdisc6 RS gets an RA agreeing with dnsmasq's on M, O, L, A and MTU", () => {
  const ours = decodeIcmpv6(onlyReply(handle("ndp_rs_rdisc6"))).icmp;
  const theirs = decodeIcmpv6(loadFixture("ndp_ra_dnsmasq_solicited")).icmp;
  assert(ours.kind === "router_advert" && theirs.kind === "router_advert");
  assertEquals([ours.managed, ours.other, ours.routerLifetime, ours.options.mtu], [
    theirs.managed,
    theirs.other,
    theirs.routerLifetime,
    theirs.options.mtu,
  ]);
  const [p, q] = [ours.options.prefixes![0], theirs.options.prefixes![0]];
  assertEquals([p.prefix, p.prefixLen, p.onLink, p.autonomous], [
    q.prefix,
    q.prefixLen,
    q.onLink,
    q.autonomous,
  ]);
  assertEquals(ours.options.sourceLinkAddr, GW_MAC);
});

Deno.test("captured guest NA, MLD report and ICMPv6 error are dropped with their reason", () => {
  assertDrop(handle("ndp_na_guest"), "ndp_unhandled_type");
  assertDrop(handle("mld_report_guest"), "ipv6_multicast_unhandled");
  // Port unreachable from the guest to fe80::1: not an echo, nothing to answer.
  assertDrop(handle("icmpv6_dest_unreachable_guest"), "ipv6_to_gateway_unhandled");
});

Deno.test("captured dhclient -6 Solicit: Advertise with the same IAID, the /128 and DNS", () => {
  const sol = decodeDhcpv6(loadFixture("dhcpv6_dhclient_solicit")).dhcp;
  const { ip, dhcp } = decodeDhcpv6(onlyReply(handle("dhcpv6_dhclient_solicit")));
  assertEquals(formatIpv6(ip.dst), "fe80::5054:ff:fe12:3456");
  assertEquals([dhcp.msgType, dhcp.transactionId], [
    Dhcpv6MessageType.ADVERTISE,
    sol.transactionId,
  ]);
  assertEquals(dhcp.options.clientId, sol.options.clientId);
  assertEquals(dhcp.options.serverId, duidLl(GW_MAC));
  const got = dhcp.options.iaNa![0];
  assertEquals([got.iaid, formatIpv6(got.addresses[0].addr)], [
    sol.options.iaNa![0].iaid,
    "fd00:77::18",
  ]);
  assertEquals(dhcp.options.dnsServers!.map(formatIpv6), ["fd00:77::53"]);
});

Deno.test("captured Request and Release carry dnsmasq's server id: ignored", () => {
  assertDrop(handle("dhcpv6_dhclient_request"), "dhcpv6_wrong_server_id");
  assertDrop(handle("dhcpv6_dhclient_release"), "dhcpv6_wrong_server_id");
});

Deno.test("captured Confirm: Success on fd00:77::/64 (as dnsmasq said), NotOnLink elsewhere", () => {
  const ours = decodeDhcpv6(onlyReply(handle("dhcpv6_dhclient_confirm"))).dhcp;
  const theirs = decodeDhcpv6(loadFixture("dhcpv6_dnsmasq_confirm_reply")).dhcp;
  assertEquals([ours.msgType, ours.options.status?.code], [
    theirs.msgType,
    theirs.options.status?.code,
  ]);
  const moved = testCtx({ ipv6Prefix: ok(parseCidr("fd00:99::/64", 6)) });
  assertEquals(
    decodeDhcpv6(onlyReply(handle("dhcpv6_dhclient_confirm", moved))).dhcp.options.status?.code,
    Dhcpv6Status.NOT_ON_LINK,
  );
});

Deno.test("captured Information-Request: Reply with DNS, like dnsmasq's", () => {
  const ours = decodeDhcpv6(onlyReply(handle("dhcpv6_dhclient_inforeq"))).dhcp;
  const theirs = decodeDhcpv6(loadFixture("dhcpv6_dnsmasq_inforeq_reply")).dhcp;
  assertEquals([ours.msgType, ours.transactionId, ours.options.dnsServers], [
    theirs.msgType,
    theirs.transactionId,
    theirs.options.dnsServers,
  ]);
  assertEquals(ours.options.clientId, theirs.options.clientId);
  assertEquals(ours.options.iaNa, undefined);
});

Deno.test("every reply frame is addressed to the vNIC and verifies at every layer", () => {
  for (
    const name of [
      "dhcpv6_dhclient_solicit",
      "ndp_ns_ndisc6",
      "ndp_rs_rdisc6",
      "icmpv6_echo_request",
    ]
  ) {
    const { eth, ip } = decodeIpv6(onlyReply(handle(name)));
    assertEquals([formatMac(eth.src), formatMac(eth.dst)], [
      "02:00:00:00:00:01",
      "52:54:00:12:34:56",
    ]);
    if (ip.nextHeader === 58) ok(parseIcmpv6(ip.payload, ip.src, ip.dst));
  }
});
