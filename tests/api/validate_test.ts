import { assert, assertEquals, assertThrows } from "../assert.ts";
import { ApiError, Status } from "../../api/errors.ts";
import {
  formatIpv6,
  overlaps,
  parseCidr,
  parseDescription,
  parseDnsServers,
  parseHostAddress,
  parseIpv4,
  parseIpv6,
  parseMac,
  parseName,
  parseNtpServers,
  parseRoutedPrefixes,
  parseRuleCidr,
  parseSubnet,
  parseUuid,
  validateNetwork,
  validateNicSpec,
  validateRule,
} from "../../api/validate.ts";
import { lowestFreeIpv4, randomFreeIpv6, randomMac } from "../../api/allocate.ts";

function rejects(fn: () => unknown, code: number, ...includes: string[]): void {
  const e = assertThrows(fn, ApiError) as ApiError;
  assertEquals(Status[e.code], Status[code], e.message);
  for (const s of includes) assert(e.message.includes(s), `"${e.message}" lacks "${s}"`);
}

Deno.test("IPv4 addresses parse strictly", () => {
  assertEquals(parseIpv4("10.0.0.1"), 0x0a000001n);
  assertEquals(parseIpv4("255.255.255.255"), 0xffffffffn);
  for (const bad of ["10.0.0", "10.0.0.256", "010.0.0.1", "1.2.3.4.5", "a.b.c.d", ""]) {
    assertEquals(parseIpv4(bad), null, bad);
  }
});

Deno.test("IPv6 addresses parse and format canonically (RFC 5952)", () => {
  assertEquals(parseIpv6("::"), 0n);
  assertEquals(parseIpv6("::1"), 1n);
  assertEquals(formatIpv6(parseIpv6("FD00:0:0:0:0:0:0:1")!), "fd00::1");
  assertEquals(formatIpv6(parseIpv6("2001:db8:0:0:1:0:0:1")!), "2001:db8::1:0:0:1");
  assertEquals(formatIpv6(parseIpv6("2001:0db8::0001")!), "2001:db8::1");
  assertEquals(formatIpv6(parseIpv6("::ffff:10.0.0.1")!), "::ffff:a00:1");
  assertEquals(formatIpv6(parseIpv6("1:2:3:4:5:6:7:8")!), "1:2:3:4:5:6:7:8");
  assertEquals(formatIpv6(parseIpv6("1:0:3:4:5:6:7:8")!), "1:0:3:4:5:6:7:8");
  for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "g::", ":1"]) {
    assertEquals(parseIpv6(bad), null, bad);
  }
});

Deno.test("CIDRs: normalised, host bits refused with a suggestion", () => {
  assertEquals(parseCidr("f", "fd00:0:0:1::/64", 6).text, "fd00:0:0:1::/64");
  assertEquals(parseCidr("f", "FD00::/48", 6).text, "fd00::/48");
  rejects(
    () => parseCidr("ipv4_subnet", "10.0.0.1/24", 4),
    Status.INVALID_ARGUMENT,
    "ipv4_subnet",
    "10.0.0.1/24",
    "10.0.0.0/24",
  );
  rejects(() => parseCidr("ipv4_subnet", "10.0.0.0/33", 4), Status.INVALID_ARGUMENT, "33");
  rejects(() => parseCidr("ipv4_subnet", "10.0.0.0", 4), Status.INVALID_ARGUMENT, "CIDR");
  rejects(() => parseCidr("ipv6_prefix", "10.0.0.0/24", 6), Status.INVALID_ARGUMENT, "ipv6_prefix");
});

