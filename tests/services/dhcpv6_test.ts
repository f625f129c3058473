import { assert, assertEquals } from "../assert.ts";
import {
  DEFAULT_DHCPV6_PREFERRED_SECS,
  DEFAULT_DHCPV6_VALID_SECS,
  DHCPV6_MAX_IAS_ANSWERED,
  DHCPV6_MAX_PREFERENCE,
  DHCPV6_MAX_STALE_ADDRESSES,
  DropCounters,
  handleGuestFrame,
} from "../../services/mod.ts";
import {
  Dhcpv6MessageType,
  Dhcpv6Status,
  duidLl,
  formatIpv6,
  formatMac,
  type IaNa,
} from "../../wire/mod.ts";
import {
  assertDrop,
  decodeDhcpv6,
  GUEST_LL,
  guestDhcpv6,
  GW_MAC,
  onlyReply,
  testCtx,
  v6,
} from "./helpers.ts";

const T = Dhcpv6MessageType;
const clientId = new Uint8Array([0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const serverId = duidLl(GW_MAC);
const ia = (addrs: string[] = [], iaid = 7): IaNa => ({
  iaid,
  t1: 0,
  t2: 0,
  addresses: addrs.map((a) => ({ addr: v6(a), preferredLifetime: 0, validLifetime: 0 })),
});
const lease = (iaid = 7): IaNa => ({
  iaid,
  t1: DEFAULT_DHCPV6_PREFERRED_SECS / 2,
  t2: DEFAULT_DHCPV6_PREFERRED_SECS * 0.8,
  addresses: [{
    addr: v6("fd00:77::18"),
    preferredLifetime: DEFAULT_DHCPV6_PREFERRED_SECS,
    validLifetime: DEFAULT_DHCPV6_VALID_SECS,
  }],
});

function answer(frame: Uint8Array, ctx = testCtx()) {
  return decodeDhcpv6(onlyReply(handleGuestFrame(ctx, frame, new DropCounters())));
}

Deno.test("Solicit -> Advertise from fe80::1:547 to the client's link-local :546, with the /128", () => {
  const { eth, ip, udp, dhcp } = answer(
    guestDhcpv6(T.SOLICIT, { clientId, iaNa: [ia()], elapsedTime: 0, oro: [23] }),
  );
  assertEquals([formatMac(eth.src), formatMac(eth.dst)], [
    "02:00:00:00:00:01",
    "52:54:00:12:34:56",
  ]);
  assertEquals([formatIpv6(ip.src), formatIpv6(ip.dst), udp.srcPort, udp.dstPort], [
    "fe80::1",
    formatIpv6(GUEST_LL),
    547,
    546,
  ]);
  assertEquals(dhcp, {
    msgType: T.ADVERTISE,
    transactionId: 0x0a0b0c,
    options: {
      serverId,
      clientId,
      iaNa: [lease()],
      preference: DHCPV6_MAX_PREFERENCE,
      dnsServers: [v6("fd00:77::53")],
    },
  });
});

Deno.test("Solicit with Rapid Commit -> Reply with Rapid Commit", () => {
  const { dhcp } = answer(guestDhcpv6(T.SOLICIT, { clientId, iaNa: [ia()], rapidCommit: true }));
  assertEquals(dhcp.msgType, T.REPLY);
  assertEquals(dhcp.options.rapidCommit, true);
  assertEquals(dhcp.options.iaNa, [lease()]);
});

Deno.test("Solicit without IA_NA -> Advertise with NoAddrsAvail; a second IA_NA gets NoAddrsAvail", () => {
  assertEquals(
    answer(guestDhcpv6(T.SOLICIT, { clientId })).dhcp.options.status?.code,
    Dhcpv6Status.NO_ADDRS_AVAIL,
  );
  const two = answer(guestDhcpv6(T.SOLICIT, { clientId, iaNa: [ia([], 1), ia([], 2)] })).dhcp
    .options.iaNa!;
  assertEquals(two[0], lease(1));
  assertEquals([two[1].iaid, two[1].addresses, two[1].status?.code], [
    2,
    [],
    Dhcpv6Status.NO_ADDRS_AVAIL,
  ]);
});

Deno.test("Request, Renew and Rebind -> Reply with the lease; stale addresses get lifetimes 0", () => {
  for (
    const [t, sid] of [[T.REQUEST, serverId], [T.RENEW, serverId], [T.REBIND, undefined]] as const
  ) {
    const { dhcp } = answer(
      guestDhcpv6(t, { clientId, serverId: sid, iaNa: [ia(["fd00:77::18", "fd00:66::9"])] }),
    );
    assertEquals(dhcp.msgType, T.REPLY);
    const got = dhcp.options.iaNa![0];
    assertEquals(got.addresses.map((a) => [formatIpv6(a.addr), a.validLifetime]), [[
      "fd00:77::18",
      DEFAULT_DHCPV6_VALID_SECS,
    ], ["fd00:66::9", 0]]);
  }
});

Deno.test("Confirm -> Success when on-link, NotOnLink otherwise; no addresses, no reply", () => {
  assertEquals(
    answer(guestDhcpv6(T.CONFIRM, { clientId, iaNa: [ia(["fd00:77::18"])] })).dhcp.options.status
      ?.code,
    Dhcpv6Status.SUCCESS,
  );
  assertEquals(
    answer(guestDhcpv6(T.CONFIRM, { clientId, iaNa: [ia(["fd00:77::18", "fd00:99::1"])] })).dhcp
      .options.status?.code,
    Dhcpv6Status.NOT_ON_LINK,
  );
  assertDrop(
    handleGuestFrame(
      testCtx(),
      guestDhcpv6(T.CONFIRM, { clientId, iaNa: [ia()] }),
      new DropCounters(),
    ),
    "dhcpv6_confirm_without_addresses",
  );
});

Deno.test("Information-Request -> Reply with DNS and NTP only; changes show at once", () => {
  const ctx = testCtx({ ntpServers6: [v6("fd00:77::123")] });
  const { dhcp } = answer(guestDhcpv6(T.INFORMATION_REQUEST, { clientId, oro: [23, 56] }), ctx);
  assertEquals(dhcp.options, {
    serverId,
    clientId,
    dnsServers: [v6("fd00:77::53")],
    ntpServers: [{ kind: "address", addr: v6("fd00:77::123") }],
  });
  const changed = answer(guestDhcpv6(T.INFORMATION_REQUEST, {}), {
    ...ctx,
    dnsServers6: [v6("2001:db8::53")],
    ntpServers6: [],
  });
  assertEquals(changed.dhcp.options, { serverId, dnsServers: [v6("2001:db8::53")] });
});

Deno.test("Release and Decline -> Reply with Success", () => {
  for (const t of [T.RELEASE, T.DECLINE]) {
    const { dhcp } = answer(guestDhcpv6(t, { clientId, serverId, iaNa: [ia(["fd00:77::18"])] }));
    assertEquals([dhcp.msgType, dhcp.options.status?.code, dhcp.options.iaNa], [
      T.REPLY,
      Dhcpv6Status.SUCCESS,
      undefined,
    ]);
  }
});

Deno.test("server-id rules of RFC 8415 section 16, client id, source and type checks", () => {
  const c = new DropCounters();
  const other = new Uint8Array([0, 3, 0, 1, 9, 9, 9, 9, 9, 9]);
  const cases: [Uint8Array, string][] = [
    [guestDhcpv6(T.SOLICIT, { clientId, serverId, iaNa: [ia()] }), "dhcpv6_unexpected_server_id"],
    [guestDhcpv6(T.REBIND, { clientId, serverId, iaNa: [ia()] }), "dhcpv6_unexpected_server_id"],
    [guestDhcpv6(T.REQUEST, { clientId, iaNa: [ia()] }), "dhcpv6_wrong_server_id"],
    [guestDhcpv6(T.RENEW, { clientId, serverId: other, iaNa: [ia()] }), "dhcpv6_wrong_server_id"],
    [guestDhcpv6(T.INFORMATION_REQUEST, { serverId: other }), "dhcpv6_wrong_server_id"],
    [guestDhcpv6(T.INFORMATION_REQUEST, { iaNa: [ia()] }), "dhcpv6_unexpected_ia"],
    [guestDhcpv6(T.SOLICIT, { iaNa: [ia()] }), "dhcpv6_missing_client_id"],
    [guestDhcpv6(T.REPLY, { clientId, serverId }), "dhcpv6_unexpected_type"],
    [guestDhcpv6(T.SOLICIT, { clientId }, { src: v6("fd00:77::18") }), "dhcpv6_bad_source"],
  ];
  for (const [frame, reason] of cases) assertDrop(handleGuestFrame(testCtx(), frame, c), reason);
  assertEquals(c.total(), cases.length);
});

Deno.test("a request stuffed with IAs and stale addresses gets a bounded reply", () => {
  const stale = Array.from({ length: 30 }, (_, i) => `fd00:66::${i + 1}`);
  const many = Array.from({ length: 40 }, (_, i) => ia(i === 0 ? stale : [], i));
  const frame = guestDhcpv6(T.RENEW, { clientId, serverId, iaNa: many });
  const reply = onlyReply(handleGuestFrame(testCtx(), frame, new DropCounters()));
  assert(reply.length < 1280 + 14, `reply of ${reply.length} bytes`);
  const got = decodeDhcpv6(reply).dhcp.options.iaNa!;
  assertEquals(got.length, DHCPV6_MAX_IAS_ANSWERED);
  assertEquals(got[0].addresses.length, 1 + DHCPV6_MAX_STALE_ADDRESSES);
});

Deno.test("unicast to fe80::1 is served like multicast", () => {
  const { dhcp } = answer(
    guestDhcpv6(T.SOLICIT, { clientId, iaNa: [ia()] }, { dst: v6("fe80::1") }),
  );
  assertEquals(dhcp.msgType, T.ADVERTISE);
});
