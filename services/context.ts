/**
 * What the gateway services know about one vNIC, the gateway's own addresses, and the
 * verdict they return. The context is an input to every call, never cached, so a change of
 * DNS or NTP servers shows in the next reply.
 * @module
 */

import { type Cidr, type Ipv4Addr, IPV6_LEN, type Ipv6Addr, type MacAddr } from "../wire/mod.ts";
import type { DropReason } from "./counters.ts";

/** The gateway's IPv4 address, 169.254.0.1, the same on every network. */
export const GATEWAY_IPV4: Ipv4Addr = new Uint8Array([169, 254, 0, 1]);
/** The gateway's IPv6 address, fe80::1, the same on every network. */
export const GATEWAY_IPV6: Ipv6Addr = (() => {
  const a = new Uint8Array(IPV6_LEN);
  a[0] = 0xfe;
  a[1] = 0x80;
  a[IPV6_LEN - 1] = 1;
  return a;
})();

/**
 * The gateway's MAC, the same on every network: locally administered and unicast
 * (02:…), so it never collides with a vendor's address.
 */
export const GATEWAY_MAC: MacAddr = new Uint8Array([0x02, 0x6d, 0x76, 0x00, 0x00, 0x01]);

/** Default DHCPv4 lease: one day. */
export const DEFAULT_DHCPV4_LEASE_SECS = 86400;
/** Default DHCPv6 preferred lifetime of the /128: one day. */
export const DEFAULT_DHCPV6_PREFERRED_SECS = 86400;
/** Default DHCPv6 valid lifetime of the /128: two days. */
export const DEFAULT_DHCPV6_VALID_SECS = 172800;

/** One vNIC as its gateway sees it. Addresses are byte arrays (see `wire/addr.ts`). */
export interface VnicContext {
  /** The vNIC's MAC; frames from any other source MAC are dropped. */
  readonly mac: MacAddr;
  /** The vNIC's IPv4 address, handed out as a /32. */
  readonly ipv4: Ipv4Addr;
  /** The vNIC's IPv6 address, handed out as a /128. */
  readonly ipv6: Ipv6Addr;
  /** The network's IPv4 subnet, routed via the gateway (DHCPv4 option 121). */
  readonly ipv4Subnet: Cidr;
  /** The network's IPv6 prefix, advertised on-link in RAs and used by Confirm. */
  readonly ipv6Prefix: Cidr;
  /** DNS servers for DHCPv4 option 6; empty: option left out. */
  readonly dnsServers4: readonly Ipv4Addr[];
  /** DNS servers for DHCPv6 option 23; empty: option left out. */
  readonly dnsServers6: readonly Ipv6Addr[];
  /** NTP servers for DHCPv4 option 42; empty: option left out. */
  readonly ntpServers4: readonly Ipv4Addr[];
  /** NTP servers for DHCPv6 option 56; empty: option left out. */
  readonly ntpServers6: readonly Ipv6Addr[];
  /** Public networks get a default route (option 3, 0.0.0.0/0, RA router lifetime). */
  readonly isPublic: boolean;
  /** Link MTU, advertised in RAs. */
  readonly mtu: number;
  /** DHCPv4 lease time in seconds. */
  readonly dhcpv4LeaseSecs: number;
  /** DHCPv6 preferred lifetime of the address in seconds. */
  readonly dhcpv6PreferredSecs: number;
  /** DHCPv6 valid lifetime of the address in seconds. */
  readonly dhcpv6ValidSecs: number;
  /**
   * The IPv6 addresses of the other vNICs of the network, as canonical text
   * (`formatIpv6`); the gateway answers neighbor solicitations for them.
   */
  readonly peerIpv6: ReadonlySet<string>;
  /** The gateway's MAC, source of every frame the services send. */
  readonly gatewayMac: MacAddr;
}

/**
 * What to do with one frame from the guest:
 * - `reply`: the gateway consumed it; send `frames` (possibly none) back to the guest;
 * - `route`: not for the gateway; hand it to the router;
 * - `drop`: discarded, and counted under `reason`.
 */
export type Verdict =
  | { kind: "reply"; frames: Uint8Array[] }
  | { kind: "route" }
  | { kind: "drop"; reason: DropReason };
