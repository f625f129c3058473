import { assert, assertEquals } from "../assert.ts";
import {
  buildPeriodicRa,
  DEFAULT_RA_INTERVALS,
  DropCounters,
  handleGuestFrame,
  nextRaTime,
  PREFIX_PREFERRED_LIFETIME_SECS,
  PREFIX_VALID_LIFETIME_SECS,
} from "../../services/mod.ts";
import { formatIpv6, formatMac, solicitedNodeMulticast } from "../../wire/mod.ts";
import {
  assertDrop,
  decodeIcmpv6,
  GUEST_LL,
  guestIcmpv6,
  GW_MAC,
  mac,
  ok,
  onlyReply,
  testCtx,
  v6,
} from "./helpers.ts";

function ns(
  target: string,
  { src = GUEST_LL, dst = solicitedNodeMulticast(v6(target)), slla = true, hopLimit = 255 } = {},
) {
  return guestIcmpv6(
    {
      kind: "neighbor_solicit",
      target: v6(target),
      options: slla ? { sourceLinkAddr: mac("52:54:00:12:34:56") } : {},
    },
    dst,
    { src, hopLimit },
  );
}

function assertGatewayNa(frame: Uint8Array, target: string, dst: string, solicited: boolean) {
  const { eth, ip, icmp } = decodeIcmpv6(frame);
  assertEquals(formatMac(eth.src), "02:00:00:00:00:01");
  assertEquals([formatIpv6(ip.src), formatIpv6(ip.dst), ip.hopLimit], ["fe80::1", dst, 255]);
  assertEquals(icmp, {
    kind: "neighbor_advert",
    router: true,
    solicited,
    override: true,
    target: v6(target),
    options: { targetLinkAddr: GW_MAC },
  });
  return eth;
}

Deno.test("NS for fe80::1 is answered with a solicited router NA carrying the gateway MAC", () => {
  const frame = onlyReply(handleGuestFrame(testCtx(), ns("fe80::1"), new DropCounters()));
  const eth = assertGatewayNa(frame, "fe80::1", "fe80::5054:ff:fe12:3456", true);
  assertEquals(formatMac(eth.dst), "52:54:00:12:34:56");
});

Deno.test("NS for another vNIC's address (multicast or unicast NUD) gets the gateway's NA", () => {
  const ctx = testCtx();
  assertGatewayNa(
    onlyReply(handleGuestFrame(ctx, ns("fd00:77::5"), new DropCounters())),
    "fd00:77::5",
    "fe80::5054:ff:fe12:3456",
    true,
  );
  const nud = ns("fd00:77::5", { src: v6("fd00:77::18"), dst: v6("fd00:77::5") });
  assertGatewayNa(
    onlyReply(handleGuestFrame(ctx, nud, new DropCounters())),
    "fd00:77::5",
    "fd00:77::18",
    true,
  );
});

Deno.test("NS for the guest's own, unknown or off-prefix addresses is not answered", () => {
  const counters = new DropCounters();
  const ctx = testCtx({ peerIpv6: new Set(["fd00:77::5", "fd00:99::5", "fd00:77::18"]) });
  for (const t of ["fd00:77::18", "fd00:77::6", "fd00:99::5", "fe80::2"]) {
    assertDrop(handleGuestFrame(ctx, ns(t), counters), "ndp_target_not_served");
  }
  assertEquals(counters.counts.ndp_target_not_served, 4);
});

Deno.test("DAD for the gateway's address is defended with an NA to all nodes", () => {
  const dad = ns("fe80::1", { src: v6("::"), slla: false });
  const eth = assertGatewayNa(
    onlyReply(handleGuestFrame(testCtx(), dad, new DropCounters())),
    "fe80::1",
    "ff02::1",
    false,
  );
  assertEquals(formatMac(eth.dst), "33:33:00:00:00:01");
});

Deno.test("invalid NS (RFC 4861 7.1.1) dropped: hop limit, DAD with SLLA or to a unicast, multicast target", () => {
  const ctx = testCtx();
  const c = new DropCounters();
  assertDrop(handleGuestFrame(ctx, ns("fe80::1", { hopLimit: 254 }), c), "ndp_bad_hop_limit");
  assertDrop(handleGuestFrame(ctx, ns("fe80::1", { src: v6("::") }), c), "ndp_invalid");
  assertDrop(
    handleGuestFrame(ctx, ns("fe80::1", { src: v6("::"), slla: false, dst: v6("fe80::1") }), c),
    "ndp_invalid",
  );
  assertDrop(handleGuestFrame(ctx, ns("ff02::1", { dst: v6("ff02::1") }), c), "ndp_invalid");
  assertEquals(c.total(), 4);
});

