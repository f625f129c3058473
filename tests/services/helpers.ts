/**
 * Builders for the service tests: a vNIC context matching the captured fixtures, guest frames
 * built with the wire layer, and decoders for the frames the services send back.
 * @module
 */

import { assertEquals, AssertionError } from "../assert.ts";
import {
  DEFAULT_DHCPV4_LEASE_SECS,
  DEFAULT_DHCPV6_PREFERRED_SECS,
  DEFAULT_DHCPV6_VALID_SECS,
  type Verdict,
  type VnicContext,
} from "../../services/mod.ts";
import {
  type ArpRepr,
  BOOTREQUEST,
  type Cidr,
  DHCPV4_CLIENT_PORT,
  DHCPV4_SERVER_PORT,
  type Dhcpv4Options,
  type Dhcpv4Repr,
  DHCPV6_CLIENT_PORT,
  DHCPV6_SERVER_PORT,
  type Dhcpv6Options,
  type Dhcpv6Repr,
  emitArp,
  emitDhcpv4,
  emitDhcpv6,
  emitEthernet,
  emitIcmpv6,
  emitIpv4Packet,
  emitIpv6Packet,
  emitUdp,
  type EthernetRepr,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  type Icmpv6Repr,
  IP_PROTO_ICMPV6,
  IP_PROTO_UDP,
  type Ipv4Addr,
  type Ipv4Repr,
  type Ipv6Addr,
  type Ipv6Repr,
  type MacAddr,
  parseCidr,
  parseDhcpv4,
  parseDhcpv6,
  parseEthernet,
  parseIcmpv6,
  parseIpv4Packet,
  parseIpv6Packet,
  parseUdp,
  type UdpRepr,
} from "../../wire/mod.ts";
import { mac, ok, v4, v6 } from "../wire/helpers.ts";

export { mac, ok, v4, v6 };

/** The guest of the fixtures. */
export const GUEST_MAC = mac("52:54:00:12:34:56");
/** The gateway MAC used in these tests (the capture's server MAC). */
export const GW_MAC = mac("02:00:00:00:00:01");
/** The guest's link-local address in the fixtures. */
export const GUEST_LL = v6("fe80::5054:ff:fe12:3456");

function cidr(text: string, family: 4 | 6): Cidr {
  return ok(parseCidr(text, family));
}

/** A public network's vNIC holding the fixtures' leased addresses. */
export function testCtx(over: Partial<VnicContext> = {}): VnicContext {
  return {
    mac: GUEST_MAC,
    ipv4: v4("10.77.0.20"),
    ipv6: v6("fd00:77::18"),
    ipv4Subnet: cidr("10.77.0.0/24", 4),
    ipv6Prefix: cidr("fd00:77::/64", 6),
    dnsServers4: [v4("10.77.0.53")],
    dnsServers6: [v6("fd00:77::53")],
    ntpServers4: [],
    ntpServers6: [],
    isPublic: true,
    mtu: 1500,
    dhcpv4LeaseSecs: DEFAULT_DHCPV4_LEASE_SECS,
    dhcpv6PreferredSecs: DEFAULT_DHCPV6_PREFERRED_SECS,
    dhcpv6ValidSecs: DEFAULT_DHCPV6_VALID_SECS,
    peerIpv6: new Set(["fd00:77::5"]),
    gatewayMac: GW_MAC,
    ...over,
  };
}

/** The frames of a `reply` verdict; fails on any other verdict. */
export function replies(v: Verdict): Uint8Array[] {
  if (v.kind !== "reply") throw new AssertionError(`expected a reply, got ${JSON.stringify(v)}`);
  return v.frames;
}

/** The single frame of a reply. */
export function onlyReply(v: Verdict): Uint8Array {
  const frames = replies(v);
  assertEquals(frames.length, 1, "reply frame count");
  return frames[0];
}

/** Fails unless `v` drops for `reason`. */
export function assertDrop(v: Verdict, reason: string): void {
  assertEquals(v, { kind: "drop", reason } as Verdict);
}

// ---- guest frames ----------------------------------------------------------------------

function eth(ethertype: number, payload: Uint8Array, dst: MacAddr = GW_MAC, src = GUEST_MAC) {
  return emitEthernet({ dst, src, ethertype, payload });
}

/** An ARP packet from the guest. */
export function guestArp(arp: Partial<ArpRepr> & { targetIp: Ipv4Addr }): Uint8Array {
  return eth(
    ETHERTYPE_ARP,
    emitArp({
      operation: 1,
      senderMac: GUEST_MAC,
      senderIp: v4("10.77.0.20"),
      targetMac: new Uint8Array(6),
      ...arp,
    }),
    mac("ff:ff:ff:ff:ff:ff"),
  );
}

/** An IPv4 packet from the guest. */
export function guestIpv4(
  ip: Partial<Ipv4Repr> & { dst: Ipv4Addr; protocol: number; payload: Uint8Array },
): Uint8Array {
  return eth(
    ETHERTYPE_IPV4,
    ok(emitIpv4Packet({
      tos: 0,
      identification: 1,
      dontFragment: false,
      moreFragments: false,
      fragmentOffset: 0,
      ttl: 64,
      src: v4("10.77.0.20"),
      ...ip,
    })),
  );
}