Deno.test("subnet sizes and reserved ranges", () => {
  assertEquals(parseSubnet("s", "10.0.0.0/8", 4).prefixLength, 8);
  assertEquals(parseSubnet("s", "192.168.1.0/30", 4).prefixLength, 30);
  rejects(() => parseSubnet("ipv4_subnet", "10.0.0.0/31", 4), Status.INVALID_ARGUMENT, "/8 to /30");
  rejects(() => parseSubnet("ipv4_subnet", "10.0.0.0/7", 4), Status.INVALID_ARGUMENT, "/7");
  rejects(() => parseSubnet("ipv6_prefix", "fd00::/96", 6), Status.INVALID_ARGUMENT, "/48 to /64");
  rejects(() => parseSubnet("ipv6_prefix", "fd00::/32", 6), Status.INVALID_ARGUMENT, "/32");
  rejects(
    () => parseSubnet("ipv4_subnet", "169.254.0.0/24", 4),
    Status.INVALID_ARGUMENT,
    "169.254.0.1",
  );
  rejects(() => parseSubnet("ipv4_subnet", "127.0.0.0/24", 4), Status.INVALID_ARGUMENT, "loopback");
  rejects(() => parseSubnet("ipv6_prefix", "fe80::/64", 6), Status.INVALID_ARGUMENT, "link-local");
});

Deno.test("host addresses: inside, not network, not broadcast", () => {
  const s = parseSubnet("s", "10.1.0.0/24", 4);
  assertEquals(parseHostAddress("ipv4_address", "10.1.0.7", s), 0x0a010007n);
  rejects(
    () => parseHostAddress("ipv4_address", "10.1.0.0", s),
    Status.INVALID_ARGUMENT,
    "network address",
  );
  rejects(
    () => parseHostAddress("ipv4_address", "10.1.0.255", s),
    Status.INVALID_ARGUMENT,
    "broadcast",
  );
  rejects(
    () => parseHostAddress("ipv4_address", "10.2.0.1", s),
    Status.INVALID_ARGUMENT,
    "10.1.0.0/24",
  );
  rejects(
    () => parseHostAddress("ipv4_address", "nope", s),
    Status.INVALID_ARGUMENT,
    "ipv4_address",
  );
  const p = parseSubnet("s", "fd00:1::/64", 6);
  rejects(
    () => parseHostAddress("ipv6_address", "fd00:1::", p),
    Status.INVALID_ARGUMENT,
    "network",
  );
  assertEquals(parseHostAddress("ipv6_address", "fd00:1::ffff:ffff:ffff:ffff", p) > 0n, true);
});

Deno.test("MACs: well-formed, unicast, normalised", () => {
  assertEquals(parseMac("mac_address", "02:AB:cd:00:11:22"), "02:ab:cd:00:11:22");
  rejects(() => parseMac("mac_address", "01:00:5e:00:00:01"), Status.INVALID_ARGUMENT, "multicast");
  rejects(() => parseMac("mac_address", "00:00:00:00:00:00"), Status.INVALID_ARGUMENT, "all-zero");
  rejects(
    () => parseMac("mac_address", "02:00:00:00:00"),
    Status.INVALID_ARGUMENT,
    "02:00:00:00:00",
  );
  rejects(() => parseMac("mac_address", "02-00-00-00-00-01"), Status.INVALID_ARGUMENT);
});

Deno.test("names and UUIDs", () => {
  assertEquals(parseName("name", "web-1.prod_a"), "web-1.prod_a");
  rejects(() => parseName("name", ""), Status.INVALID_ARGUMENT, "empty");
  rejects(() => parseName("name", "a".repeat(64)), Status.INVALID_ARGUMENT, "63");
  rejects(() => parseName("name", "-x"), Status.INVALID_ARGUMENT, "-x");
  rejects(() => parseName("name", "a b"), Status.INVALID_ARGUMENT, "letters");
  rejects(() => parseName("name", crypto.randomUUID()), Status.INVALID_ARGUMENT, "UUID");
  const id = crypto.randomUUID();
  assertEquals(parseUuid("id", id.toUpperCase()), id);
  rejects(() => parseUuid("id", "1234"), Status.INVALID_ARGUMENT, "id", "1234");
});

