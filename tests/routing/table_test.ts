import { assertEquals, assertThrows } from "../assert.ts";
import { RouteTable } from "../../routing/table.ts";
import { type Cidr, parseCidr, parseIpv4, parseIpv6 } from "../../wire/addr.ts";

const v4 = (s: string) => parseCidr(s, 4) as Cidr;
const v6 = (s: string) => parseCidr(s, 6) as Cidr;
const a4 = (s: string) => parseIpv4(s) as Uint8Array;
const a6 = (s: string) => parseIpv6(s) as Uint8Array;

Deno.test("longest prefix wins, per family", () => {
  const t = new RouteTable<string>();
  t.insert(v4("10.0.0.0/8"), "wide");
  t.insert(v4("10.1.0.0/16"), "mid");
  t.insert(v4("10.1.2.3/32"), "host");
  t.insert(v4("0.0.0.0/0"), "default");
  t.insert(v6("fd00::/48"), "six-wide");
  t.insert(v6("fd00:0:0:1::/64"), "six-64");
  t.insert(v6("fd00:0:0:1::7/128"), "six-host");
  assertEquals(t.lookup(a4("10.1.2.3")), "host");
  assertEquals(t.lookup(a4("10.1.2.4")), "mid");
  assertEquals(t.lookup(a4("10.200.0.1")), "wide");
  assertEquals(t.lookup(a4("192.0.2.1")), "default");
  assertEquals(t.lookup(a6("fd00:0:0:1::7")), "six-host");
  assertEquals(t.lookup(a6("fd00:0:0:1::8")), "six-64");
  assertEquals(t.lookup(a6("fd00:0:0:2::1")), "six-wide");
  assertEquals(t.lookup(a6("fd01::1")), undefined);
  assertEquals(t.size, 7);
});

Deno.test("prefix lengths that are not multiples of 8 or 32 match exactly their bits", () => {
  const t = new RouteTable<string>();
  t.insert(v4("10.0.0.96/27"), "p27");
  t.insert(v6("2001:db8:8000::/33"), "p33");
  t.insert(v6("2001:db8:0:0:8000::/65"), "p65");
  assertEquals(t.lookup(a4("10.0.0.127")), "p27");
  assertEquals(t.lookup(a4("10.0.0.128")), undefined);
  assertEquals(t.lookup(a4("10.0.0.95")), undefined);
  assertEquals(t.lookup(a6("2001:db8:ffff::1")), "p33");
  assertEquals(t.lookup(a6("2001:db8:7fff::1")), undefined);
  assertEquals(t.lookup(a6("2001:db8::ffff:0:0:1")), "p65");
  assertEquals(t.lookup(a6("2001:db8::7fff:0:0:1")), undefined);
});

Deno.test("remove drops exactly one route; replace overwrites", () => {
  const t = new RouteTable<string>();
  t.insert(v4("10.0.0.0/24"), "a");
  t.insert(v4("10.0.0.5/32"), "b");
  t.insert(v4("10.0.0.5/32"), "c");
  assertEquals(t.lookup(a4("10.0.0.5")), "c");
  assertEquals(t.remove(v4("10.0.0.5/32")), true);
  assertEquals(t.remove(v4("10.0.0.5/32")), false);
  assertEquals(t.lookup(a4("10.0.0.5")), "a");
  assertEquals(t.get(v4("10.0.0.0/24")), "a");
  assertEquals(t.size, 1);
  assertThrows(() => t.insert({ addr: new Uint8Array(5), prefixLen: 0 }, "x"), RangeError);
  assertEquals(t.lookup(new Uint8Array(5)), undefined);
});
