import { assertEquals } from "../assert.ts";
import { compileRules } from "../../secgroup/mod.ts";
import { rule } from "./frames.ts";
import { parseIpv4, parseIpv6, WireError } from "../../wire/mod.ts";

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const GRE = 47;

/** Address words as the matcher takes them. */
function words(text: string): Int32Array {
  const a = text.includes(":") ? parseIpv6(text) : parseIpv4(text);
  if (a instanceof WireError) throw new Error(String(a));
  const out = new Int32Array(4);
  const v = new DataView(a.buffer, a.byteOffset, a.length);
  for (let w = 0; w * 4 < a.length; w++) out[w] = v.getInt32(w * 4);
  return out;
}

const v4 = (t: string) => ({ family: 4, remote: words(t) });
const v6 = (t: string) => ({ family: 6, remote: words(t) });

Deno.test("a rule applies only to its direction", () => {
  const rs = compileRules([rule("in", "INGRESS", "TCP", { portStart: 22, portEnd: 22 })]);
  const a = v4("10.0.0.9");
  assertEquals(rs.match("ingress", a.family, TCP, a.remote, true, 22), 0);
  assertEquals(rs.match("egress", a.family, TCP, a.remote, true, 22), -1);
});

Deno.test("protocols: TCP, UDP, ALL, ICMP is IPv4 only, ICMPV6 IPv6 only", () => {
  const rs = compileRules([
    rule("tcp", "EGRESS", "TCP"),
    rule("icmp", "EGRESS", "ICMP"),
    rule("icmp6", "EGRESS", "ICMPV6"),
  ]);
  const a = v4("192.0.2.1");
  const b = v6("2001:db8::1");
  assertEquals(rs.match("egress", 4, TCP, a.remote, true, 80), 0);
  assertEquals(
    rs.match("egress", 6, TCP, b.remote, true, 80),
    0,
    "TCP with no cidr: both families",
  );
  assertEquals(rs.match("egress", 4, UDP, a.remote, true, 53), -1);
  assertEquals(rs.match("egress", 4, ICMP, a.remote, false, 0), 1);
  assertEquals(rs.match("egress", 6, ICMPV6, b.remote, false, 0), 2);
  assertEquals(rs.match("egress", 6, ICMP, b.remote, false, 0), -1, "ICMPv4 number in IPv6");
  assertEquals(rs.match("egress", 4, GRE, a.remote, false, 0), -1);

  const all = compileRules([rule("all", "INGRESS", "ALL")]);
  for (const [fam, proto] of [[4, TCP], [4, UDP], [4, ICMP], [6, ICMPV6], [4, GRE], [6, GRE]]) {
    const r = fam === 4 ? a.remote : b.remote;
    assertEquals(all.match("ingress", fam, proto, r, proto === TCP || proto === UDP, 1), 0);
  }
});

Deno.test("port ranges are inclusive, 0/0 is any port, and need ports to match", () => {
  const rs = compileRules([
    rule("range", "INGRESS", "UDP", { portStart: 1000, portEnd: 2000 }),
    rule("any", "INGRESS", "TCP"),
  ]);
  const a = v4("10.1.1.1").remote;
  assertEquals(rs.match("ingress", 4, UDP, a, true, 999), -1);
  assertEquals(rs.match("ingress", 4, UDP, a, true, 1000), 0);
  assertEquals(rs.match("ingress", 4, UDP, a, true, 2000), 0);
  assertEquals(rs.match("ingress", 4, UDP, a, true, 2001), -1);
  assertEquals(rs.match("ingress", 4, UDP, a, false, 1500), -1, "a later fragment has no port");
  assertEquals(rs.match("ingress", 4, TCP, a, false, 0), 1, "any port matches a fragment");
  assertEquals(rs.match("ingress", 4, TCP, a, true, 65535), 1);
});

