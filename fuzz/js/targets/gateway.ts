/**
 * Fuzz target: everything a guest frame meets before routing (`services/gateway.ts`):
 * Ethernet, ARP, IPv4/IPv6, UDP, ICMP, DHCPv4, DHCPv6 and NDP parsing and the answers.
 * The source MAC is set to the vNIC's and checksums are fixed up, so mutations get past the
 * anti-spoofing and checksum checks. A `handler_fault` drop (a handler threw) is a finding,
 * and so is an answer that is not an Ethernet frame from the gateway to the guest.
 */
import { DropCounters, handleGuestFrame } from "../../../services/mod.ts";
import type { VnicContext } from "../../../services/context.ts";
import {
  DEFAULT_DHCPV4_LEASE_SECS,
  DEFAULT_DHCPV6_PREFERRED_SECS,
  DEFAULT_DHCPV6_VALID_SECS,
  GATEWAY_MAC,
} from "../../../services/context.ts";
import {
  type Cidr,
  EthernetFrame,
  parseCidr,
  parseIpv4,
  parseIpv6,
  parseMac,
  WireError,
} from "../../../wire/mod.ts";
import { copyInput, expect, fixFrame, sameBytes } from "./common.ts";

const GUEST_MAC = parseMac("52:54:00:12:34:56") as Uint8Array;
const ETH_SRC = 6;

const CTX: VnicContext = {
  mac: GUEST_MAC,
  ipv4: parseIpv4("10.77.0.20") as Uint8Array,
  ipv6: parseIpv6("fd00:77::18") as Uint8Array,
  ipv4Subnet: parseCidr("10.77.0.0/24", 4) as Cidr,
  ipv6Prefix: parseCidr("fd00:77::/64", 6) as Cidr,
  dnsServers4: [parseIpv4("10.77.0.53") as Uint8Array],
  dnsServers6: [parseIpv6("fd00:77::53") as Uint8Array],
  ntpServers4: [parseIpv4("10.77.0.123") as Uint8Array],
  ntpServers6: [],
  isPublic: true,
  mtu: 1500,
  dhcpv4LeaseSecs: DEFAULT_DHCPV4_LEASE_SECS,
  dhcpv6PreferredSecs: DEFAULT_DHCPV6_PREFERRED_SECS,
  dhcpv6ValidSecs: DEFAULT_DHCPV6_VALID_SECS,
  peerIpv6: new Set(["fd00:77::5"]),
  gatewayMac: GATEWAY_MAC,
};

/** Entry point called by Jazzer.js with one input. */
export function fuzz(data: Uint8Array): void {
  const frame = copyInput(data);
  if (frame.length >= ETH_SRC + GUEST_MAC.length) frame.set(GUEST_MAC, ETH_SRC);
  fixFrame(frame);
  const v = handleGuestFrame(CTX, frame, new DropCounters());
  expect(
    !(v.kind === "drop" && v.reason === "handler_fault"),
    "a gateway handler threw",
  );
  if (v.kind !== "reply") return;
  for (const out of v.frames) {
    const eth = EthernetFrame.checked(out);
    expect(!(eth instanceof WireError), "an answer is not an Ethernet frame");
    const e = eth as EthernetFrame;
    expect(sameBytes(e.src, GATEWAY_MAC), "an answer not from the gateway MAC");
  }
}
