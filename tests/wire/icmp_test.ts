import { assertEquals } from "../assert.ts";
import {
  emitIcmpv4,
  emitIcmpv6,
  type Icmpv4Repr,
  type Icmpv6Repr,
  internetChecksum,
  parseIcmpv4,
  parseIcmpv6,
} from "../../wire/mod.ts";
import { assertWireError, mac, v6 } from "./helpers.ts";

const data = new Uint8Array([0xde, 0xad, 0xbe, 0xef, 1]);

Deno.test("icmpv4: every message kind round trips with a valid checksum", () => {
  const msgs: Icmpv4Repr[] = [
    { kind: "echo_request", ident: 0x1234, seq: 7, data },
    { kind: "echo_reply", ident: 0x1234, seq: 7, data },
    { kind: "dest_unreachable", code: 4, nextHopMtu: 1400, data },
    { kind: "time_exceeded", code: 0, data },
  ];
  for (const m of msgs) {
    const bytes = emitIcmpv4(m);
    assertEquals(internetChecksum(bytes), 0, m.kind);
    assertEquals(parseIcmpv4(bytes), m);
  }
});

Deno.test("icmpv4: truncated, bad checksum, unknown type and bad echo code rejected", () => {
  const bytes = emitIcmpv4({ kind: "echo_request", ident: 1, seq: 2, data });
  assertWireError(parseIcmpv4(bytes.subarray(0, 7)), "truncated", "icmpv4");
  const bad = bytes.slice();
  bad[8] ^= 1;
  assertWireError(parseIcmpv4(bad), "bad_checksum", "icmpv4");
  const withType = (t: number, code: number) => {
    const b = bytes.slice();
    b[0] = t;
    b[1] = code;
    b[2] = b[3] = 0;
    const c = internetChecksum(b);
    b[2] = c >> 8;
    b[3] = c & 0xff;
    return b;
  };
  assertWireError(parseIcmpv4(withType(13, 0)), "unsupported", "icmpv4");
  assertWireError(parseIcmpv4(withType(8, 1)), "malformed", "icmpv4");
});

const src = v6("fe80::1");
const dst = v6("fe80::5054:ff:fe12:3456");

Deno.test("icmpv6: every message kind and ND option round trips", () => {
  const msgs: Icmpv6Repr[] = [
    { kind: "echo_request", ident: 1, seq: 2, data },
    { kind: "echo_reply", ident: 1, seq: 2, data },
    { kind: "dest_unreachable", code: 4, data },
    { kind: "time_exceeded", code: 1, data },
    { kind: "packet_too_big", mtu: 1280, data },
    { kind: "router_solicit", options: {} },
    { kind: "router_solicit", options: { sourceLinkAddr: mac("52:54:00:12:34:56") } },
    {
      kind: "router_advert",
      curHopLimit: 64,
      managed: true,
      other: true,
      routerLifetime: 1800,
      reachableTime: 30000,
      retransTimer: 1000,
      options: {
        sourceLinkAddr: mac("02:00:00:00:00:01"),
        mtu: 1500,
        prefixes: [
          {
            prefixLen: 64,
            onLink: true,
            autonomous: false,
            validLifetime: 2592000,
            preferredLifetime: 604800,
            prefix: v6("fd00:77::"),
          },
          {
            prefixLen: 48,
            onLink: false,
            autonomous: true,
            validLifetime: 0xffffffff,
            preferredLifetime: 0,
            prefix: v6("2001:db8::"),
          },
        ],
        rdnss: [{ lifetime: 1800, servers: [v6("fd00:77::53"), v6("fd00:77::54")] }],
      },
    },
    {
      kind: "neighbor_solicit",
      target: v6("fe80::1"),
      options: { sourceLinkAddr: mac("52:54:00:12:34:56") },
    },
    { kind: "neighbor_solicit", target: v6("fd00:77::9"), options: {} },
    {
      kind: "neighbor_advert",
      router: true,
      solicited: true,
      override: true,
      target: v6("fe80::1"),
      options: { targetLinkAddr: mac("02:00:00:00:00:01") },
    },
    {
      kind: "neighbor_advert",
      router: false,
      solicited: false,
      override: false,
      target: v6("fe80::1"),
      options: {},
    },
  ];
  for (const m of msgs) assertEquals(parseIcmpv6(emitIcmpv6(m, src, dst), src, dst), m, m.kind);
});

