import { assert, assertEquals } from "../assert.ts";
import {
  DEFAULT_DHCPV4_LEASE_SECS,
  DropCounters,
  GATEWAY_IPV4,
  handleGuestFrame,
} from "../../services/mod.ts";
import {
  BOOTREPLY,
  DhcpMessageType,
  emitUdp,
  formatCidr,
  formatIpv4,
  formatMac,
} from "../../wire/mod.ts";
import {
  assertDrop,
  decodeDhcpv4,
  guestDhcpv4,
  mac,
  ok,
  onlyReply,
  replies,
  testCtx,
  v4,
} from "./helpers.ts";

const T = DhcpMessageType;

Deno.test("DISCOVER -> OFFER of the vNIC's /32 with routes via the gateway (public network)", () => {
  const frame = onlyReply(
    handleGuestFrame(
      testCtx(),
      guestDhcpv4({ messageType: T.DISCOVER, clientId: new Uint8Array([1, 2, 3]) }),
      new DropCounters(),
    ),
  );
  const { eth, ip, udp, dhcp } = decodeDhcpv4(frame);
  assertEquals([formatMac(eth.src), formatMac(eth.dst)], [
    "02:00:00:00:00:01",
    "52:54:00:12:34:56",
  ]);
  // No broadcast flag, no ciaddr: unicast to the offered address (RFC 2131 section 4.1).
  assertEquals([formatIpv4(ip.src), formatIpv4(ip.dst), udp.srcPort, udp.dstPort], [
    "169.254.0.1",
    "10.77.0.20",
    67,
    68,
  ]);
  assertEquals([dhcp.op, dhcp.xid, formatIpv4(dhcp.yiaddr), formatIpv4(dhcp.ciaddr)], [
    BOOTREPLY,
    0x11223344,
    "10.77.0.20",
    "0.0.0.0",
  ]);
  const o = dhcp.options;
  assertEquals(o.messageType, T.OFFER);
  assertEquals(formatIpv4(o.serverId!), "169.254.0.1");
  assertEquals(formatIpv4(o.subnetMask!), "255.255.255.255");
  assertEquals(o.routers!.map(formatIpv4), ["169.254.0.1"]);
  assertEquals(o.dnsServers!.map(formatIpv4), ["10.77.0.53"]);
  assertEquals(o.ntpServers, undefined);
  assertEquals([o.leaseTime, o.renewalTime, o.rebindingTime], [
    DEFAULT_DHCPV4_LEASE_SECS,
    43200,
    75600,
  ]);
  assertEquals(Array.from(o.clientId!), [1, 2, 3]);
  assertEquals(o.classlessRoutes!.map((r) => `${formatCidr(r.dest)} via ${formatIpv4(r.router)}`), [
    "169.254.0.1/32 via 0.0.0.0",
    "10.77.0.0/24 via 169.254.0.1",
    "0.0.0.0/0 via 169.254.0.1",
  ]);
});

Deno.test("private network: no router option and no default route", () => {
  const frame = onlyReply(
    handleGuestFrame(
      testCtx({ isPublic: false }),
      guestDhcpv4({ messageType: T.DISCOVER }),
      new DropCounters(),
    ),
  );
  const o = decodeDhcpv4(frame).dhcp.options;
  assertEquals(o.routers, undefined);
  assertEquals(o.classlessRoutes!.map((r) => formatCidr(r.dest)), [
    "169.254.0.1/32",
    "10.77.0.0/24",
  ]);
});

