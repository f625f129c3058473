import { assertEquals } from "../assert.ts";
import {
  Dhcpv6MessageType,
  type Dhcpv6Repr,
  Dhcpv6Status,
  duidLl,
  emitDhcpv6,
  parseDhcpv6,
} from "../../wire/mod.ts";
import { assertWireError, mac, ok, v6 } from "./helpers.ts";

const clientId = new Uint8Array([
  0,
  1,
  0,
  1,
  0x32,
  0x97,
  0xee,
  0x47,
  0x52,
  0x54,
  0,
  0x12,
  0x34,
  0x56,
]);

Deno.test("dhcpv6: every option round trips, nested IA_NA / IAADDR / STATUS_CODE included", () => {
  const m: Dhcpv6Repr = {
    msgType: Dhcpv6MessageType.REPLY,
    transactionId: 0xabcdef,
    options: {
      clientId,
      serverId: duidLl(mac("02:00:00:00:00:01")),
      iaNa: [
        {
          iaid: 0x123456,
          t1: 43200,
          t2: 69120,
          addresses: [
            { addr: v6("fd00:77::18"), preferredLifetime: 86400, validLifetime: 172800 },
            {
              addr: v6("fd00:77::99"),
              preferredLifetime: 0,
              validLifetime: 0,
              status: { code: Dhcpv6Status.NOT_ON_LINK, message: "gone" },
            },
          ],
        },
        {
          iaid: 2,
          t1: 0,
          t2: 0,
          addresses: [],
          status: { code: Dhcpv6Status.NO_ADDRS_AVAIL, message: "no addresses available" },
        },
      ],
      status: { code: Dhcpv6Status.SUCCESS, message: "success ✓" },
      oro: [23, 56],
      preference: 255,
      elapsedTime: 300,
      rapidCommit: true,
      dnsServers: [v6("fd00:77::53"), v6("2001:4860:4860::8888")],
      ntpServers: [
        { kind: "address", addr: v6("fd00:77::123") },
        { kind: "multicast", addr: v6("ff05::101") },
        { kind: "fqdn", name: "ntp.example.org" },
      ],
      other: [{ code: 32, data: new Uint8Array([0, 0, 2, 88]) }],
    },
  };
  assertEquals(parseDhcpv6(ok(emitDhcpv6(m))), m);
});

Deno.test("dhcpv6: DUID-LL of a MAC is type 3, hardware type 1, the MAC", () => {
  assertEquals(Array.from(duidLl(mac("02:00:00:00:00:01"))), [0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
});

Deno.test("dhcpv6: wire layout of a Solicit (header, transaction id, option TLVs)", () => {
  const bytes = ok(
    emitDhcpv6({
      msgType: Dhcpv6MessageType.SOLICIT,
      transactionId: 0x010203,
      options: { elapsedTime: 0, rapidCommit: true },
    }),
  );
  assertEquals(Array.from(bytes), [1, 1, 2, 3, 0, 8, 0, 2, 0, 0, 0, 14, 0, 0]);
});

Deno.test("dhcpv6: malformed messages and options rejected", () => {
  assertWireError(parseDhcpv6(new Uint8Array([1, 0, 0])), "truncated", "dhcpv6");
  assertWireError(parseDhcpv6(new Uint8Array([0, 0, 0, 0])), "malformed", "dhcpv6");
  assertWireError(parseDhcpv6(new Uint8Array([12, 0, 0, 0])), "unsupported", "dhcpv6");
  const withOpt = (...b: number[]) => new Uint8Array([1, 0, 0, 1, ...b]);
  assertWireError(parseDhcpv6(withOpt(0, 8, 0)), "truncated");
  assertWireError(parseDhcpv6(withOpt(0, 8, 0, 4, 0, 0)), "truncated");
  assertWireError(parseDhcpv6(withOpt(0, 8, 0, 1, 0)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 14, 0, 1, 0)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 7, 0, 2, 0, 0)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 6, 0, 3, 0, 1, 2)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 1, 0, 2, 0, 1)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 23, 0, 4, 1, 2, 3, 4)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 3, 0, 4, 0, 0, 0, 1)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 13, 0, 1, 0)), "malformed");
  // IA_NA whose IAADDR is too short for an address and two lifetimes.
  assertWireError(
    parseDhcpv6(withOpt(0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0)),
    "malformed",
  );
  // NTP: bad suboption code, bad address length, FQDN without its root label.
  assertWireError(parseDhcpv6(withOpt(0, 56, 0, 4, 0, 9, 0, 0)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 56, 0, 5, 0, 1, 0, 1, 0)), "malformed");
  assertWireError(parseDhcpv6(withOpt(0, 56, 0, 7, 0, 3, 0, 3, 2, 0x61, 0x62)), "malformed");
  const twice = ok(emitDhcpv6({ msgType: 1, transactionId: 1, options: { clientId } }));
  const dup = new Uint8Array([...twice, ...twice.subarray(4)]);
  assertWireError(parseDhcpv6(dup), "malformed");
});
