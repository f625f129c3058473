/**
 * Pure validation and normalisation of everything a client sends: CIDRs, addresses, MACs,
 * names, ids. Every function either returns the normalised value or throws an
 * {@link ApiError} whose message names the field and the value.
 *
 * Limits, and why:
 * - IPv4 subnets /8 to /30: a /31 or /32 has no host address besides network/broadcast; a
 *   network larger than a /8 is a configuration mistake.
 * - IPv6 prefixes /48 to /64: addresses are drawn at random from the whole prefix, which needs
 *   a large space to make collisions rare; /64 is the standard subnet size.
 * - Subnets must not touch link-local (169.254.0.0/16, fe80::/10: the gateway lives there),
 *   loopback, multicast or reserved ranges.
 * - Names: 1-63 characters `[A-Za-z0-9._-]`, starting alphanumeric, and not shaped like a
 *   UUID (identifiers accept "UUID or name", so a UUID-shaped name would be ambiguous).
 * - Security-group rules ({@link validateRule}): ports 1-65535 and only for TCP/UDP (0/0 is
 *   any port, a lone port_start is one port); a CIDR of either family, IPv4 for ICMP and IPv6
 *   for ICMPV6, since a rule that can never match is a mistake the user should hear of.
 * - Descriptions: at most 255 characters and no control characters (they end up in tables).
 *
 * @example
 * ```ts
 * const subnet = parseCidr("ipv4_subnet", "10.0.0.0/24", 4); // { family: 4, ... }
 * ```
 * @module
 */

import type { RuleDirectionName, RuleProtocolName } from "../daemon/protocol.ts";
import { ApiError, invalid, Status } from "./errors.ts";
import type { CreateNetworkRequest, RuleDirection, RuleProtocol } from "./proto_types.ts";

/** IP version. */
export type Family = 4 | 6;

/** A parsed, normalised CIDR: `address` has no host bits. */
export interface Cidr {
  family: Family;
  /** The network address as an unsigned integer (32 or 128 bits). */
  address: bigint;
  prefixLength: number;
  /** Canonical text: `10.0.0.0/24`, `fd00::/64`. */
  text: string;
}

/** Bits of an address of each family. */
export const FAMILY_BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Allowed prefix lengths of a network's subnet, per family. */
export const SUBNET_LIMITS: Record<Family, { min: number; max: number }> = {
  4: { min: 8, max: 30 },
  6: { min: 48, max: 64 },
};

/** Allowed prefix lengths of a prefix routed to a vNIC. */
export const ROUTED_LIMITS: Record<Family, { min: number; max: number }> = {
  4: { min: 8, max: 32 },
  6: { min: 16, max: 128 },
};

/** The gateway every guest talks to (link-local, never inside a subnet). */
export const GATEWAY_IPV4 = "169.254.0.1";

/** Ranges no subnet may overlap, with the reason shown to the user. */
const RESERVED: Array<{ cidr: string; what: string }> = [
  { cidr: "0.0.0.0/8", what: '"this network" (0.0.0.0/8)' },
  { cidr: "127.0.0.0/8", what: "loopback (127.0.0.0/8)" },
  {
    cidr: "169.254.0.0/16",
    what: `link-local (169.254.0.0/16, holds the gateway ${GATEWAY_IPV4})`,
  },
  { cidr: "224.0.0.0/4", what: "multicast (224.0.0.0/4)" },
  { cidr: "240.0.0.0/4", what: "reserved (240.0.0.0/4)" },
  { cidr: "::/8", what: "reserved (::/8: loopback, unspecified, IPv4-mapped)" },
  { cidr: "fe80::/10", what: "link-local (fe80::/10, holds the gateway fe80::1)" },
  { cidr: "ff00::/8", what: "multicast (ff00::/8)" },
];

/** Longest name, so that it fits an interface alias and a log line. */
export const MAX_NAME_LENGTH = 63;
/** Most DNS or NTP servers a network may carry (DHCP options stay small). */
export const MAX_SERVERS = 8;
/** Most routed prefixes per family on one vNIC. */
export const MAX_ROUTED_PREFIXES = 64;

/** Parses dotted-quad IPv4; null when malformed. Leading zeros are refused (octal confusion). */
export function parseIpv4(s: string): bigint | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return null;
    v = (v << 8n) | BigInt(p);
  }
  return v;
}

/** Formats a 32-bit integer as dotted quad. */
export function formatIpv4(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
}