Deno.test("CIDRs of both families, prefix lengths at the edges", () => {
  const rs = compileRules([
    rule("net4", "INGRESS", "ALL", { cidr: "10.20.0.0/16" }),
    rule("host6", "INGRESS", "ALL", { cidr: "fd00:1::5/128" }),
    rule("net6", "INGRESS", "ALL", { cidr: "fd00:2::/33" }),
    rule("host4", "INGRESS", "ALL", { cidr: "192.0.2.7/32" }),
  ]);
  assertEquals(rs.match("ingress", 4, UDP, v4("10.20.255.1").remote, true, 1), 0);
  assertEquals(rs.match("ingress", 4, UDP, v4("10.21.0.1").remote, true, 1), -1);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00:1::5").remote, true, 1), 1);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00:1::6").remote, true, 1), -1);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00:2:7fff::1").remote, true, 1), 2);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00:2:8000::1").remote, true, 1), -1);
  assertEquals(rs.match("ingress", 4, UDP, v4("192.0.2.7").remote, true, 1), 3);
  assertEquals(rs.match("ingress", 4, UDP, v4("192.0.2.6").remote, true, 1), -1);
  // An IPv4 CIDR never matches an IPv6 address whose first word happens to agree.
  assertEquals(rs.match("ingress", 6, UDP, v6("a14:1::").remote, true, 1), -1);

  const any = compileRules([rule("zero", "EGRESS", "ALL", { cidr: "0.0.0.0/0" })]);
  assertEquals(any.match("egress", 4, UDP, v4("203.0.113.1").remote, true, 1), 0);
  assertEquals(any.match("egress", 6, UDP, v6("2001:db8::1").remote, true, 1), -1);
});

Deno.test("the first matching rule in list order is the one returned", () => {
  const rs = compileRules([
    rule("narrow", "INGRESS", "TCP", { portStart: 80, portEnd: 80, cidr: "10.0.0.0/8" }),
    rule("wide", "INGRESS", "ALL"),
  ]);
  assertEquals(rs.match("ingress", 4, TCP, v4("10.0.0.1").remote, true, 80), 0);
  assertEquals(rs.match("ingress", 4, TCP, v4("11.0.0.1").remote, true, 80), 1);
  assertEquals(rs.ids, ["narrow", "wide"]);
});

Deno.test("invalid rules are reported, named, and allow nothing", () => {
  const rs = compileRules([
    rule("badcidr", "INGRESS", "ALL", { cidr: "10.0.0.1/24" }),
    rule("badports", "INGRESS", "TCP", { portStart: 90, portEnd: 80 }),
    rule("icmpports", "INGRESS", "ICMP", { portStart: 1, portEnd: 2 }),
    rule("icmp6cidr", "INGRESS", "ICMP", { cidr: "fd00::/64" }),
  ]);
  assertEquals(rs.rejected.map((r) => r.id), ["badcidr", "badports", "icmpports", "icmp6cidr"]);
  assertEquals(rs.rejected[0].error.includes("10.0.0.1/24"), true, rs.rejected[0].error);
  assertEquals(rs.rejected[1].error.includes("90-80"), true, rs.rejected[1].error);
  assertEquals(rs.match("ingress", 4, TCP, v4("10.0.0.1").remote, true, 85), -1);
  assertEquals(rs.match("ingress", 4, ICMP, v4("10.0.0.1").remote, false, 0), -1);
});

Deno.test("port_start alone is one port, a bare address one host, as the API reads them", () => {
  const rs = compileRules([
    rule("one", "INGRESS", "TCP", { portStart: 443, portEnd: 0 }),
    rule("host", "INGRESS", "UDP", { cidr: "fd00::7" }),
  ]);
  assertEquals(rs.rejected, []);
  assertEquals(rs.match("ingress", 4, TCP, v4("10.0.0.1").remote, true, 443), 0);
  assertEquals(rs.match("ingress", 4, TCP, v4("10.0.0.1").remote, true, 444), -1);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00::7").remote, true, 1), 1);
  assertEquals(rs.match("ingress", 6, UDP, v6("fd00::8").remote, true, 1), -1);
});