Deno.test("icmpv6: the checksum covers the pseudo-header", () => {
  const bytes = emitIcmpv6({ kind: "echo_request", ident: 1, seq: 2, data }, src, dst);
  assertWireError(parseIcmpv6(bytes, dst, src.slice().fill(1)), "bad_checksum", "icmpv6");
  const bad = bytes.slice();
  bad[9] ^= 0x80;
  assertWireError(parseIcmpv6(bad, src, dst), "bad_checksum", "icmpv6");
});

/** Re-emits `bytes` with a fresh checksum after `edit`, so that only the edited fault remains. */
function edited(m: Icmpv6Repr, edit: (b: Uint8Array) => Uint8Array): Uint8Array {
  const b = edit(emitIcmpv6(m, src, dst));
  b[2] = b[3] = 0;
  const pseudo = new Uint8Array([
    ...src,
    ...dst,
    0,
    0,
    b.length >> 8,
    b.length & 0xff,
    0,
    0,
    0,
    58,
  ]);
  const c = internetChecksum(new Uint8Array([...pseudo, ...b]));
  b[2] = c >> 8;
  b[3] = c & 0xff;
  return b;
}

Deno.test("icmpv6: ND faults rejected (code, zero option length, short option, short body)", () => {
  const ns: Icmpv6Repr = {
    kind: "neighbor_solicit",
    target: v6("fe80::1"),
    options: { sourceLinkAddr: mac("52:54:00:12:34:56") },
  };
  assertWireError(
    parseIcmpv6(
      edited(ns, (b) => {
        b[1] = 1;
        return b;
      }),
      src,
      dst,
    ),
    "malformed",
    "icmpv6",
  );
  assertWireError(
    parseIcmpv6(
      edited(ns, (b) => {
        b[25] = 0;
        return b;
      }),
      src,
      dst,
    ),
    "malformed",
    "icmpv6",
  );
  assertWireError(
    parseIcmpv6(
      edited(ns, (b) => {
        b[25] = 2;
        return b;
      }),
      src,
      dst,
    ),
    "truncated",
    "icmpv6",
  );
  assertWireError(parseIcmpv6(edited(ns, (b) => b.slice(0, 20)), src, dst), "truncated", "icmpv6");
  assertWireError(parseIcmpv6(edited(ns, (b) => b.slice(0, 25)), src, dst), "truncated", "icmpv6");
  const ra: Icmpv6Repr = {
    kind: "router_advert",
    curHopLimit: 64,
    managed: false,
    other: false,
    routerLifetime: 0,
    reachableTime: 0,
    retransTimer: 0,
    options: { mtu: 1500 },
  };
  // An MTU option claiming 16 bytes is not an MTU option.
  assertWireError(
    parseIcmpv6(
      edited(ra, (b) => {
        const c = new Uint8Array(32);
        c.set(b);
        c[17] = 2;
        return c;
      }),
      src,
      dst,
    ),
    "malformed",
  );
  assertWireError(parseIcmpv6(edited(ra, (b) => b.slice(0, 12)), src, dst), "truncated");
  assertWireError(
    parseIcmpv6(
      edited(ra, (b) => {
        b[0] = 137;
        return b;
      }),
      src,
      dst,
    ),
    "unsupported",
  );
});

Deno.test("icmpv6: unknown ND options are skipped, not rejected", () => {
  const rs: Icmpv6Repr = { kind: "router_solicit", options: {} };
  const withUnknown = edited(rs, (b) => {
    const c = new Uint8Array(b.length + 8);
    c.set(b);
    c[8] = 200; // unassigned option type
    c[9] = 1;
    return c;
  });
  assertEquals(parseIcmpv6(withUnknown, src, dst), rs);
});