function assertRa(frame: Uint8Array, dst: string, dstMac: string, lifetime: number) {
  const { eth, ip, icmp } = decodeIcmpv6(frame);
  assertEquals([formatMac(eth.src), formatMac(eth.dst)], ["02:00:00:00:00:01", dstMac]);
  assertEquals([formatIpv6(ip.src), formatIpv6(ip.dst), ip.hopLimit], ["fe80::1", dst, 255]);
  assertEquals(icmp, {
    kind: "router_advert",
    curHopLimit: 64,
    managed: true,
    other: true,
    routerLifetime: lifetime,
    reachableTime: 0,
    retransTimer: 0,
    options: {
      sourceLinkAddr: GW_MAC,
      mtu: 1500,
      prefixes: [{
        prefixLen: 64,
        onLink: true,
        autonomous: false,
        validLifetime: PREFIX_VALID_LIFETIME_SECS,
        preferredLifetime: PREFIX_PREFERRED_LIFETIME_SECS,
        prefix: v6("fd00:77::"),
      }],
    },
  });
}

Deno.test("RS gets an RA: M=1 O=1, prefix L=1 A=0, MTU; lifetime 1800 public, 0 private", () => {
  const rs = guestIcmpv6({
    kind: "router_solicit",
    options: { sourceLinkAddr: mac("52:54:00:12:34:56") },
  }, v6("ff02::2"));
  assertRa(
    onlyReply(handleGuestFrame(testCtx(), rs, new DropCounters())),
    "fe80::5054:ff:fe12:3456",
    "52:54:00:12:34:56",
    1800,
  );
  assertRa(
    onlyReply(handleGuestFrame(testCtx({ isPublic: false }), rs, new DropCounters())),
    "fe80::5054:ff:fe12:3456",
    "52:54:00:12:34:56",
    0,
  );
});

Deno.test("RS from :: gets an RA to all nodes; invalid RS dropped", () => {
  const anon = guestIcmpv6({ kind: "router_solicit", options: {} }, v6("ff02::2"), {
    src: v6("::"),
  });
  assertRa(
    onlyReply(handleGuestFrame(testCtx(), anon, new DropCounters())),
    "ff02::1",
    "33:33:00:00:00:01",
    1800,
  );
  const c = new DropCounters();
  const withSlla = guestIcmpv6(
    { kind: "router_solicit", options: { sourceLinkAddr: mac("52:54:00:12:34:56") } },
    v6("ff02::2"),
    { src: v6("::") },
  );
  assertDrop(handleGuestFrame(testCtx(), withSlla, c), "ndp_invalid");
  const hop = guestIcmpv6({ kind: "router_solicit", options: {} }, v6("ff02::2"), { hopLimit: 1 });
  assertDrop(handleGuestFrame(testCtx(), hop, c), "ndp_bad_hop_limit");
});

Deno.test("periodic RA goes to ff02::1 at 33:33:00:00:00:01", () => {
  assertRa(ok(buildPeriodicRa(testCtx())), "ff02::1", "33:33:00:00:00:01", 1800);
});

Deno.test("RAs and NAs from the guest are dropped (no rogue routers)", () => {
  const c = new DropCounters();
  const ra = guestIcmpv6({
    kind: "router_advert",
    curHopLimit: 64,
    managed: false,
    other: false,
    routerLifetime: 9000,
    reachableTime: 0,
    retransTimer: 0,
    options: {},
  }, v6("ff02::1"));
  assertDrop(handleGuestFrame(testCtx(), ra, c), "ndp_unhandled_type");
  const na = guestIcmpv6({
    kind: "neighbor_advert",
    router: false,
    solicited: false,
    override: true,
    target: GUEST_LL,
    options: {},
  }, v6("ff02::1"));
  assertDrop(handleGuestFrame(testCtx(), na, c), "ndp_unhandled_type");
  assertEquals(c.counts.ndp_unhandled_type, 2);
});

Deno.test("RA scheduler: uniform in [min, max], fast while initial, clamped to RFC ranges", () => {
  const now = 1_000_000;
  const i = DEFAULT_RA_INTERVALS;
  assertEquals(nextRaTime(now, 10, i, 0), now + i.minInterval * 1000);
  assertEquals(nextRaTime(now, 10, i, 0.5), now + (i.minInterval + i.maxInterval) / 2 * 1000);
  assert(nextRaTime(now, 10, i, 0.999999) <= now + i.maxInterval * 1000);
  // The first MAX_INITIAL_RTR_ADVERTISEMENTS are at most 16 s apart.
  for (let sent = 0; sent < i.initialCount; sent++) {
    assertEquals(nextRaTime(now, sent, i, 0.7), now + 16_000);
  }
  assertEquals(nextRaTime(now, i.initialCount, i, 0), now + 198_000);
  // Short intervals are honoured when shorter than the initial cap.
  const fast = { ...i, maxInterval: 4, minInterval: 3 };
  assertEquals(nextRaTime(now, 0, fast, 1), now + 4000);
  // maxInterval 1 -> 4; minInterval 0 -> 3; a junk random value counts as 0.
  assertEquals(nextRaTime(now, 99, { ...i, maxInterval: 1, minInterval: 0 }, NaN), now + 3000);
  // minInterval above 0.75 * max is lowered to it.
  assertEquals(nextRaTime(now, 99, { ...i, maxInterval: 100, minInterval: 99 }, 0), now + 75_000);
  assertEquals(
    nextRaTime(now, 99, { ...i, maxInterval: 99999, minInterval: 3 }, 1),
    now + 1_800_000,
  );
});