Deno.test("broadcast flag -> reply to 255.255.255.255; NTP (42) when configured; DNS changes show at once", () => {
  const ctx = testCtx({ ntpServers4: [v4("10.0.0.123")] });
  const req = guestDhcpv4({ messageType: T.DISCOVER }, { broadcast: true });
  const first = decodeDhcpv4(onlyReply(handleGuestFrame(ctx, req, new DropCounters())));
  assertEquals(formatIpv4(first.ip.dst), "255.255.255.255");
  assertEquals(first.dhcp.broadcast, true);
  assertEquals(first.dhcp.options.ntpServers!.map(formatIpv4), ["10.0.0.123"]);
  const changed = { ...ctx, dnsServers4: [v4("9.9.9.9"), v4("1.1.1.1")], ntpServers4: [] };
  const second = decodeDhcpv4(onlyReply(handleGuestFrame(changed, req, new DropCounters())));
  assertEquals(second.dhcp.options.dnsServers!.map(formatIpv4), ["9.9.9.9", "1.1.1.1"]);
  assertEquals(second.dhcp.options.ntpServers, undefined);
  const none = decodeDhcpv4(
    onlyReply(handleGuestFrame({ ...ctx, dnsServers4: [] }, req, new DropCounters())),
  );
  assertEquals(none.dhcp.options.dnsServers, undefined);
});

Deno.test("REQUEST in SELECTING for our server and address -> ACK with the lease", () => {
  const req = guestDhcpv4({
    messageType: T.REQUEST,
    serverId: GATEWAY_IPV4,
    requestedIp: v4("10.77.0.20"),
  });
  const { ip, dhcp } = decodeDhcpv4(
    onlyReply(handleGuestFrame(testCtx(), req, new DropCounters())),
  );
  assertEquals(formatIpv4(ip.dst), "10.77.0.20");
  assertEquals([dhcp.options.messageType, formatIpv4(dhcp.yiaddr), dhcp.options.leaseTime], [
    T.ACK,
    "10.77.0.20",
    DEFAULT_DHCPV4_LEASE_SECS,
  ]);
});

Deno.test("REQUEST for another server is ignored; for another address -> NAK, broadcast", () => {
  const c = new DropCounters();
  assertDrop(
    handleGuestFrame(
      testCtx(),
      guestDhcpv4({
        messageType: T.REQUEST,
        serverId: v4("10.77.0.1"),
        requestedIp: v4("10.77.0.20"),
      }),
      c,
    ),
    "dhcpv4_other_server",
  );
  for (
    const req of [
      guestDhcpv4({
        messageType: T.REQUEST,
        serverId: GATEWAY_IPV4,
        requestedIp: v4("10.77.0.99"),
      }),
      guestDhcpv4({ messageType: T.REQUEST, requestedIp: v4("192.168.1.5") }),
      guestDhcpv4(
        { messageType: T.REQUEST },
        { ciaddr: v4("10.77.0.21") },
        GATEWAY_IPV4,
        v4("10.77.0.21"),
      ),
    ]
  ) {
    const { ip, dhcp } = decodeDhcpv4(onlyReply(handleGuestFrame(testCtx(), req, c)));
    assertEquals(formatIpv4(ip.dst), "255.255.255.255");
    assertEquals(dhcp.options, { messageType: T.NAK, serverId: GATEWAY_IPV4 });
    assertEquals(formatIpv4(dhcp.yiaddr), "0.0.0.0");
  }
  assertEquals(c.total(), 1);
});

Deno.test("INIT-REBOOT, RENEWING and REBINDING of the right address -> ACK", () => {
  const initReboot = guestDhcpv4({ messageType: T.REQUEST, requestedIp: v4("10.77.0.20") });
  assertEquals(
    decodeDhcpv4(onlyReply(handleGuestFrame(testCtx(), initReboot, new DropCounters()))).dhcp
      .options.messageType,
    T.ACK,
  );
  // RENEWING: unicast to the server; REBINDING: broadcast. Both carry ciaddr, and get the ACK at ciaddr.
  for (const dst of [GATEWAY_IPV4, v4("255.255.255.255")]) {
    const renew = guestDhcpv4(
      { messageType: T.REQUEST },
      { ciaddr: v4("10.77.0.20") },
      dst,
      v4("10.77.0.20"),
    );
    const { ip, dhcp } = decodeDhcpv4(
      onlyReply(handleGuestFrame(testCtx(), renew, new DropCounters())),
    );
    assertEquals([formatIpv4(ip.dst), formatIpv4(dhcp.ciaddr), dhcp.options.messageType], [
      "10.77.0.20",
      "10.77.0.20",
      T.ACK,
    ]);
  }
  const c = new DropCounters();
  assertDrop(
    handleGuestFrame(testCtx(), guestDhcpv4({ messageType: T.REQUEST }), c),
    "dhcpv4_request_without_address",
  );
});