/** A DHCPv4 message from the guest, broadcast from 0.0.0.0:68 to 255.255.255.255:67. */
export function guestDhcpv4(
  options: Dhcpv4Options,
  fields: Partial<Dhcpv4Repr> = {},
  ipDst = v4("255.255.255.255"),
  ipSrc = v4("0.0.0.0"),
): Uint8Array {
  const msg: Dhcpv4Repr = {
    op: BOOTREQUEST,
    hops: 0,
    xid: 0x11223344,
    secs: 0,
    broadcast: false,
    ciaddr: v4("0.0.0.0"),
    yiaddr: v4("0.0.0.0"),
    siaddr: v4("0.0.0.0"),
    giaddr: v4("0.0.0.0"),
    chaddr: GUEST_MAC,
    options,
    ...fields,
  };
  const udp = ok(emitUdp(
    { srcPort: DHCPV4_CLIENT_PORT, dstPort: DHCPV4_SERVER_PORT, payload: emitDhcpv4(msg) },
    ipSrc,
    ipDst,
  ));
  return guestIpv4({ src: ipSrc, dst: ipDst, protocol: IP_PROTO_UDP, payload: udp });
}

/** An IPv6 packet from the guest. */
export function guestIpv6(
  ip: Partial<Ipv6Repr> & { dst: Ipv6Addr; nextHeader: number; payload: Uint8Array },
  dstMac: MacAddr = GW_MAC,
): Uint8Array {
  return eth(
    ETHERTYPE_IPV6,
    ok(emitIpv6Packet({ trafficClass: 0, flowLabel: 0, hopLimit: 255, src: GUEST_LL, ...ip })),
    dstMac,
  );
}

/** An ICMPv6 message from the guest. */
export function guestIcmpv6(
  msg: Icmpv6Repr,
  dst: Ipv6Addr,
  { src = GUEST_LL, hopLimit = 255 }: { src?: Ipv6Addr; hopLimit?: number } = {},
): Uint8Array {
  return guestIpv6({
    src,
    dst,
    hopLimit,
    nextHeader: IP_PROTO_ICMPV6,
    payload: emitIcmpv6(msg, src, dst),
  });
}

/** A DHCPv6 client message from the guest's link-local address to ff02::1:2. */
export function guestDhcpv6(
  msgType: number,
  options: Dhcpv6Options,
  { src = GUEST_LL, dst = v6("ff02::1:2") }: { src?: Ipv6Addr; dst?: Ipv6Addr } = {},
): Uint8Array {
  const body = ok(emitDhcpv6({ msgType, transactionId: 0x0a0b0c, options }));
  const udp = ok(
    emitUdp({ srcPort: DHCPV6_CLIENT_PORT, dstPort: DHCPV6_SERVER_PORT, payload: body }, src, dst),
  );
  return guestIpv6({ src, dst, hopLimit: 1, nextHeader: IP_PROTO_UDP, payload: udp });
}

// ---- decoding what the gateway sent ----------------------------------------------------

/** Layers of an IPv4/UDP frame the gateway sent, checksums verified on the way. */
export function decodeUdp4(frame: Uint8Array): { eth: EthernetRepr; ip: Ipv4Repr; udp: UdpRepr } {
  const e = ok(parseEthernet(frame));
  assertEquals(e.ethertype, ETHERTYPE_IPV4);
  const ip = ok(parseIpv4Packet(e.payload));
  return { eth: e, ip, udp: ok(parseUdp(ip.payload, ip.src, ip.dst)) };
}

/** The DHCPv4 message of a frame the gateway sent, with its lower layers. */
export function decodeDhcpv4(frame: Uint8Array) {
  const l = decodeUdp4(frame);
  return { ...l, dhcp: ok(parseDhcpv4(l.udp.payload)) };
}

/** Layers of an IPv6 frame the gateway sent. */
export function decodeIpv6(frame: Uint8Array): { eth: EthernetRepr; ip: Ipv6Repr } {
  const e = ok(parseEthernet(frame));
  assertEquals(e.ethertype, ETHERTYPE_IPV6);
  return { eth: e, ip: ok(parseIpv6Packet(e.payload)) };
}

/** The ICMPv6 message of a frame the gateway sent. */
export function decodeIcmpv6(frame: Uint8Array) {
  const l = decodeIpv6(frame);
  assertEquals(l.ip.nextHeader, IP_PROTO_ICMPV6);
  return { ...l, icmp: ok(parseIcmpv6(l.ip.payload, l.ip.src, l.ip.dst)) };
}

/** The DHCPv6 message of a frame the gateway sent. */
export function decodeDhcpv6(
  frame: Uint8Array,
): ReturnType<typeof decodeIpv6> & { udp: UdpRepr; dhcp: Dhcpv6Repr } {
  const l = decodeIpv6(frame);
  assertEquals(l.ip.nextHeader, IP_PROTO_UDP);
  const udp = ok(parseUdp(l.ip.payload, l.ip.src, l.ip.dst));
  return { ...l, udp, dhcp: ok(parseDhcpv6(udp.payload)) };
}

/**
 * A captured IPv4/UDP frame with its IP destination replaced (checksums recomputed): the
 * capture's server was 10.77.0.1, the gateway is 169.254.0.1.
 */
export function readdress4(frame: Uint8Array, dst: Ipv4Addr): Uint8Array {
  const e = ok(parseEthernet(frame));
  const ip = ok(parseIpv4Packet(e.payload));
  const udp = ok(parseUdp(ip.payload, ip.src, ip.dst));
  const payload = ok(emitIpv4Packet({ ...ip, dst, payload: ok(emitUdp(udp, ip.src, dst)) }));
  return emitEthernet({ ...e, payload });
}