/** Parses IPv6 text (with `::` and an optional dotted-quad tail); null when malformed. */
export function parseIpv6(s: string): bigint | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(s) || s.split("::").length > 2) return null;
  let text = s;
  if (text.includes(".")) {
    // The dotted-quad tail becomes two hex groups, then the usual rules apply.
    const at = text.lastIndexOf(":");
    const v4 = parseIpv4(text.slice(at + 1));
    if (v4 === null) return null;
    text = `${text.slice(0, at + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const groups = (part: string): bigint[] | null => {
    if (part === "") return [];
    const out: bigint[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      out.push(BigInt(`0x${g}`));
    }
    return out;
  };
  let all: bigint[];
  if (text.includes("::")) {
    const [a, b] = text.split("::");
    const head = groups(a);
    const rest = groups(b);
    if (!head || !rest || head.length + rest.length > 7) return null;
    all = [...head, ...Array(8 - head.length - rest.length).fill(0n), ...rest];
  } else {
    const g = groups(text);
    if (!g || g.length !== 8) return null;
    all = g;
  }
  return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Formats a 128-bit integer as RFC 5952 canonical IPv6 text. */
export function formatIpv6(v: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** Parses an address of either family. */
export function parseIp(s: string): { family: Family; value: bigint } | null {
  const v4 = parseIpv4(s);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseIpv6(s);
  return v6 === null ? null : { family: 6, value: v6 };
}

/** Formats an address of the given family. */
export function formatIp(family: Family, v: bigint): string {
  return family === 4 ? formatIpv4(v) : formatIpv6(v);
}

/** Host mask of a prefix length: the bits that vary inside the prefix. */
export function hostMask(family: Family, prefixLength: number): bigint {
  return (1n << BigInt(FAMILY_BITS[family] - prefixLength)) - 1n;
}

/** Parses `ADDRESS/LEN` of `family`, refusing host bits. Limits are checked by callers. */
export function parseCidr(field: string, value: string, family: Family): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(value.trim());
  const fam = family === 4 ? "IPv4" : "IPv6";
  if (!m) throw invalid(field, value, `is not an ${fam} CIDR (expected ADDRESS/LENGTH)`);
  const addr = family === 4 ? parseIpv4(m[1]) : parseIpv6(m[1]);
  if (addr === null) throw invalid(field, value, `is not an ${fam} CIDR: bad address "${m[1]}"`);
  const len = Number(m[2]);
  if (len > FAMILY_BITS[family]) {
    throw invalid(field, value, `has prefix length ${len}, more than ${FAMILY_BITS[family]}`);
  }
  const network = addr & ~hostMask(family, len);
  const text = `${formatIp(family, network)}/${len}`;
  if (network !== addr) throw invalid(field, value, `has host bits set; did you mean ${text}?`);
  return { family, address: network, prefixLength: len, text };
}

/** Parses a CIDR and checks its prefix length against `limits`. */
export function parseSizedCidr(
  field: string,
  value: string,
  family: Family,
  limits: { min: number; max: number },
): Cidr {
  const c = parseCidr(field, value, family);
  if (c.prefixLength < limits.min || c.prefixLength > limits.max) {
    throw invalid(
      field,
      value,
      `has prefix length /${c.prefixLength}; allowed are /${limits.min} to /${limits.max}`,
    );
  }
  return c;
}

/** True when two CIDRs of one family share any address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.prefixLength, b.prefixLength);
  const mask = ~hostMask(a.family, len);
  return (a.address & mask) === (b.address & mask);
}

/** True when `addr` lies in `cidr`. */
export function contains(cidr: Cidr, addr: bigint): boolean {
  return (addr & ~hostMask(cidr.family, cidr.prefixLength)) === cidr.address;
}

const reservedCidrs = RESERVED.map((r) => ({
  cidr: parseCidr("reserved", r.cidr, r.cidr.includes(":") ? 6 : 4),
  what: r.what,
}));

/** Parses a network's subnet: sized, and outside every reserved range. */
export function parseSubnet(field: string, value: string, family: Family): Cidr {
  const c = parseSizedCidr(field, value, family, SUBNET_LIMITS[family]);
  const clash = reservedCidrs.find((r) => overlaps(r.cidr, c));
  if (clash) throw invalid(field, value, `overlaps ${clash.what}; pick a private range`);
  return c;
}

/** Parses a prefix routed to a vNIC; it must not overlap the network's own subnet. */
export function parseRoutedPrefix(
  field: string,
  value: string,
  family: Family,
  subnet: Cidr | null,
): Cidr {
  const c = parseSizedCidr(field, value, family, ROUTED_LIMITS[family]);
  const clash = reservedCidrs.find((r) => overlaps(r.cidr, c));
  if (clash) throw invalid(field, value, `overlaps ${clash.what}`);
  if (subnet && overlaps(subnet, c)) {
    throw invalid(field, value, `overlaps the network's subnet ${subnet.text}`);
  }
  return c;
}