Deno.test("INFORM -> ACK with configuration only (no lease, no yiaddr), to ciaddr", () => {
  const inform = guestDhcpv4(
    { messageType: T.INFORM },
    { ciaddr: v4("10.77.0.20") },
    GATEWAY_IPV4,
    v4("10.77.0.20"),
  );
  const { ip, dhcp } = decodeDhcpv4(
    onlyReply(handleGuestFrame(testCtx(), inform, new DropCounters())),
  );
  assertEquals([formatIpv4(ip.dst), formatIpv4(dhcp.yiaddr), formatIpv4(dhcp.ciaddr)], [
    "10.77.0.20",
    "0.0.0.0",
    "10.77.0.20",
  ]);
  assertEquals(dhcp.options.messageType, T.ACK);
  assertEquals([dhcp.options.leaseTime, dhcp.options.renewalTime, dhcp.options.rebindingTime], [
    undefined,
    undefined,
    undefined,
  ]);
  assert(dhcp.options.classlessRoutes !== undefined);
});

Deno.test("RELEASE and DECLINE are consumed without a reply", () => {
  const c = new DropCounters();
  for (const t of [T.RELEASE, T.DECLINE]) {
    const v = handleGuestFrame(
      testCtx(),
      guestDhcpv4({ messageType: t, serverId: GATEWAY_IPV4 }, { ciaddr: v4("10.77.0.20") }),
      c,
    );
    assertEquals(replies(v), []);
  }
  assertEquals(c.total(), 0);
});

Deno.test("foreign chaddr, relayed, replies, and type-less messages are dropped and counted", () => {
  const c = new DropCounters();
  assertDrop(
    handleGuestFrame(
      testCtx(),
      guestDhcpv4({ messageType: T.DISCOVER }, { chaddr: mac("52:54:00:00:00:99") }),
      c,
    ),
    "dhcpv4_bad_chaddr",
  );
  assertDrop(
    handleGuestFrame(
      testCtx(),
      guestDhcpv4({ messageType: T.DISCOVER }, { giaddr: v4("10.0.0.1") }),
      c,
    ),
    "dhcpv4_relayed",
  );
  assertDrop(
    handleGuestFrame(testCtx(), guestDhcpv4({ messageType: T.OFFER }, { op: BOOTREPLY }), c),
    "dhcpv4_not_request",
  );
  assertDrop(
    handleGuestFrame(testCtx(), guestDhcpv4({ messageType: T.ACK }), c),
    "dhcpv4_unexpected_type",
  );
  assertDrop(handleGuestFrame(testCtx(), guestDhcpv4({}), c), "dhcpv4_no_message_type");
  const bad = guestDhcpv4({ messageType: T.DISCOVER });
  bad[bad.length - 60] ^= 0xff; // inside the UDP payload: checksum fails
  assertDrop(handleGuestFrame(testCtx(), bad, c), "udp_malformed");
  const cookie = decodeDhcpv4(guestDhcpv4({ messageType: T.DISCOVER }));
  cookie.udp.payload[236] = 0; // magic cookie
  const noCookie = guestDhcpv4({ messageType: T.DISCOVER });
  noCookie.set(ok(emitUdp(cookie.udp, cookie.ip.src, cookie.ip.dst)), 14 + 20);
  assertDrop(handleGuestFrame(testCtx(), noCookie, c), "dhcpv4_malformed");
  assertEquals(c.counts.dhcpv4_bad_chaddr, 1);
  assertEquals(c.total(), 7);
});
