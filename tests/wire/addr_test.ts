import { assert, assertEquals } from "../assert.ts";
import {
  bytesEqual,
  cidrContains,
  compareAddr,
  formatCidr,
  formatIpv4,
  formatIpv6,
  formatMac,
  IPV6_ALL_NODES,
  ipv6MulticastMac,
  isIpv6LinkLocal,
  isIpv6Multicast,
  isMulticastMac,
  maskAddr,
  parseCidr,
  parseIpv4,
  parseIpv6,
  parseMac,
  solicitedNodeMulticast,
} from "../../wire/mod.ts";
import { assertWireError, mac, ok, v4, v6 } from "./helpers.ts";

Deno.test("MAC: parse and format round trip, both separators, bad text rejected", () => {
  assertEquals(Array.from(mac("52:54:00:AB:cd:ef")), [0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
  assertEquals(formatMac(mac("52-54-00-ab-cd-ef")), "52:54:00:ab:cd:ef");
  for (
    const bad of [
      "",
      "52:54:00:ab:cd",
      "52:54:00:ab:cd:ef:01",
      "5:54:00:ab:cd:ef",
      "zz:54:00:ab:cd:ef",
    ]
  ) {
    assertWireError(parseMac(bad), "malformed", "mac");
  }
  assert(isMulticastMac(mac("33:33:00:00:00:01")));
  assert(!isMulticastMac(mac("52:54:00:00:00:01")));
});

Deno.test("IPv4: dotted quad, no leading zeros or out-of-range octets", () => {
  assertEquals(Array.from(v4("169.254.0.1")), [169, 254, 0, 1]);
  assertEquals(formatIpv4(v4("10.0.0.255")), "10.0.0.255");
  for (const bad of ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "a.b.c.d", ""]) {
    assertWireError(parseIpv4(bad), "malformed", "ipv4");
  }
});

Deno.test("IPv6: RFC 4291 text forms parse, RFC 5952 canonical form is printed", () => {
  const cases: [string, string][] = [
    ["fe80::1", "fe80::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["::ffff:192.0.2.1", "::ffff:c000:201"],
    ["fd00:77::18", "fd00:77::18"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
  ];
  for (const [text, canonical] of cases) assertEquals(formatIpv6(v6(text)), canonical, text);
  for (
    const bad of [
      "1::2::3",
      ":::",
      "1:2:3:4:5:6:7:8:9",
      "12345::",
      "g::1",
      "1:2:3:4:5:6:7",
      "fe80::1%eth0",
      "1:2:3:4:5:6:7::8",
    ]
  ) {
    assertWireError(parseIpv6(bad), "malformed", "ipv6");
  }
});

Deno.test("IPv6 classification and derived multicast addresses", () => {
  assert(isIpv6LinkLocal(v6("fe80::1")));
  assert(isIpv6LinkLocal(v6("febf::1")));
  assert(!isIpv6LinkLocal(v6("fec0::1")));
  assert(isIpv6Multicast(IPV6_ALL_NODES));
  assertEquals(formatIpv6(solicitedNodeMulticast(v6("fd00:77::12:3456"))), "ff02::1:ff12:3456");
  assertEquals(formatMac(ipv6MulticastMac(v6("ff02::1:ff12:3456"))), "33:33:ff:12:34:56");
});

Deno.test("compare and equality order addresses numerically", () => {
  assert(compareAddr(v4("10.0.0.2"), v4("10.0.0.10")) < 0);
  assert(compareAddr(v6("fe80::2"), v6("fe80::1")) > 0);
  assertEquals(compareAddr(v4("1.2.3.4"), v4("1.2.3.4")), 0);
  assert(bytesEqual(v4("1.2.3.4"), v4("1.2.3.4")));
  assert(!bytesEqual(v4("1.2.3.4"), v6("::")));
});

Deno.test("CIDR: parse, format, contains; host bits and bad lengths rejected", () => {
  const net = ok(parseCidr("10.77.0.0/24", 4));
  assertEquals(formatCidr(net), "10.77.0.0/24");
  assert(cidrContains(net, v4("10.77.0.200")));
  assert(!cidrContains(net, v4("10.77.1.1")));
  assert(!cidrContains(net, v6("::")));
  const odd = ok(parseCidr("10.64.0.0/10", 4));
  assert(cidrContains(odd, v4("10.127.255.255")));
  assert(!cidrContains(odd, v4("10.128.0.0")));
  assert(cidrContains(ok(parseCidr("0.0.0.0/0", 4)), v4("8.8.8.8")));
  const p6 = ok(parseCidr("fd00:77::/64", 6));
  assert(cidrContains(p6, v6("fd00:77::18")));
  assert(!cidrContains(p6, v6("fd00:78::18")));
  assertWireError(parseCidr("10.77.0.1/24", 4), "malformed");
  assertWireError(parseCidr("10.77.0.0/33", 4), "malformed");
  assertWireError(parseCidr("10.77.0.0", 4), "malformed");
  assertWireError(parseCidr("fd00::/129", 6), "malformed");
  assertWireError(parseCidr("fd00::/064", 6), "malformed");
  assertEquals(formatIpv4(maskAddr(v4("10.77.5.9"), 20)), "10.77.0.0");
});