Deno.test("DNS and NTP servers", () => {
  assertEquals(parseDnsServers("dns_servers", ["1.1.1.1", "2606:4700:4700:0::1111"]), [
    "1.1.1.1",
    "2606:4700:4700::1111",
  ]);
  rejects(
    () => parseDnsServers("dns_servers", ["dns.example"]),
    Status.INVALID_ARGUMENT,
    "dns.example",
  );
  rejects(
    () => parseDnsServers("dns_servers", ["1.1.1.1", "1.1.1.1"]),
    Status.INVALID_ARGUMENT,
    "twice",
  );
  assertEquals(parseNtpServers("ntp_servers", ["Pool.NTP.org", "10.0.0.1"]), [
    "pool.ntp.org",
    "10.0.0.1",
  ]);
  rejects(() => parseNtpServers("ntp_servers", ["bad host"]), Status.INVALID_ARGUMENT, "bad host");
});

Deno.test("routed prefixes: sized, outside the subnet, no overlap within the list", () => {
  const s = parseSubnet("s", "10.0.0.0/24", 4);
  assertEquals(
    parseRoutedPrefixes("routed_ipv4_prefixes", ["192.168.5.0/28"], 4, s)[0].text,
    "192.168.5.0/28",
  );
  rejects(
    () => parseRoutedPrefixes("routed_ipv4_prefixes", ["10.0.0.16/28"], 4, s),
    Status.INVALID_ARGUMENT,
    "subnet 10.0.0.0/24",
  );
  rejects(
    () => parseRoutedPrefixes("routed_ipv4_prefixes", ["192.168.0.0/16", "192.168.5.0/24"], 4, s),
    Status.INVALID_ARGUMENT,
    "overlaps 192.168.0.0/16",
  );
});

Deno.test("overlap", () => {
  const a = parseCidr("a", "10.0.0.0/16", 4);
  assert(overlaps(a, parseCidr("b", "10.0.5.0/24", 4)));
  assert(!overlaps(a, parseCidr("b", "10.1.0.0/24", 4)));
  assert(!overlaps(a, parseCidr("b", "fd00::/64", 6)));
});

Deno.test("network requests: one family at least, consistent flags", () => {
  const base = {
    id: "",
    name: "n",
    ipv4_enabled: false,
    ipv4_subnet: "",
    ipv6_enabled: false,
    ipv6_prefix: "",
    dns_servers: [],
    ntp_servers: [],
    is_public: false,
  };
  rejects(() => validateNetwork(base), Status.INVALID_ARGUMENT, "at least one");
  rejects(
    () => validateNetwork({ ...base, ipv4_enabled: true }),
    Status.INVALID_ARGUMENT,
    "ipv4_subnet",
    "required",
  );
  rejects(
    () =>
      validateNetwork({
        ...base,
        ipv6_enabled: true,
        ipv6_prefix: "fd00::/64",
        ipv4_subnet: "10.0.0.0/24",
      }),
    Status.INVALID_ARGUMENT,
    "ipv4_enabled is false",
  );
  rejects(
    () => validateNetwork({ ...base, ipv4_enabled: true, ipv4_subnet: "10.0.0.0/24", id: "x" }),
    Status.INVALID_ARGUMENT,
    "id",
  );
  const ok = validateNetwork({ ...base, ipv6_enabled: true, ipv6_prefix: "FD00::/64" });
  assertEquals(ok.ipv6?.text, "fd00::/64");
  assertEquals(ok.ipv4, null);
});

Deno.test("nic requests: network required, MAC and id checked", () => {
  const base = {
    id: "",
    name: "",
    network_id: "blue",
    mac_address: "",
    ipv4_address: "",
    ipv6_address: "",
    routed_ipv4_prefixes: [],
    routed_ipv6_prefixes: [],
  };
  assertEquals(validateNicSpec(base).networkRef, "blue");
  rejects(
    () => validateNicSpec({ ...base, network_id: "" }),
    Status.INVALID_ARGUMENT,
    "network_id",
  );
  rejects(
    () => validateNicSpec({ ...base, mac_address: "ff:ff:ff:ff:ff:ff" }),
    Status.INVALID_ARGUMENT,
    "mac_address",
  );
  rejects(() => validateNicSpec({ ...base, name: "bad name" }), Status.INVALID_ARGUMENT, "name");
});