/** Normalises a list of routed prefixes, refusing duplicates and overlaps within the list. */
export function parseRoutedPrefixes(
  field: string,
  values: string[],
  family: Family,
  subnet: Cidr | null,
): Cidr[] {
  if (values.length > MAX_ROUTED_PREFIXES) {
    throw invalid(field, `${values.length} prefixes`, `exceeds ${MAX_ROUTED_PREFIXES}`);
  }
  const out: Cidr[] = [];
  for (const v of values) {
    const c = parseRoutedPrefix(field, v, family, subnet);
    const other = out.find((o) => overlaps(o, c));
    if (other) throw invalid(field, v, `overlaps ${other.text} in the same request`);
    out.push(c);
  }
  return out;
}

/**
 * Checks a requested host address: in the subnet, not its network address, not (IPv4) its
 * broadcast address, not the IPv6 subnet-router anycast address. Returns it normalised.
 */
export function parseHostAddress(field: string, value: string, subnet: Cidr): bigint {
  const fam = subnet.family === 4 ? "IPv4" : "IPv6";
  const v = subnet.family === 4 ? parseIpv4(value) : parseIpv6(value);
  if (v === null) throw invalid(field, value, `is not an ${fam} address`);
  if (!contains(subnet, v)) throw invalid(field, value, `is not inside the subnet ${subnet.text}`);
  if (v === subnet.address) {
    throw invalid(field, value, `is the network address of ${subnet.text}`);
  }
  if (subnet.family === 4 && v === (subnet.address | hostMask(4, subnet.prefixLength))) {
    throw invalid(field, value, `is the broadcast address of ${subnet.text}`);
  }
  return v;
}