Deno.test("IPv4 allocation: lowest free host, skipping network and broadcast", () => {
  const s = parseSubnet("s", "10.0.0.0/30", 4);
  assertEquals(lowestFreeIpv4(s, new Set()), 0x0a000001n);
  assertEquals(lowestFreeIpv4(s, new Set([0x0a000001n])), 0x0a000002n);
  assertEquals(lowestFreeIpv4(s, new Set([0x0a000001n, 0x0a000002n])), null);
  const big = parseSubnet("s", "10.0.0.0/24", 4);
  assertEquals(lowestFreeIpv4(big, new Set([0x0a000001n, 0x0a000003n])), 0x0a000002n);
});

Deno.test("IPv6 allocation draws from the whole prefix", () => {
  const p = parseSubnet("s", "fd00:0:0:7::/64", 6);
  const seen = new Set<bigint>();
  let highHalf = 0;
  const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  for (let i = 0; i < 200; i++) {
    const a = randomFreeIpv6(p, (v) => seen.has(v), random)!;
    assert((a >> 64n) === (p.address >> 64n), "inside the prefix");
    assert(!seen.has(a));
    seen.add(a);
    if ((a & 0xffffffffffffffffn) >= 1n << 63n) highHalf++;
  }
  // Addresses spread over the whole interface-id space, not a first slice.
  assert(highHalf > 60 && highHalf < 140, `high half drawn ${highHalf}/200 times`);
  const p48 = parseSubnet("s", "fd00:1::/48", 6);
  const bits = new Set<bigint>();
  for (let i = 0; i < 50; i++) {
    bits.add((randomFreeIpv6(p48, () => false, random)! >> 64n) & 0xffffn);
  }
  assert(bits.size > 40, "the subnet id bits of a /48 vary too");
});

Deno.test("IPv6 allocation retries collisions and gives up cleanly", () => {
  const p = parseSubnet("s", "fd00::/64", 6);
  let calls = 0;
  const counting = (n: number) => {
    calls++;
    return new Uint8Array(n).fill(calls < 3 ? 0x11 : 0x22);
  };
  const taken = p.address | 0x1111111111111111n;
  assertEquals(randomFreeIpv6(p, (v) => v === taken, counting), p.address | 0x2222222222222222n);
  assertEquals(randomFreeIpv6(p, () => true, counting), null);
  // The all-zero interface id is never handed out.
  assertEquals(randomFreeIpv6(p, () => false, (n) => new Uint8Array(n)), null);
});

Deno.test("MACs are locally administered unicast", () => {
  for (let i = 0; i < 100; i++) {
    const mac = randomMac((n) => crypto.getRandomValues(new Uint8Array(n)));
    assertEquals(parseMac("m", mac), mac);
    assert(mac.startsWith("02:"));
  }
});

const RULE = {
  security_group_id: "web",
  direction: "RULE_DIRECTION_INGRESS",
  protocol: "RULE_PROTOCOL_TCP",
  port_start: 0,
  port_end: 0,
  cidr: "",
  description: "",
};

Deno.test("rules: ports 0/0 any, a lone port_start one port, ranges checked", () => {
  const r = (extra: Partial<typeof RULE>) => validateRule({ ...RULE, ...extra });
  assertEquals([r({}).portStart, r({}).portEnd], [0, 0]);
  assertEquals([r({ port_start: 443 }).portStart, r({ port_start: 443 }).portEnd], [443, 443]);
  const range = r({ protocol: "RULE_PROTOCOL_UDP", port_start: 1, port_end: 65535 });
  assertEquals([range.protocol, range.portStart, range.portEnd], ["UDP", 1, 65535]);
  rejects(() => r({ port_end: 80 }), Status.INVALID_ARGUMENT, "port_start", "port_end 80");
  rejects(() => r({ port_start: 65536 }), Status.INVALID_ARGUMENT, "port_start", "65536");
  rejects(() => r({ port_start: 1, port_end: 65536 }), Status.INVALID_ARGUMENT, "port_end");
  rejects(() => r({ port_start: 90, port_end: 80 }), Status.INVALID_ARGUMENT, "port_end: 80");
  for (const protocol of ["RULE_PROTOCOL_ALL", "RULE_PROTOCOL_ICMP", "RULE_PROTOCOL_ICMPV6"]) {
    rejects(() => r({ protocol, port_start: 1 }), Status.INVALID_ARGUMENT, "TCP and UDP", protocol);
    rejects(() => r({ protocol, port_end: 1 }), Status.INVALID_ARGUMENT, "port_end");
  }
});

Deno.test("rules: direction and protocol must be set and known", () => {
  const r = (extra: Record<string, unknown>) => validateRule({ ...RULE, ...extra } as typeof RULE);
  assertEquals(r({ direction: "RULE_DIRECTION_EGRESS" }).direction, "EGRESS");
  assertEquals(r({ protocol: "RULE_PROTOCOL_ICMPV6" }).protocol, "ICMPV6");
  rejects(
    () => r({ direction: "RULE_DIRECTION_UNSPECIFIED" }),
    Status.INVALID_ARGUMENT,
    "direction",
  );
  rejects(() => r({ protocol: "RULE_PROTOCOL_UNSPECIFIED" }), Status.INVALID_ARGUMENT, "protocol");
  // An enum number this version does not know arrives as the number.
  rejects(() => r({ protocol: 9 }), Status.INVALID_ARGUMENT, "protocol", "9");
  rejects(() => r({ direction: "constructor" }), Status.INVALID_ARGUMENT, "direction");
  rejects(() => r({ security_group_id: "" }), Status.INVALID_ARGUMENT, "security_group_id");
});

Deno.test("rules: CIDR of either family, normalised, family matching ICMP and ICMPV6", () => {
  assertEquals(parseRuleCidr("cidr", ""), null);
  assertEquals(parseRuleCidr("cidr", " 10.1.0.0/16 ")?.text, "10.1.0.0/16");
  assertEquals(parseRuleCidr("cidr", "10.1.2.3")?.text, "10.1.2.3/32");
  assertEquals(parseRuleCidr("cidr", "FD00:0::1")?.text, "fd00::1/128");
  assertEquals(parseRuleCidr("cidr", "0.0.0.0/0")?.text, "0.0.0.0/0");
  assertEquals(parseRuleCidr("cidr", "::/0")?.text, "::/0");
  rejects(() => parseRuleCidr("cidr", "10.1.0.1/16"), Status.INVALID_ARGUMENT, "10.1.0.0/16");
  rejects(() => parseRuleCidr("cidr", "fd00::/129"), Status.INVALID_ARGUMENT, "129");
  rejects(() => parseRuleCidr("cidr", "10.0.0"), Status.INVALID_ARGUMENT, "cidr", "10.0.0");
  const r = (protocol: string, cidr: string) => validateRule({ ...RULE, protocol, cidr }).cidr;
  assertEquals(r("RULE_PROTOCOL_ICMP", "10.0.0.0/8"), "10.0.0.0/8");
  assertEquals(r("RULE_PROTOCOL_ICMPV6", "fd00::/8"), "fd00::/8");
  assertEquals(r("RULE_PROTOCOL_ALL", "fd00::/8"), "fd00::/8");
  rejects(() => r("RULE_PROTOCOL_ICMP", "fd00::/8"), Status.INVALID_ARGUMENT, "IPv4 only");
  rejects(() => r("RULE_PROTOCOL_ICMPV6", "10.0.0.0/8"), Status.INVALID_ARGUMENT, "IPv6 only");
});

Deno.test("descriptions are bounded and single-line", () => {
  assertEquals(parseDescription("description", "web tier, port 80"), "web tier, port 80");
  assertEquals(parseDescription("description", "é".repeat(255)).length, 255);
  rejects(() => parseDescription("description", "x".repeat(256)), Status.INVALID_ARGUMENT, "256");
  rejects(() => parseDescription("description", "a\tb"), Status.INVALID_ARGUMENT, "control");
});