/** Parses a MAC address; returns it lower-case. Multicast and all-zero MACs are refused. */
export function parseMac(field: string, value: string): string {
  if (!/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(value)) {
    throw invalid(field, value, `is not a MAC address (expected the form 02:00:5e:12:34:56)`);
  }
  const mac = value.toLowerCase();
  if (parseInt(mac.slice(0, 2), 16) & 1) {
    throw invalid(field, value, "is a multicast MAC; a vNIC needs a unicast one");
  }
  if (mac === "00:00:00:00:00:00") throw invalid(field, value, "is the all-zero MAC");
  return mac;
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** True for text shaped like a UUID. */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** Parses a UUID; returns it lower-case. */
export function parseUuid(field: string, value: string): string {
  if (!isUuid(value)) {
    throw invalid(field, value, "is not a UUID (expected 8-4-4-4-12 hexadecimal digits)");
  }
  return value.toLowerCase();
}

/** Checks a name: 1-63 characters `[A-Za-z0-9._-]`, alphanumeric first, not a UUID. */
export function parseName(field: string, value: string): string {
  if (value.length === 0) throw invalid(field, value, "must not be empty");
  if (value.length > MAX_NAME_LENGTH) {
    throw invalid(field, value, `is ${value.length} characters; at most ${MAX_NAME_LENGTH}`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) {
    throw invalid(
      field,
      value,
      "may contain only letters, digits, '.', '_' and '-', starting with a letter or digit",
    );
  }
  if (isUuid(value)) throw invalid(field, value, "looks like a UUID; names must not");
  return value;
}

/** DNS servers: IP addresses of either family, normalised, no duplicates. */
export function parseDnsServers(field: string, values: string[]): string[] {
  if (values.length > MAX_SERVERS) {
    throw invalid(field, `${values.length} servers`, `exceeds ${MAX_SERVERS}`);
  }
  const out: string[] = [];
  for (const v of values) {
    const ip = parseIp(v.trim());
    if (!ip) throw invalid(field, v, "is not an IPv4 or IPv6 address");
    const text = formatIp(ip.family, ip.value);
    if (out.includes(text)) throw invalid(field, v, "is listed twice");
    out.push(text);
  }
  return out;
}

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** NTP servers: IP addresses (normalised) or host names, no duplicates. */
export function parseNtpServers(field: string, values: string[]): string[] {
  if (values.length > MAX_SERVERS) {
    throw invalid(field, `${values.length} servers`, `exceeds ${MAX_SERVERS}`);
  }
  const out: string[] = [];
  for (const v of values) {
    const t = v.trim();
    const ip = parseIp(t);
    let text: string;
    if (ip) text = formatIp(ip.family, ip.value);
    else if (HOSTNAME_RE.test(t)) text = t.toLowerCase();
    else throw invalid(field, v, "is neither an IP address nor a host name");
    if (out.includes(text)) throw invalid(field, v, "is listed twice");
    out.push(text);
  }
  return out;
}

/** What a CreateNetwork request becomes once validated. */
export interface NetworkSpec {
  id: string | null;
  name: string;
  ipv4: Cidr | null;
  ipv6: Cidr | null;
  dnsServers: string[];
  ntpServers: string[];
  isPublic: boolean;
}

/** Validates the fields of a CreateNetwork request (overlap with other networks: the store). */
export function validateNetwork(req: CreateNetworkRequest): NetworkSpec {
  const name = parseName("name", req.name);
  const id = req.id === "" ? null : parseUuid("id", req.id);
  if (!req.ipv4_enabled && !req.ipv6_enabled) {
    throw new ApiError(
      Status.INVALID_ARGUMENT,
      "ipv4_enabled, ipv6_enabled: at least one address family must be enabled",
    );
  }
  const family = (enabled: boolean, field: string, value: string, f: Family): Cidr | null => {
    if (!enabled) {
      if (value !== "") {
        throw invalid(field, value, `is set but ${f === 4 ? "ipv4" : "ipv6"}_enabled is false`);
      }
      return null;
    }
    if (value === "") throw invalid(field, value, "is required when the family is enabled");
    return parseSubnet(field, value, f);
  };
  return {
    id,
    name,
    ipv4: family(req.ipv4_enabled, "ipv4_subnet", req.ipv4_subnet, 4),
    ipv6: family(req.ipv6_enabled, "ipv6_prefix", req.ipv6_prefix, 6),
    dnsServers: parseDnsServers("dns_servers", req.dns_servers),
    ntpServers: parseNtpServers("ntp_servers", req.ntp_servers),
    isPublic: req.is_public,
  };
}

/** A validated CreateNic request, before the network-dependent checks. */
export interface NicSpec {
  id: string | null;
  name: string;
  networkRef: string;
  mac: string;
  ipv4: string;
  ipv6: string;
  routedIpv4: string[];
  routedIpv6: string[];
}

/** Validates the request-only fields of CreateNic (network-dependent checks: the store). */
export function validateNicSpec(req: {
  id: string;
  name: string;
  network_id: string;
  mac_address: string;
  ipv4_address: string;
  ipv6_address: string;
  routed_ipv4_prefixes: string[];
  routed_ipv6_prefixes: string[];
}): NicSpec {
  if (req.network_id === "") throw invalid("network_id", "", "must name a network (UUID or name)");
  return {
    id: req.id === "" ? null : parseUuid("id", req.id),
    name: req.name === "" ? "" : parseName("name", req.name),
    networkRef: req.network_id,
    mac: req.mac_address === "" ? "" : parseMac("mac_address", req.mac_address),
    ipv4: req.ipv4_address.trim(),
    ipv6: req.ipv6_address.trim(),
    routedIpv4: req.routed_ipv4_prefixes,
    routedIpv6: req.routed_ipv6_prefixes,
  };
}

/** Longest description of a security group or a rule: room for a sentence, not a document. */
export const MAX_DESCRIPTION_LENGTH = 255;
/** Highest TCP/UDP port. */
export const MAX_PORT = 65535;

/** Checks a free-text description: bounded, printable (it ends up in tables and logs). */
export function parseDescription(field: string, value: string): string {
  if (value.length > MAX_DESCRIPTION_LENGTH) {
    throw invalid(
      field,
      `${value.slice(0, 32)}…`,
      `is ${value.length} characters; at most ${MAX_DESCRIPTION_LENGTH}`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw invalid(field, value, "contains control characters (newlines, tabs, …)");
  }
  return value;
}

/** The API's enum names of a dataplane direction and protocol (answers carry these). */
export const DIRECTION_API_NAMES: Record<RuleDirectionName, RuleDirection> = {
  INGRESS: "RULE_DIRECTION_INGRESS",
  EGRESS: "RULE_DIRECTION_EGRESS",
};

/** See {@link DIRECTION_API_NAMES}. */
export const PROTOCOL_API_NAMES: Record<RuleProtocolName, RuleProtocol> = {
  ALL: "RULE_PROTOCOL_ALL",
  TCP: "RULE_PROTOCOL_TCP",
  UDP: "RULE_PROTOCOL_UDP",
  ICMP: "RULE_PROTOCOL_ICMP",
  ICMPV6: "RULE_PROTOCOL_ICMPV6",
};

/** Inverse of a name table: API enum name -> dataplane name. */
function inverse<K extends string, V extends string>(m: Record<K, V>): Map<string, K> {
  return new Map(Object.entries(m).map(([k, v]) => [v as string, k as K]));
}

const DIRECTIONS = inverse(DIRECTION_API_NAMES);
const PROTOCOLS = inverse(PROTOCOL_API_NAMES);

/** Protocols whose rules may name ports. */
const PORT_PROTOCOLS: ReadonlySet<RuleProtocolName> = new Set(["TCP", "UDP"]);
/** Protocols that exist in one address family only: a CIDR of the other can never match. */
const PROTOCOL_FAMILY: Partial<Record<RuleProtocolName, Family>> = { ICMP: 4, ICMPV6: 6 };

/** A validated AddSecurityGroupRule request, in the dataplane's terms. */
export interface RuleSpec {
  /** The group as the client named it (id or name); the store resolves it. */
  groupRef: string;
  direction: RuleDirectionName;
  protocol: RuleProtocolName;
  /** 0/0: any port; otherwise 1 ≤ portStart ≤ portEnd ≤ 65535. */
  portStart: number;
  portEnd: number;
  /** Normalised CIDR, or "" for any address. */
  cidr: string;
  description: string;
}

/** Parses a rule's remote CIDR of either family; a bare address means that one host. */
export function parseRuleCidr(field: string, value: string): Cidr | null {
  const text = value.trim();
  if (text === "") return null;
  const bare = text.includes("/") ? null : parseIp(text);
  if (bare) return parseCidr(field, `${text}/${FAMILY_BITS[bare.family]}`, bare.family);
  const family: Family = text.includes(":") ? 6 : 4;
  return parseCidr(field, text, family);
}

/**
 * Validates the fields of AddSecurityGroupRule. Ports: 0/0 is any port; a port_start with
 * port_end 0 is that single port; otherwise a range 1-65535 with port_end ≥ port_start. Ports
 * only for TCP and UDP. The CIDR (empty: any) must be of IPv4 for ICMP and of IPv6 for ICMPV6.
 */
export function validateRule(req: {
  security_group_id: string;
  direction: string;
  protocol: string;
  port_start: number;
  port_end: number;
  cidr: string;
  description: string;
}): RuleSpec {
  if (req.security_group_id === "") {
    throw invalid("security_group_id", "", "must name a security group (UUID or name)");
  }
  const direction = DIRECTIONS.get(String(req.direction));
  if (!direction) {
    throw invalid(
      "direction",
      req.direction,
      "is not a rule direction; use RULE_DIRECTION_INGRESS or RULE_DIRECTION_EGRESS",
    );
  }
  const protocol = PROTOCOLS.get(String(req.protocol));
  if (!protocol) {
    throw invalid(
      "protocol",
      req.protocol,
      `is not a rule protocol; use one of ${[...PROTOCOLS.keys()].join(", ")}`,
    );
  }
  const portStart = req.port_start;
  let portEnd = req.port_end;
  if (!PORT_PROTOCOLS.has(protocol)) {
    if (portStart !== 0 || portEnd !== 0) {
      const field = portStart !== 0 ? "port_start" : "port_end";
      throw invalid(
        field,
        portStart !== 0 ? portStart : portEnd,
        `is set but protocol ${req.protocol} has no ports; ports apply to TCP and UDP only`,
      );
    }
  } else if (portStart !== 0 || portEnd !== 0) {
    if (portStart === 0) {
      throw invalid(
        "port_start",
        0,
        `with port_end ${portEnd}: set port_start too (0/0 means any port)`,
      );
    }
    if (portStart > MAX_PORT) throw invalid("port_start", portStart, `exceeds ${MAX_PORT}`);
    if (portEnd === 0) portEnd = portStart;
    if (portEnd > MAX_PORT) throw invalid("port_end", portEnd, `exceeds ${MAX_PORT}`);
    if (portEnd < portStart) {
      throw invalid("port_end", portEnd, `is below port_start ${portStart}`);
    }
  }
  const cidr = parseRuleCidr("cidr", req.cidr);
  const family = PROTOCOL_FAMILY[protocol];
  if (cidr && family && cidr.family !== family) {
    throw invalid(
      "cidr",
      req.cidr,
      `is IPv${cidr.family} but protocol ${req.protocol} is IPv${family} only`,
    );
  }
  return {
    groupRef: req.security_group_id,
    direction,
    protocol,
    portStart,
    portEnd,
    cidr: cidr?.text ?? "",
    description: parseDescription("description", req.description),
  };
}
